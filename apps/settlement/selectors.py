"""Ledger reads: balances, positions, and the proofs (cached == derived, trial balance zero).

Reads that feed a decision (buying power before an order) must run on the primary inside the caller's
transaction; the services re-check under lock anyway.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.markettime import NEW_YORK
from apps.core.money import MONEY_QUANTUM, PRICE_DECIMAL_PLACES
from apps.settlement.models import (
    CURRENCY,
    CashAccountRestriction,
    CostBasisMethod,
    CostBasisSetting,
    GoodFaithViolation,
    LedgerAccount,
    LotSelection,
    RealizedGain,
    ShareReservation,
    TaxLot,
)
from apps.settlement.types import (
    CashBalances,
    LotChoiceView,
    LotSelectionView,
    LotView,
    PositionView,
)

Kind = LedgerAccount.Kind
ZERO = Decimal(0)
PRICE_QUANTUM = Decimal(1).scaleb(-PRICE_DECIMAL_PLACES)


def _balances(
    account: BrokerageAccount, kinds: tuple[str, ...], asset: str | None = None
) -> dict[Any, Decimal]:
    qs = LedgerAccount.objects.filter(account=account, kind__in=kinds)
    if asset is not None:
        qs = qs.filter(asset=asset)
    return {(r.kind, r.asset): r.balance for r in qs}


def cash_balances(account: BrokerageAccount) -> CashBalances:
    """Cash of a (cash) account: buying power = settled + unsettled sale proceeds (holds already left both);
    settled cash only while a good-faith restriction is in force."""
    b = _balances(account, LedgerAccount.CASH_KINDS, CURRENCY)
    settled = b.get((Kind.CASH_SETTLED, CURRENCY), ZERO)
    unsettled = b.get((Kind.CASH_UNSETTLED, CURRENCY), ZERO)
    held = b.get((Kind.CASH_HELD, CURRENCY), ZERO)
    usable_unsettled = ZERO if settled_cash_only_restriction(account) is not None else max(unsettled, ZERO)
    return CashBalances(
        settled=settled,
        unsettled=unsettled,
        held=held,
        buying_power=settled + usable_unsettled,
        withdrawable=max(settled, ZERO),
        total=settled + unsettled + held,
    )


def settled_cash_only_restriction(
    account: BrokerageAccount, on: date | None = None
) -> CashAccountRestriction | None:
    """The good-faith restriction in force on ``on`` (default today in New York), if any."""
    day = on or timezone.now().astimezone(NEW_YORK).date()
    return (
        CashAccountRestriction.objects.filter(account=account, start_date__lte=day, end_date__gte=day)
        .order_by("-end_date")
        .first()
    )


def good_faith_violations(account: BrokerageAccount) -> list[GoodFaithViolation]:
    return list(GoodFaithViolation.objects.filter(account=account).order_by("trade_date", "id"))


def _positions(account: BrokerageAccount, symbol: str | None = None) -> list[PositionView]:
    b = _balances(account, (Kind.SEC_SETTLED, Kind.SEC_UNSETTLED), symbol)
    reserved_qs = ShareReservation.objects.filter(account=account, remaining__gt=0)
    lots_qs = TaxLot.objects.filter(account=account, remaining__gt=0)
    if symbol is not None:
        reserved_qs = reserved_qs.filter(symbol=symbol)
        lots_qs = lots_qs.filter(symbol=symbol)
    reserved = {r["symbol"]: r["s"] for r in reserved_qs.values("symbol").annotate(s=Sum("remaining"))}
    lots = {
        r["symbol"]: (r["q"], r["c"])
        for r in lots_qs.values("symbol").annotate(q=Sum("remaining"), c=Sum("remaining_cost"))
    }
    per_symbol: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for (kind, asset), bal in b.items():
        per_symbol[asset][kind] = bal
    out: list[PositionView] = []
    for sym in sorted(per_symbol):
        settled = per_symbol[sym].get(Kind.SEC_SETTLED, ZERO)
        unsettled = per_symbol[sym].get(Kind.SEC_UNSETTLED, ZERO)
        qty = settled + unsettled
        if qty == 0:
            continue
        res = reserved.get(sym, ZERO)
        lot_qty, lot_cost = lots.get(sym, (ZERO, ZERO))
        avg = (lot_cost / lot_qty).quantize(PRICE_QUANTUM, rounding=ROUND_HALF_EVEN) if lot_qty else ZERO
        out.append(
            PositionView(
                symbol=sym,
                qty=qty,
                qty_settled=settled,
                qty_unsettled=unsettled,
                qty_reserved=res,
                qty_available=qty - res,
                avg_entry_price=avg,
                cost_basis=lot_cost.quantize(MONEY_QUANTUM),
            )
        )
    return out


def positions(account: BrokerageAccount) -> list[PositionView]:
    """Open positions (non-zero quantity) by symbol, settled + unsettled; cost basis = the open lots' cost."""
    return _positions(account)


