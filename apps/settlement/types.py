"""Plain value types other apps pass to the settlement services (no Django imports)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class FillData:
    """One execution for one customer order. ``qty`` > 0, ``price`` > 0, ``filled_at`` timezone-aware UTC."""

    fill_id: str
    order_id: str
    account_id: str
    symbol: str
    side: Side
    qty: Decimal
    price: Decimal
    filled_at: datetime
    liquidity: str = ""
    # Optional order context for the activity feed (when the fill event carries it).
    cum_qty: Decimal | None = None
    leaves_qty: Decimal | None = None


@dataclass(frozen=True, slots=True)
class CashBalances:
    """Cash of one account. ``settled`` excludes holds; ``total`` = settled + unsettled + held."""

    settled: Decimal
    unsettled: Decimal
    held: Decimal
    buying_power: Decimal
    withdrawable: Decimal
    total: Decimal


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    qty: Decimal
    qty_settled: Decimal
    qty_unsettled: Decimal
    qty_reserved: Decimal
    qty_available: Decimal
    avg_entry_price: Decimal
    cost_basis: Decimal


@dataclass(frozen=True, slots=True)
class LotView:
    """One open tax lot. ``qty`` is open, ``cost_basis`` is the open part's cost; ``selected_qty`` is what open
    sell orders of the account have chosen from it (``LotSelection``) and not yet sold."""

    lot_id: int
    symbol: str
    acquired_date: date
    qty: Decimal
    original_qty: Decimal
    cost_basis: Decimal
    cost_per_share: Decimal
    selected_qty: Decimal


@dataclass(frozen=True, slots=True)
class LotChoiceView:
    lot_id: int
    qty: Decimal
    remaining: Decimal


@dataclass(frozen=True, slots=True)
class LotSelectionView:
    """The lots chosen for one sell order, in relief order."""

    order_id: str
    symbol: str
    lots: list[LotChoiceView]
