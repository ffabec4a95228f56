"""Corporate-action services: stock splits (forward and reverse) and cash dividends.

Invariants:
- One application per ``CorporateAction``: the action row is locked, ``applied_at`` is stamped in the same
  transaction as the postings, and every holder's entry is unique by ``("corporate_action", "<id>:<account>")``.
  Applying twice returns the entries already booked.
- Splits: a position of ``q`` shares becomes ``floor(q * num / den)`` whole shares; the fraction is bought by the
  house at ``cash_in_lieu_price`` (per post-split share, rounded half-even to the cent). Shares move between
  the customer's settled securities and the house account for the symbol, cash from the house cash account, so
  the entry balances per asset. Tax lots keep their total cost; the fraction is taken from the newest lots as a
  sale (a ``RealizedGain`` with the cash in lieu as proceeds). Share reservations and open orders
  (``apps.orders.services.orders_adjust_for_split``, which also sends ``SplitApply`` to the engine through the
  outbox, idempotent by ``split_id_of(action)``) move to the new terms in the same transaction. A split is
  refused while trades in the symbol are unsettled (apply it before the open of the ex-date, after the
  settlement run), so unsettled obligations never straddle two sets of terms.
- Lock order of a split: the corporate action row, then the asset ``FOR UPDATE``
  (``apps.orders.services.asset_lock_for_split``), then the symbol's open orders in primary-key order, before
  any ledger, lot or reservation row. Order transactions read the asset ``FOR KEY SHARE`` first, so the split
  waits for those in flight (then sees their rows: READ COMMITTED) and new ones wait for the split; a replace
  (order row, then the holder's cash row) and a split of the same symbol can no longer deadlock, and the
  projection (order rows, then ledger rows) locks in the same order as the split.
- Dividends are paid on ``pay_date`` (or later) to the holders of record: settled shares at the end of
  ``record_date``, i.e. postings to settled securities with ``effective_date <= record_date`` (a settlement
  entry's effective date is its settlement date). The house receives ``round(sum(q) * per_share)`` to the cent
  and allocates it by the largest remainder (``apps.core.money.allocate``), so the parts add up exactly.
"""

from __future__ import annotations

import importlib
import logging
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.core.errors import BrokerageError, BusinessRuleViolation, NotFound
from apps.core.money import CENT, QTY_DECIMAL_PLACES, WIDE, allocate
from apps.settlement.lots import holding_term
from apps.settlement.models import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    CorporateAction,
    JournalEntry,
    LedgerAccount,
    Posting,
    RealizedGain,
    SettlementObligation,
    ShareReservation,
    TaxLot,
)
from apps.settlement.services import (
    QTY_QUANTUM,
    ZERO,
    _account_get,
    _cust,
    _entry_post,
    _house,
    _Leg,
    _lot_cost_of,
    _share_of,
    ledger_rows_lock,
    lot_selections_split,
    trade_date_of,
)

Kind = LedgerAccount.Kind
EntryType = JournalEntry.EntryType
SOURCE_TYPE = "corporate_action"

logger = logging.getLogger(__name__)


def split_id_of(action: CorporateAction) -> str:
    """The engine's idempotency id of a split (``SplitApply.split_id``)."""
    return f"corporate_action:{action.pk}"


def _source_id(action: CorporateAction, account_id: Any) -> str:
    return f"{action.pk}:{account_id}"


def corporate_action_entries(action: CorporateAction) -> list[JournalEntry]:
    return list(
        JournalEntry.objects.filter(source_type=SOURCE_TYPE, source_id__startswith=f"{action.pk}:").order_by(
            "pk"
        )
    )


def corporate_action_apply(*, action_id: int, as_of: date | None = None) -> list[JournalEntry]:
    """Apply one corporate action exactly once; returns its per-holder journal entries (SPLIT or DIV).

    ``as_of`` (default: today in New York) must be on or after a dividend's pay date.
    """
    with transaction.atomic():
        action = CorporateAction.objects.select_for_update().filter(pk=action_id).first()
        if action is None:
            raise NotFound(f"corporate action {action_id} not found")
        if action.applied_at is not None:
            return corporate_action_entries(action)
        if action.kind == CorporateAction.Kind.SPLIT:
            entries = _split_apply(action)
        else:
            entries = _dividend_pay(action, as_of or trade_date_of(timezone.now()))
        action.applied_at = timezone.now()
        action.save(update_fields=["applied_at"])
        return entries


