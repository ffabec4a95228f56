"""Alpaca JSON shapes for orders, assets and trade updates (decimals as strings, never floats).

Used by the REST API and the trade_updates stream so both send exactly the same order object.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from apps.core.fields import format_decimal
from apps.orders.models import Asset, Order


def _d(value: Decimal | None) -> str | None:
    return None if value is None else format_decimal(value)


def _t(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def order_json(order: Order, legs: list[Order] | None = None) -> dict[str, Any]:
    """Alpaca's ``Order`` schema. ``legs`` defaults to the order's leg rows (prefetched by the selectors)."""
    if legs is None:
        legs = list(order.legs.all()) if order.parent_id is None and order.order_class != "simple" else []
    return {
        "id": str(order.id),
        "client_order_id": order.client_order_id,
        "created_at": _t(order.created_at),
        "updated_at": _t(order.updated_at),
        "submitted_at": _t(order.submitted_at),
        "filled_at": _t(order.filled_at),
        "expired_at": _t(order.expired_at),
        "expires_at": None,
        "canceled_at": _t(order.canceled_at),
        "failed_at": _t(order.failed_at),
        "replaced_at": _t(order.replaced_at),
        "replaced_by": str(order.replaced_by_id) if order.replaced_by_id else None,
        "replaces": str(order.replaces_id) if order.replaces_id else None,
        "asset_id": str(order.asset_id),
        "symbol": order.symbol,
        "asset_class": "us_equity",
        "notional": _d(order.notional),
        "qty": _d(order.qty),
        "filled_qty": _d(order.filled_qty) or "0",
        "filled_avg_price": _d(order.filled_avg_price),
        "order_class": order.order_class,
        "order_type": order.type,
        "type": order.type,
        "side": order.side,
        "position_intent": None,
        "time_in_force": order.time_in_force,
        "limit_price": _d(order.limit_price),
        "stop_price": _d(order.stop_price),
        "status": order.status,
        "extended_hours": order.extended_hours,
        "legs": [order_json(leg, []) for leg in legs] if legs else None,
        "trail_percent": _d(order.trail_percent),
        "trail_price": _d(order.trail_price),
        "hwm": _d(order.hwm),
    }


def asset_json(asset: Asset) -> dict[str, Any]:
    return {
        "id": str(asset.id),
        "class": asset.asset_class,
        "exchange": asset.exchange,
        "symbol": asset.symbol,
        "name": asset.name,
        "status": asset.status,
        "tradable": asset.tradable and not asset.halted,
        "marginable": asset.marginable,
        "shortable": asset.shortable,
        "easy_to_borrow": asset.easy_to_borrow,
        "fractionable": asset.fractionable,
        "min_order_size": format_decimal(asset.min_order_size),
        "min_trade_increment": format_decimal(asset.min_trade_increment),
        "price_increment": format_decimal(asset.price_increment),
        "attributes": [],
        # Not Alpaca's: the price the risk collar centres on (API clients such as the demo market maker
        # quote around it; alpaca-py ignores unknown fields).
        "reference_price": _d(asset.reference_price),
    }
