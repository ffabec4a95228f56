"""Builders for engine tests: terse command constructors and event filters."""

from __future__ import annotations

from typing import Any

from engine.commands import NewOrder
from engine.events import Event, OrderCanceled, OrderFilled, TradeExecuted

SYM = "ACME"
SHARE = 1_000_000_000  # qty_e9 of one share
USD = 10_000  # price_e4 of one dollar


def limit(
    oid: str, side: str, qty: int, price: int, acct: str = "a", tif: str = "day", **kw: Any
) -> NewOrder:
    return NewOrder(
        order_id=oid,
        account_id=acct,
        symbol=kw.pop("symbol", SYM),
        side=side,  # type: ignore[arg-type]
        type="limit",
        tif=tif,  # type: ignore[arg-type]
        qty_e9=qty,
        limit_price_e4=price,
        **kw,
    )


def market(oid: str, side: str, qty: int | None, acct: str = "a", tif: str = "day", **kw: Any) -> NewOrder:
    return NewOrder(
        order_id=oid,
        account_id=acct,
        symbol=kw.pop("symbol", SYM),
        side=side,  # type: ignore[arg-type]
        type="market",
        tif=tif,  # type: ignore[arg-type]
        qty_e9=qty,
        **kw,
    )


def fills(events: list[Event]) -> list[tuple[str, int, int, int, str]]:
    """(order_id, price, qty, leaves, liquidity) per OrderFilled."""
    return [
        (e.order_id, e.price_e4, e.qty_e9, e.leaves_qty_e9, e.liquidity)
        for e in events
        if isinstance(e, OrderFilled)
    ]


def trades(events: list[Event]) -> list[tuple[str, int, int, str, str]]:
    return [
        (e.trade_id, e.price_e4, e.qty_e9, e.buy_order_id, e.sell_order_id)
        for e in events
        if isinstance(e, TradeExecuted)
    ]


def cancels(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.order_id, e.reason) for e in events if isinstance(e, OrderCanceled)]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]
