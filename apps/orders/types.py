"""Validated order requests (the service's input), independent of DRF."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class TakeProfitSpec:
    limit_price: Decimal


@dataclass(frozen=True, slots=True)
class StopLossSpec:
    stop_price: Decimal
    limit_price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order as Alpaca's ``POST /v2/orders`` body, syntactically valid (types, enums, decimal format)."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal | None = None
    notional: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    extended_hours: bool = False
    client_order_id: str | None = None
    order_class: str = "simple"
    take_profit: TakeProfitSpec | None = None
    stop_loss: StopLossSpec | None = None


@dataclass(frozen=True, slots=True)
class ReplaceRequest:
    """Alpaca's ``PATCH /v2/orders/{id}`` body: None = keep the old value."""

    qty: Decimal | None = None
    time_in_force: str | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail: Decimal | None = None
    client_order_id: str | None = None
