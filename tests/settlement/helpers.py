from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal

from apps.settlement.types import FillData

_seq = itertools.count(1)


def fill(
    account_id: object,
    *,
    order_id: str,
    side: str,
    qty: str,
    price: str,
    at: datetime,
    symbol: str = "AAPL",
    fill_id: str | None = None,
) -> FillData:
    return FillData(
        fill_id=fill_id or f"F{next(_seq)}",
        order_id=order_id,
        account_id=str(account_id),
        symbol=symbol,
        side="buy" if side == "buy" else "sell",
        qty=Decimal(qty),
        price=Decimal(price),
        filled_at=at,
        liquidity="taker",
    )