def corporate_actions_due(*, as_of: date) -> int:
    """Pay every unapplied dividend whose pay date has come (the daily task). Returns how many were paid."""
    due = CorporateAction.objects.filter(
        kind=CorporateAction.Kind.DIVIDEND, applied_at__isnull=True, pay_date__lte=as_of
    ).order_by("pay_date", "pk")
    paid = 0
    for action_id in list(due.values_list("pk", flat=True)):
        try:
            corporate_action_apply(action_id=action_id, as_of=as_of)
        except BrokerageError as exc:  # refused (its own transaction rolled back): the others are still paid
            logger.error(
                "corporate action refused",
                extra={"corporate_action": action_id, "error": exc.error, "detail": exc.message},
            )
            continue
        paid += 1
    return paid


# --------------------------------------------------------------------------------------------------------------
# Splits


def _plain(value: Decimal) -> str:
    """A decimal string without trailing zeros or exponent ("3", "2.5")."""
    return format(value.normalize(), "f")


def _floor_qty(value: Fraction) -> Decimal:
    """A rational share quantity rounded down to the 9-dp quantum."""
    return Decimal(value.numerator * 10**QTY_DECIMAL_PLACES // value.denominator).scaleb(
        -QTY_DECIMAL_PLACES
    )  # exact


# Amounts in the ledger (shares and cash) and the tax lots: AMOUNT_MAX_DIGITS digits, AMOUNT_DECIMAL_PLACES of them
# decimal, so every amount and balance stays below this.
_AMOUNT_RANGE = 10 ** (AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES)