def position(account: BrokerageAccount, symbol: str) -> PositionView | None:
    found = _positions(account, symbol)
    return found[0] if found else None


def shares_available(account: BrokerageAccount, symbol: str) -> Decimal:
    """Shares held (settled + unsettled) minus those reserved for open sell orders."""
    b = _balances(account, (Kind.SEC_SETTLED, Kind.SEC_UNSETTLED), symbol)
    held = sum(b.values(), ZERO)
    reserved = (
        ShareReservation.objects.filter(account=account, symbol=symbol).aggregate(s=Sum("remaining"))["s"]
        or ZERO
    )
    return held - reserved


@dataclass(frozen=True, slots=True)
class BalanceBreak:
    ledger_account_id: int
    account_id: Any
    kind: str
    asset: str
    cached: Decimal
    derived: Decimal


def ledger_balance_breaks() -> list[BalanceBreak]:
    """Every ledger account whose cached balance differs from the sum of its postings (empty = books agree)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT la.id, la.account_id, la.kind, la.asset, la.balance, COALESCE(p.total, 0)
            FROM settlement_ledgeraccount la
            LEFT JOIN (
                SELECT ledger_account_id, SUM(amount) AS total FROM settlement_posting GROUP BY ledger_account_id
            ) p ON p.ledger_account_id = la.id
            WHERE la.balance <> COALESCE(p.total, 0)
            ORDER BY la.id
            """
        )
        rows = cursor.fetchall()
    return [BalanceBreak(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


def trial_balance() -> dict[str, Decimal]:
    """Sum of all postings per asset; every value is zero on sound books (only non-zero ones are returned)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT asset, SUM(amount) FROM settlement_posting GROUP BY asset HAVING SUM(amount) <> 0 ORDER BY asset"
        )
        return dict(cursor.fetchall())


def unbalanced_entries() -> list[int]:
    """Journal entry ids whose postings do not sum to zero per asset (the trigger makes this always empty)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT entry_id FROM settlement_posting GROUP BY entry_id, asset HAVING SUM(amount) <> 0"
        )
        return [r[0] for r in cursor.fetchall()]


def realized_pnl(account: BrokerageAccount, symbol: str | None = None) -> Decimal:
    """Total realized gain of the account over closed lot parts (optionally for one symbol)."""
    qs = RealizedGain.objects.filter(lot__account=account)
    if symbol is not None:
        qs = qs.filter(lot__symbol=symbol)
    total: Decimal = qs.aggregate(s=Sum("gain"))["s"] or ZERO
    return total


# --------------------------------------------------------------------------------------------------------------
# Tax lots and cost basis


def cost_basis_method(account: BrokerageAccount) -> str:
    """The account's default lot relief method (FIFO without a setting)."""
    method = CostBasisSetting.objects.filter(account=account).values_list("method", flat=True).first()
    return method or CostBasisMethod.FIFO


def open_lots(account: BrokerageAccount, symbol: str) -> list[LotView]:
    """The account's open lots of ``symbol``, oldest first (another account's lots are never visible)."""
    lots = list(
        TaxLot.objects.filter(account=account, symbol=symbol, remaining__gt=0).order_by("acquired_date", "id")
    )
    selected = {
        row["lot_id"]: row["s"]
        for row in LotSelection.objects.filter(lot__in=lots, remaining__gt=0, reservation__remaining__gt=0)
        .values("lot_id")
        .annotate(s=Sum("remaining"))
    }
    return [
        LotView(
            lot_id=lot.pk,
            symbol=lot.symbol,
            acquired_date=lot.acquired_date,
            qty=lot.remaining,
            original_qty=lot.qty,
            cost_basis=lot.remaining_cost,
            cost_per_share=(lot.remaining_cost / lot.remaining).quantize(
                PRICE_QUANTUM, rounding=ROUND_HALF_EVEN
            ),
            selected_qty=selected.get(lot.pk, ZERO),
        )
        for lot in lots
    ]


def lot_selection(account: BrokerageAccount, order_id: str) -> LotSelectionView | None:
    """The lots chosen for the account's sell order ``order_id``; ``None`` when the account has no share
    reservation for it (another account's order, a buy, or a sell not reserving yet)."""
    res = ShareReservation.objects.filter(account=account, order_id=order_id).first()
    if res is None:
        return None
    rows = LotSelection.objects.filter(reservation=res).order_by("seq", "id")
    return LotSelectionView(
        order_id=order_id,
        symbol=res.symbol,
        lots=[LotChoiceView(lot_id=r.lot_id, qty=r.qty, remaining=r.remaining) for r in rows],
    )
