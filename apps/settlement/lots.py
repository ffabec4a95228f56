"""Tax-lot relief: which open lots a sell closes, and for how much (pure Python, no database).

Invariants of ``relief_plan`` (property-tested in tests/settlement/test_properties.py):
- the planned quantities sum to ``min(qty, open shares)``; no lot gives more than its open ``remaining``
  (so no lot goes negative), and no selection gives more than its own ``remaining``;
- selected lots come first, in the customer's order; the account's method covers the rest
  (SPEC_ID without a selection, or for what a selection does not cover, is FIFO);
- the order is deterministic: ties fall back to FIFO (acquired date, then lot id).

``holding_term``: long term when the sale date is after the first anniversary of the acquisition (more than
one year held, the IRS rule; a lot bought on 29 February has its anniversary on 28 February).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction

FIFO = "FIFO"
LIFO = "LIFO"
HIFO = "HIFO"
SPEC_ID = "SPEC_ID"
METHODS = (FIFO, LIFO, HIFO, SPEC_ID)
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class OpenLot:
    lot_id: int
    acquired_date: date
    remaining: Decimal
    remaining_cost: Decimal


@dataclass(frozen=True, slots=True)
class Selected:
    """What is still to be relieved from ``lot_id`` for one order (a ``LotSelection`` row)."""

    selection_id: int
    lot_id: int
    remaining: Decimal


@dataclass(frozen=True, slots=True)
class Relief:
    lot_id: int
    qty: Decimal
    method: str  # SPEC_ID for a selected part, else the method that picked the lot
    selection_id: int | None = None


def _unit_cost(lot: OpenLot) -> Fraction:
    # Exact: comparing rounded prices would let two lots one quantum apart tie.
    return Fraction(lot.remaining_cost) / Fraction(lot.remaining) if lot.remaining else Fraction(0)


def lots_in_relief_order(lots: Iterable[OpenLot], method: str) -> list[OpenLot]:
    """Open lots in the order ``method`` relieves them (SPEC_ID's remainder is FIFO)."""
    if method not in METHODS:
        raise ValueError(f"unknown lot relief method {method!r}")
    fifo = sorted(lots, key=lambda lot: (lot.acquired_date, lot.lot_id))
    if method == LIFO:
        return fifo[::-1]
    if method == HIFO:
        return sorted(fifo, key=_unit_cost, reverse=True)  # stable: equal unit costs stay FIFO
    return fifo


def relief_plan(
    *, lots: Sequence[OpenLot], qty: Decimal, method: str, selected: Sequence[Selected] = ()
) -> list[Relief]:
    """The parts of lots a sell of ``qty`` relieves: ``selected`` first, then ``method`` for the rest."""
    available = {lot.lot_id: lot.remaining for lot in lots}
    left = qty
    out: list[Relief] = []
    for sel in selected:
        if left == 0:
            break
        take = min(left, sel.remaining, available.get(sel.lot_id, ZERO))
        if take > 0:
            out.append(Relief(lot_id=sel.lot_id, qty=take, method=SPEC_ID, selection_id=sel.selection_id))
            available[sel.lot_id] -= take
            left -= take
    rest_method = FIFO if method == SPEC_ID else method
    for lot in lots_in_relief_order(lots, rest_method):
        if left == 0:
            break
        take = min(left, available[lot.lot_id])
        if take > 0:
            out.append(Relief(lot_id=lot.lot_id, qty=take, method=rest_method))
            available[lot.lot_id] -= take
            left -= take
    return out


def anniversary(acquired: date) -> date:
    try:
        return acquired.replace(year=acquired.year + 1)
    except ValueError:  # 29 February
        return acquired.replace(year=acquired.year + 1, day=28)


def holding_term(acquired: date, sold: date) -> str:
    """``"long"`` when held more than one year (sold after the first anniversary), else ``"short"``."""
    return "long" if sold > anniversary(acquired) else "short"