def _split_apply(action: CorporateAction) -> list[JournalEntry]:
    symbol = action.symbol
    num, den = int(action.ratio_num or 0), int(action.ratio_den or 0)
    price = action.cash_in_lieu_price
    # The model's CHECK guarantees the terms.
    assert num > 0
    assert den > 0
    assert price is not None
    orders = importlib.import_module("apps.orders.services")
    # First lock (before any ledger row): waits for open order transactions of the symbol (module docstring).
    orders.asset_lock_for_split(symbol=symbol)
    # Then its open orders, so the split's lock order is asset -> orders -> ledger, as every order writer's.
    orders.open_orders_lock_for_split(symbol=symbol)
    if SettlementObligation.objects.filter(kind="sec", asset=symbol, settled_at__isnull=True).exists():
        raise BusinessRuleViolation(
            f"{symbol} has unsettled trades; apply the split after the settlement run.",
            error="unsettled_trades_pending",
            rule="split_after_settlement",
            details={"symbol": symbol},
        )
    holder_ids = sorted(
        LedgerAccount.objects.filter(kind=Kind.SEC_SETTLED, asset=symbol)
        .exclude(balance=0)
        .values_list("account_id", flat=True),
        key=str,
    )
    keys = [_house(Kind.HOUSE, symbol), _house(Kind.HOUSE)]
    for account_id in holder_ids:
        keys += [_cust(account_id, Kind.SEC_SETTLED, symbol), _cust(account_id, Kind.CASH_SETTLED)]
    rows = ledger_rows_lock(keys)
    ratio = Fraction(num, den)
    # A holding the split would take beyond what share amounts hold (the ledger's and the lots' columns) refuses
    # the split before anything changes, rather than failing in the database half-way.
    if any(
        Fraction(abs(row.balance)) * ratio >= _AMOUNT_RANGE for row in rows.values() if row.asset == symbol
    ):
        raise BusinessRuleViolation(
            f"a {num}-for-{den} split would take a holding of {symbol} beyond {_AMOUNT_RANGE:,} shares.",
            error="split_beyond_share_range",
            rule="split_within_share_range",
            details={"symbol": symbol, "limit": str(_AMOUNT_RANGE)},
        )
    entries: list[JournalEntry] = []
    now = timezone.now()
    for account_id in holder_ids:
        sec = rows[_cust(account_id, Kind.SEC_SETTLED, symbol)]
        old_qty = sec.balance
        if old_qty <= 0:
            continue  # no short positions on cash accounts; a zero balance has nothing to split
        exact = Fraction(old_qty) * ratio
        whole = Decimal(exact.numerator // exact.denominator)
        fraction = exact - Fraction(whole)
        cash = _share_of(price, Decimal(fraction.numerator), Decimal(fraction.denominator), CENT)
        delta = whole - old_qty
        account = _account_get(str(account_id))
        entry = _entry_post(
            source_type=SOURCE_TYPE,
            source_id=_source_id(action, account_id),
            entry_type=EntryType.SPLIT,
            account=account,
            effective_date=action.effective_date,
            occurred_at=now,
            description=(
                f"{num}-for-{den} split of {symbol}: {_plain(old_qty)} -> {whole} shares"
                + (f", cash in lieu {cash}" if cash else "")
            ),
            details={
                "corporate_action_id": action.pk,
                "symbol": symbol,
                "qty": _plain(delta),
                "old_qty": _plain(old_qty),
                "new_qty": _plain(whole),
                "ratio": f"{num}:{den}",
                "fraction": _plain(_floor_qty(fraction)),
                "cash_in_lieu_price": str(price),
                "net_amount": str(cash),
            },
            legs=[
                _Leg(sec, delta),
                _Leg(rows[_house(Kind.HOUSE, symbol)], -delta),
                _Leg(rows[_cust(account_id, Kind.CASH_SETTLED)], cash),
                _Leg(rows[_house(Kind.HOUSE)], -cash),
            ],
        )
        _lots_split(account_id=account_id, symbol=symbol, ratio=ratio, whole=whole, cash=cash, entry=entry)
        entries.append(entry)
    _reservations_split(symbol=symbol, ratio=ratio)
    # The customer's chosen lots for open sells scale with the lots they point at.
    lot_selections_split(symbol=symbol, ratio=ratio)
    # Last: the engine's SplitApply must follow the cancels this writes to the outbox.
    orders.orders_adjust_for_split(symbol=symbol, ratio_num=num, ratio_den=den, split_id=split_id_of(action))
    return entries


def _lots_split(
    *, account_id: Any, symbol: str, ratio: Fraction, whole: Decimal, cash: Decimal, entry: JournalEntry
) -> None:
    """Scale the open lots (cost unchanged), then sell the fraction out of the newest lots for ``cash``."""
    # Locked in primary-key order like every other lot writer (no lock-order deadlock), then ordered by age.
    lots = sorted(
        TaxLot.objects.select_for_update()
        .filter(account_id=account_id, symbol=symbol, remaining__gt=0)
        .order_by("pk"),
        key=lambda lot: (lot.acquired_date, lot.pk),
    )
    if not lots:
        return
    for lot in lots:
        lot.remaining = _floor_qty(Fraction(lot.remaining) * ratio)
        lot.qty = max(_floor_qty(Fraction(lot.qty) * ratio), lot.remaining)
    excess = sum((lot.remaining for lot in lots), ZERO) - whole
    if excess < 0:  # 9-dp rounding lost a few quanta: the newest lot takes them back
        lots[-1].remaining -= excess
        lots[-1].qty = max(lots[-1].qty, lots[-1].remaining)
        excess = ZERO
    gains: list[RealizedGain] = []
    proceeds_left = cash
    for lot in reversed(lots):
        if excess == 0:
            break
        take = min(excess, lot.remaining)
        cost = _lot_cost_of(lot, take)
        last = take == excess
        proceeds = proceeds_left if last else _share_of(proceeds_left, take, excess)
        proceeds_left -= proceeds
        excess -= take
        lot.remaining -= take
        lot.remaining_cost -= cost
        gains.append(
            RealizedGain(
                lot=lot,
                sell_entry=entry,
                qty=take,
                proceeds=proceeds,
                cost_basis=cost,
                gain=proceeds - cost,
                term=holding_term(lot.acquired_date, entry.effective_date),
                closed_date=entry.effective_date,
                relief_method="LIFO",  # cash in lieu always comes out of the newest lots
            )
        )
    for lot in lots:
        lot.save(update_fields=["qty", "remaining", "remaining_cost"])
    RealizedGain.objects.bulk_create(gains)


def _reservations_split(*, symbol: str, ratio: Fraction) -> None:
    """Reservations follow their sell orders: whole shares, rounded down (never more than the new position)."""
    for res in ShareReservation.objects.select_for_update().filter(symbol=symbol).order_by("pk"):
        remaining = Decimal(int(Fraction(res.remaining) * ratio))
        qty = max(Decimal(int(Fraction(res.qty) * ratio)), remaining, QTY_QUANTUM)
        res.remaining, res.qty = remaining, qty
        res.save(update_fields=["remaining", "qty", "updated_at"])


# --------------------------------------------------------------------------------------------------------------
# Cash dividends


def holders_of_record(*, symbol: str, record_date: date) -> dict[Any, Decimal]:
    """Settled shares per account at the end of ``record_date`` (accounts with a positive position only)."""
    rows = (
        Posting.objects.filter(
            ledger_account__kind=Kind.SEC_SETTLED,
            ledger_account__asset=symbol,
            entry__effective_date__lte=record_date,
        )
        .values("ledger_account__account_id")
        .annotate(q=Sum("amount"))
    )
    return {r["ledger_account__account_id"]: r["q"] for r in rows if r["q"] and r["q"] > 0}


def _dividend_pay(action: CorporateAction, as_of: date) -> list[JournalEntry]:
    assert action.pay_date is not None
    assert action.record_date is not None
    assert action.cash_per_share is not None
    if as_of < action.pay_date:
        raise BusinessRuleViolation(
            f"The dividend is payable on {action.pay_date}.",
            error="dividend_not_payable_yet",
            rule="dividend_on_pay_date",
            details={"pay_date": action.pay_date.isoformat(), "as_of": as_of.isoformat()},
        )
    holders = holders_of_record(symbol=action.symbol, record_date=action.record_date)
    if not holders:
        return []
    ids = sorted(holders, key=str)
    weights = [holders[a] for a in ids]
    exact = WIDE.multiply(sum(weights, ZERO), action.cash_per_share)  # never rounded before the cent
    total = exact.quantize(CENT, rounding=ROUND_HALF_EVEN, context=WIDE)
    keys = [_house(Kind.CLEARING)] + [_cust(a, Kind.CASH_SETTLED) for a in ids]
    rows = ledger_rows_lock(keys)
    # A payout that would take an amount or a balance beyond what the ledger holds refuses the dividend before
    # anything changes, rather than failing in the database half-way.
    if total + max(abs(row.balance) for row in rows.values()) >= _AMOUNT_RANGE:
        raise BusinessRuleViolation(
            f"a dividend of {action.cash_per_share}/share on {action.symbol} would pay {total}, beyond what the "
            "ledger holds.",
            error="dividend_beyond_amount_range",
            rule="dividend_within_amount_range",
            details={"symbol": action.symbol, "total": str(total), "limit": str(_AMOUNT_RANGE)},
        )
    amounts = allocate(total, weights) if total > 0 else [ZERO] * len(ids)
    now = timezone.now()
    entries: list[JournalEntry] = []
    for account_id, qty, amount in zip(ids, weights, amounts, strict=True):
        if amount == 0:
            continue  # a position too small to earn a cent
        entries.append(
            _entry_post(
                source_type=SOURCE_TYPE,
                source_id=_source_id(action, account_id),
                entry_type=EntryType.DIV,
                account=_account_get(str(account_id)),
                effective_date=action.pay_date,
                occurred_at=now,
                description=f"cash dividend {action.symbol} {action.cash_per_share}/share on {_plain(qty)}",
                details={
                    "corporate_action_id": action.pk,
                    "symbol": action.symbol,
                    "qty": _plain(qty),
                    "per_share_amount": str(action.cash_per_share),
                    "net_amount": str(amount),
                    "record_date": action.record_date.isoformat(),
                    "pay_date": action.pay_date.isoformat(),
                },
                legs=[
                    _Leg(rows[_house(Kind.CLEARING)], -amount),
                    _Leg(rows[_cust(account_id, Kind.CASH_SETTLED)], amount),
                ],
            )
        )
    return entries
