"""Ledger writes: deposits, withdrawals, holds, reservations, trade-date postings and T+1 settlement.

Every function here runs inside the caller's transaction (a plain ``transaction.atomic()``), so an order and its
hold, or a transfer and its posting, commit together. Each posting is idempotent by its source id:
``JournalEntry(source_type, source_id)`` is unique, and a repeated call returns the entry already booked.

Concurrency: the ledger rows an operation touches are created if missing and then locked with
``select_for_update`` before any balance is read (``ledger_rows_lock``): the customers' rows first, then the
firm's (account NULL), each in primary-key order; hold and reservation rows are locked after them. The firm's
rows (clearing, fees) are in every fill's entry, so a fill booker that holds them for its whole transaction
serializes every other one; the projection's chunks therefore take them last of all (``defer_house``: read, not
locked, up front; ``house_moves_apply`` locks and moves them as the chunk's last write; ADR 0010). The global order
(customers' rows before the firm's) keeps that free of lock-order cycles with every transaction that locks its
ledger rows once: one ``ledger_rows_lock`` never waits for a customer's row while holding a firm row it took
(docs/concurrency.md has the rest). The ``CHECK (balance >= 0)`` on settled and held cash is the backstop.

Cash-account buying power (the good-faith rule applied):
- buying power = settled cash + unsettled sale proceeds (holds have already left both);
- a hold draws from settled cash first, then from unsettled proceeds; the hold row remembers how much came from
  unsettled proceeds, fills consume the settled-funded part first, releases return the unsettled-funded part first
  (back to unsettled while the proceeds are still pending, otherwise to settled cash);
- withdrawals take settled cash only (never unsettled proceeds, never held cash);
- a buy paid in part with unsettled proceeds is recorded (``JournalEntry.details["unsettled_funded"]`` and
  ``["funds_settle_date"]``, the latest settlement date of the proceeds pending then); selling those shares
  (their FIFO lot) on a trade date before that settlement date is a good-faith violation on a cash account
  (``GoodFaithViolation``); the ``GoodFaithRule`` in force (default 3 in 12 months) then restricts the account
  to settled cash for 90 days (``CashAccountRestriction``): holds draw on settled cash only.
Margin accounts use the same cash rules for now (no margin lending).
"""

from __future__ import annotations

import calendar
import functools
import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_UP, Decimal
from fractions import Fraction
from typing import Any

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.audit import audit_record
from apps.accounts.models import BrokerageAccount
from apps.core.errors import (
    BrokerageError,
    BusinessRuleViolation,
    Conflict,
    InsufficientFunds,
    NotFound,
    ValidationError,
)
from apps.core.markettime import NEW_YORK, XNYSCalendar
from apps.core.money import CENT, MONEY_QUANTUM, QTY_DECIMAL_PLACES, WIDE
from apps.core.outbox import event_record
from apps.core.sql import hot_cursor, models_from_sql, select_list
from apps.settlement import lots
from apps.settlement.models import (
    CURRENCY,
    CashAccountRestriction,
    CashHold,
    CostBasisMethod,
    CostBasisSetting,
    FeeRule,
    GoodFaithRule,
    GoodFaithViolation,
    JournalEntry,
    LedgerAccount,
    LotSelection,
    RealizedGain,
    SettlementObligation,
    ShareReservation,
    TaxLot,
)
from apps.settlement.types import FillData

Kind = LedgerAccount.Kind
EntryType = JournalEntry.EntryType
QTY_QUANTUM = Decimal(1).scaleb(-QTY_DECIMAL_PLACES)
ZERO = Decimal(0)
_XNYS = XNYSCalendar()

# (brokerage account id or None for house accounts, kind, asset)
LedgerKey = tuple[Any, str, str]


# --------------------------------------------------------------------------------------------------------------
# Validation helpers


def _money(value: Decimal, field: str) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationError(f"{field} must be a finite decimal", field=field)
    if value <= 0:
        raise ValidationError(f"{field} must be positive", field=field)
    if value != value.quantize(MONEY_QUANTUM):
        raise ValidationError(f"{field} has more than 4 decimal places", field=field)
    return value


def _qty(value: Decimal, field: str = "qty") -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise ValidationError(f"{field} must be a finite decimal", field=field)
    if value <= 0:
        raise ValidationError(f"{field} must be positive", field=field)
    if value != value.quantize(QTY_QUANTUM):
        raise ValidationError(f"{field} has more than {QTY_DECIMAL_PLACES} decimal places", field=field)
    return value


def trade_date_of(ts: datetime) -> date:
    """The America/New_York calendar date of an instant (the trade date of a fill)."""
    if ts.tzinfo is None:
        raise ValidationError("timestamps must be timezone-aware", field="filled_at")
    return ts.astimezone(NEW_YORK).date()


def settlement_date_of(trade_date: date) -> date:
    """T+1 exchange business day (weekends and XNYS holidays skipped)."""
    return _XNYS.settlement_date(trade_date)


# --------------------------------------------------------------------------------------------------------------
# Ledger primitives


def ledger_rows_lock(
    keys: Iterable[LedgerKey], *, defer_house: bool = False
) -> dict[LedgerKey, LedgerAccount]:
    """Create missing ledger rows, then lock all of them: the customers' rows, then the firm's, each in
    primary-key order (deadlock-free ordering). ``defer_house``: the firm's rows are read but not locked; the
    caller moves them with ``house_moves_apply`` as the last write of its transaction."""
    wanted = sorted(set(keys), key=lambda k: (str(k[0]), k[1], k[2]))
    if not wanted:
        return {}
    norms = [_key_norm(k) for k in wanted]
    known = [pk for n in norms if (pk := _ledger_id_cache.get(n)) is not None]
    if len(known) == len(wanted):
        # Every row was seen before: lock them by primary key at once (one statement, no id read). Each locked
        # row's key is checked, so a stale id (rows renumbered, e.g. a test database flushed) is never trusted.
        rows = _rows_lock(known, defer_house)
        if all(
            pk in rows and _key_norm((rows[pk].account_id, rows[pk].kind, rows[pk].asset)) == n
            for n, pk in zip(norms, known, strict=True)
        ):
            return {k: rows[pk] for k, pk in zip(wanted, known, strict=True)}
        _ledger_id_cache.clear()
    # Only missing rows are inserted: an INSERT ... ON CONFLICT against an existing row whose balance another
    # open transaction has updated WAITS for that transaction, in key order rather than primary-key order, which
    # deadlocked (40P01) against the ordered row locks below. A plain read never waits; rows that exist are then
    # only ever waited on by the primary-key-ordered SELECT ... FOR UPDATE.
    ids = _ledger_ids(wanted)
    missing = [k for k in wanted if _key_norm(k) not in ids]
    if missing:
        with connection.cursor() as cursor:
            for account_id, kind, asset in missing:  # deterministic (sorted) order
                cursor.execute(
                    "INSERT INTO settlement_ledgeraccount (account_id, kind, asset, balance, updated_at) "
                    "VALUES (%s, %s, %s, 0, now()) ON CONFLICT DO NOTHING",
                    [account_id, kind, asset],
                )
        ids = _ledger_ids(wanted)
    rows = _rows_lock(ids.values(), defer_house)
    if len(_ledger_id_cache) + len(ids) > LEDGER_ID_CACHE_MAX:
        _ledger_id_cache.clear()
    _ledger_id_cache.update(ids)
    return {k: rows[ids[n]] for k, n in zip(wanted, norms, strict=True)}


# Primary key of each ledger row this process has locked, by normalised key: a row's key never changes, so a
# hit saves the id read (``_ledger_ids``). Bounded: cleared when full.
_ledger_id_cache: dict[tuple[str | None, str, str], int] = {}
LEDGER_ID_CACHE_MAX = 100_000


def _rows_lock(pks: Iterable[int], defer_house: bool = False) -> dict[int, LedgerAccount]:
    """``SELECT ... FOR UPDATE`` of the rows: the customers' rows, then the firm's, each in primary-key order
    (deadlock-free ordering); with ``defer_house`` the firm's rows are read, not locked."""
    pks = list(pks)
    if not defer_house:
        return {r.pk: r for r in models_from_sql(LedgerAccount, _ROWS_LOCK_SQL, [pks])}
    rows = {r.pk: r for r in models_from_sql(LedgerAccount, _ROWS_LOCK_CUSTOMERS_SQL, [pks])}
    if len(rows) < len(pks):
        rows.update((r.pk, r) for r in models_from_sql(LedgerAccount, _HOUSE_ROWS_READ_SQL, [pks]))
    return rows


def house_moves_apply(rows: Iterable[LedgerAccount], totals: dict[int, Decimal]) -> None:
    """Lock the firm's rows of ``totals`` (primary-key order) and add each one's total, in two statements: the
    deferred half of ``ledger_rows_lock(..., defer_house=True)``, to run as the transaction's last write. The row
    objects get the new balances."""
    rows = list(rows)
    moved = sorted(r.pk for r in rows if totals.get(r.pk, 0) != 0)
    if any(r.account_id is not None for r in rows if r.pk in moved):  # a row's account never changes
        raise ValueError("house_moves_apply moves the firm's rows only")
    if moved:
        _rows_lock(moved)
        ledger_balances_move(rows, totals)


def ledger_balances_move(rows: Iterable[LedgerAccount], totals: dict[int, Decimal]) -> None:
    """Add each row's total in ONE statement (rows already locked); the row objects get the new balances."""
    moves = sorted((pk, amount) for pk, amount in totals.items() if amount != 0)
    if not moves:
        return
    by_pk = {r.pk: r for r in rows}
    with hot_cursor() as cursor:
        cursor.execute(_BALANCES_MOVE_SQL, [[pk for pk, _ in moves], [amount for _, amount in moves]])
        for pk, balance in cursor.fetchall():
            by_pk[pk].balance = balance


_ROWS_BY_ID = f"SELECT {select_list(LedgerAccount)} FROM settlement_ledgeraccount WHERE id = ANY(%s)"  # noqa: S608
# The customers' rows (account set) before the firm's (account NULL), each in primary-key order.
_ROWS_LOCK_SQL = f"{_ROWS_BY_ID} ORDER BY account_id IS NULL, id FOR UPDATE"
# With ``defer_house``: the customers' rows locked, then the firm's read, not locked.
_ROWS_LOCK_CUSTOMERS_SQL = f"{_ROWS_BY_ID} AND account_id IS NOT NULL ORDER BY id FOR UPDATE"
_HOUSE_ROWS_READ_SQL = f"{_ROWS_BY_ID} AND account_id IS NULL"
_BALANCES_MOVE_SQL = (
    "UPDATE settlement_ledgeraccount AS l SET balance = l.balance + u.d, updated_at = now() "
    "FROM unnest(%s::bigint[], %s::numeric[]) AS u(id, d) WHERE l.id = u.id "
    "RETURNING l.id, l.balance"
)


def _key_norm(key: LedgerKey) -> tuple[str | None, str, str]:
    return (None if key[0] is None else str(key[0]), key[1], key[2])


# The rows of many keys in one read: customer keys joined to an unnest of arrays (the unique index serves each
# key), house keys (account NULL) likewise; an OR chain of keys cost more to build than to run.
_LEDGER_IDS_SQL = (
    "SELECT l.id, l.account_id::text, l.kind, l.asset FROM settlement_ledgeraccount l "
    "JOIN unnest(%s::uuid[], %s::text[], %s::text[]) AS k(a, kind, asset) "
    "ON l.account_id = k.a AND l.kind = k.kind AND l.asset = k.asset "
    "UNION ALL "
    "SELECT l.id, NULL, l.kind, l.asset FROM settlement_ledgeraccount l "
    "JOIN unnest(%s::text[], %s::text[]) AS k(kind, asset) "
    "ON l.account_id IS NULL AND l.kind = k.kind AND l.asset = k.asset"
)


def _ledger_ids(keys: Sequence[LedgerKey]) -> dict[tuple[str | None, str, str], int]:
    """Primary keys of the existing ledger rows of ``keys`` (no lock), by normalised key."""
    cust = [_key_norm(k) for k in keys if k[0] is not None]
    house = [k for k in keys if k[0] is None]
    with hot_cursor() as cursor:
        cursor.execute(
            _LEDGER_IDS_SQL,
            [
                [a for a, _, _ in cust],
                [kind for _, kind, _ in cust],
                [asset for _, _, asset in cust],
                [kind for _, kind, _ in house],
                [asset for _, _, asset in house],
            ],
        )
        return {(a, kind, asset): pk for pk, a, kind, asset in cursor.fetchall()}


def _existing_entry(source_type: str, source_id: str) -> JournalEntry | None:
    return JournalEntry.objects.filter(source_type=source_type, source_id=source_id).first()


def _lock_unless_booked(
    source_type: str, source_id: str, keys: Iterable[LedgerKey]
) -> tuple[JournalEntry | None, dict[LedgerKey, LedgerAccount]]:
    """Lock the ledger rows, then look for the source's entry again.

    Callers check for the entry before locking (cheap and lock-free on a replay); this second look catches a
    concurrent twin that committed the same source while we waited for the locks.
    """
    rows = ledger_rows_lock(keys)
    return _existing_entry(source_type, source_id), rows


@dataclass(slots=True)
class _Leg:
    row: LedgerAccount
    amount: Decimal


class _LeadWroteNothing(Exception):
    """``_entry_post``'s ``lead`` statement returned no row, so nothing at all was written."""


def _entry_post(
    *,
    source_type: str,
    source_id: str,
    entry_type: str,
    account: BrokerageAccount | None,
    effective_date: date,
    occurred_at: datetime,
    legs: Sequence[_Leg],
    description: str = "",
    details: dict[str, Any] | None = None,
    lead: tuple[str, list[Any]] | None = None,
) -> JournalEntry:
    """Insert one balanced entry, its postings, and move the cached balances (rows must already be locked).

    One statement does all three (a round trip each, and one per posting, before). The balanced-entry trigger
    checks the entry at the end of that statement; a second entry for the same source fails on its unique
    constraint.

    ``lead``: ``(cte, params)``, a data-modifying CTE named ``lead`` that runs first in the same statement; the
    entry is written only for the rows it returns (one at most); when it returns none, nothing is written and
    ``_LeadWroteNothing`` is raised (the hold's row and its entry in one round trip, ``_hold_write``). Needs
    legs that move.
    """
    totals: dict[int, Decimal] = defaultdict(Decimal)
    rows: dict[int, LedgerAccount] = {}
    for leg in legs:
        totals[leg.row.pk] += leg.amount
        rows[leg.row.pk] = leg.row
    moves = [(pk, amount) for pk, amount in sorted(totals.items()) if amount != 0]
    entry = JournalEntry(
        activity_id=uuid.uuid4(),
        source_type=source_type,
        source_id=source_id,
        entry_type=entry_type,
        account=account,
        effective_date=effective_date,
        occurred_at=occurred_at,
        description=description[:300],
        details=details or {},
        created_at=timezone.now(),
    )
    if not moves:  # nothing moves: the entry alone (kept for the activity record)
        if lead is not None:
            raise ValueError("an entry gated by a lead statement needs legs that move")
        entry.save(force_insert=True)
        return entry
    ids = [pk for pk, _ in moves]
    amounts = [amount for _, amount in moves]
    with hot_cursor() as cursor:
        cursor.execute(
            _entry_post_sql(None if lead is None else lead[0]),
            [
                *(() if lead is None else lead[1]),
                entry.activity_id,
                source_type,
                source_id,
                entry_type,
                None if account is None else account.pk,
                entry.description,
                effective_date,
                occurred_at,
                entry.created_at,
                json.dumps(entry.details),
                ids,
                [rows[pk].asset for pk in ids],
                amounts,
                ids,
                amounts,
            ],
        )
        result = cursor.fetchall()
    if not result and lead is not None:
        raise _LeadWroteNothing  # the lead statement wrote nothing, so neither did the entry
    assert len(result) == len(moves), "a posting's ledger row is missing"
    for entry_id, pk, balance in result:
        entry.pk = int(entry_id)
        rows[int(pk)].balance = balance
    entry._state.adding = False
    entry._state.db = connection.alias
    return entry


_ENTRY_COLUMNS = (
    "activity_id, source_type, source_id, entry_type, account_id, description, effective_date, occurred_at, "
    "created_at, details"
)


@functools.cache
def _entry_post_sql(lead: str | None = None) -> str:
    """The entry, its postings and the balance moves in one statement (``_entry_post``).

    With ``lead`` (a data-modifying CTE run first): the entry is inserted once per row ``lead`` returns (none or
    one), the postings follow the entry, and the balances move only when the entry was written.
    """
    if lead is None:
        head = (
            f"WITH entry AS (INSERT INTO settlement_journalentry ({_ENTRY_COLUMNS}) "  # noqa: S608 (constants)
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
        )
    else:
        head = (
            f"WITH lead AS ({lead}), entry AS (INSERT INTO settlement_journalentry ({_ENTRY_COLUMNS}) "  # noqa: S608
            "SELECT %s::uuid, %s::text, %s::text, %s::text, %s::uuid, %s::text, %s::date, %s::timestamptz, "
            "%s::timestamptz, %s::jsonb FROM lead"
        )
    return (
        f"{head} RETURNING id), "  # noqa: S608 (``lead`` is a constant of this module: _HOLD_INSERT_SQL)
        "posted AS (INSERT INTO settlement_posting (entry_id, ledger_account_id, asset, amount) "
        "SELECT entry.id, u.id, u.asset, u.amount "
        "FROM entry, unnest(%s::bigint[], %s::text[], %s::numeric[]) AS u(id, asset, amount)) "
        "UPDATE settlement_ledgeraccount l SET balance = l.balance + u.amount, updated_at = now() "
        "FROM unnest(%s::bigint[], %s::numeric[]) AS u(id, amount), entry "
        "WHERE l.id = u.id "
        "RETURNING entry.id, l.id, l.balance"
    )


def _cust(account_id: Any, kind: str, asset: str = CURRENCY) -> LedgerKey:
    return (account_id, kind, asset)


def _house(kind: str, asset: str = CURRENCY) -> LedgerKey:
    return (None, kind, asset)


def _account_get(account_id: str) -> BrokerageAccount:
    try:
        return BrokerageAccount.objects.get(pk=account_id)
    except (BrokerageAccount.DoesNotExist, ValueError, TypeError):
        raise NotFound(f"brokerage account {account_id} not found") from None


def _pending_cash_receivable(account_id: Any) -> Decimal:
    """Unsettled sale proceeds still owed to the account (positive cash obligations not yet settled)."""
    total = SettlementObligation.objects.filter(
        account_id=account_id, kind="cash", settled_at__isnull=True, amount__gt=0
    ).aggregate(s=Sum("amount"))["s"]
    return total or ZERO


# --------------------------------------------------------------------------------------------------------------
# Cash transfers


def cash_deposit_post(
    *, account: BrokerageAccount, amount: Decimal, transfer_id: str, description: str = ""
) -> JournalEntry:
    """Book an arrived external deposit as settled cash. Idempotent by ``transfer_id``."""
    _money(amount, "amount")
    with transaction.atomic():
        existing = _existing_entry("transfer", transfer_id)
        if existing is not None:
            return existing
        existing, rows = _lock_unless_booked(
            "transfer", transfer_id, [_cust(account.pk, Kind.CASH_SETTLED), _house(Kind.FUNDING_IN_TRANSIT)]
        )
        if existing is not None:
            return existing
        now = timezone.now()
        return _entry_post(
            source_type="transfer",
            source_id=transfer_id,
            entry_type=EntryType.CSD,
            account=account,
            effective_date=trade_date_of(now),
            occurred_at=now,
            description=description or "cash deposit",
            details={"amount": str(amount), "transfer_id": transfer_id},
            legs=[
                _Leg(rows[_house(Kind.FUNDING_IN_TRANSIT)], -amount),
                _Leg(rows[_cust(account.pk, Kind.CASH_SETTLED)], amount),
            ],
        )


def cash_withdrawal_post(
    *, account: BrokerageAccount, amount: Decimal, transfer_id: str, description: str = ""
) -> JournalEntry:
    """Take ``amount`` of settled cash out (to funding in transit). Raises ``InsufficientFunds``."""
    _money(amount, "amount")
    with transaction.atomic():
        existing = _existing_entry("transfer", transfer_id)
        if existing is not None:
            return existing
        existing, rows = _lock_unless_booked(
            "transfer", transfer_id, [_cust(account.pk, Kind.CASH_SETTLED), _house(Kind.FUNDING_IN_TRANSIT)]
        )
        if existing is not None:
            return existing
        settled = rows[_cust(account.pk, Kind.CASH_SETTLED)]
        if amount > settled.balance:
            raise InsufficientFunds(
                "Insufficient settled cash to withdraw.",
                error="insufficient_withdrawable_cash",
                rule="withdraw_settled_cash_only",
                details={"requested": str(amount), "withdrawable": str(settled.balance)},
            )
        now = timezone.now()
        return _entry_post(
            source_type="transfer",
            source_id=transfer_id,
            entry_type=EntryType.CSW,
            account=account,
            effective_date=trade_date_of(now),
            occurred_at=now,
            description=description or "cash withdrawal",
            details={"amount": str(-amount), "transfer_id": transfer_id},
            legs=[_Leg(settled, -amount), _Leg(rows[_house(Kind.FUNDING_IN_TRANSIT)], amount)],
        )


# --------------------------------------------------------------------------------------------------------------
# Holds (buy orders) and reservations (sell orders)


_HOLD_INSERT_SQL = """
    INSERT INTO settlement_cashhold
        (order_id, account_id, amount, remaining, unsettled_remaining, release_count, created_at, updated_at)
    VALUES (%s, %s, %s, %s, %s, 0, now(), now())
    ON CONFLICT (order_id) DO NOTHING
    RETURNING id
"""


def hold_place(*, account: BrokerageAccount, order_id: str, amount: Decimal) -> None:
    """Move ``amount`` of buying power into held cash for ``order_id``. Idempotent for the same order/amount."""
    _money(amount, "amount")
    # No savepoint (two round trips per order): a refusal is decided before anything is written and raised
    # after the block, so it leaves the caller's transaction as a rolled-back savepoint would have.
    with transaction.atomic(savepoint=False):
        refusal = _hold_write(account=account, order_id=order_id, amount=amount)
    if refusal is not None:
        raise refusal


def cash_spendable(
    account_id: Any, settled_row: LedgerAccount, unsettled_row: LedgerAccount
) -> tuple[Decimal, Decimal, bool]:
    """``(settled, usable unsettled proceeds, restricted)`` of locked cash rows: a cash account under a
    settled-cash-only restriction may not spend unsettled proceeds."""
    settled = settled_row.balance
    unsettled = max(unsettled_row.balance, ZERO)
    restricted = unsettled > 0 and settled_cash_only(account_id, trade_date_of(timezone.now()))
    return settled, (ZERO if restricted else unsettled), restricted


def insufficient_funds(
    *, amount: Decimal, settled: Decimal, unsettled: Decimal, restricted: bool
) -> InsufficientFunds:
    """The one refusal of a hold beyond buying power (``hold_place`` and the batch path alike)."""
    return InsufficientFunds(
        rule="settled_cash_only_restriction" if restricted else "cash_account_buying_power",
        details={
            "required": str(amount),
            "buying_power": str(settled + unsettled),
            "settled_cash": str(settled),
            "unsettled_proceeds": str(unsettled),
        },
    )


def _hold_write(*, account: BrokerageAccount, order_id: str, amount: Decimal) -> BrokerageError | None:
    """The hold's writes, or the refusal (nothing written) for ``hold_place`` to raise."""
    keys = [_cust(account.pk, k) for k in (Kind.CASH_SETTLED, Kind.CASH_UNSETTLED, Kind.CASH_HELD)]
    rows = ledger_rows_lock(keys)
    settled, unsettled, restricted = cash_spendable(account.pk, rows[keys[0]], rows[keys[1]])
    if amount > settled + unsettled:
        # A replay of a hold already placed is not a refusal (its cash is held, so buying power is lower now).
        existing = CashHold.objects.filter(order_id=order_id).first()
        if existing is not None:
            return _hold_existing(existing, account, order_id, amount)
        return insufficient_funds(amount=amount, settled=settled, unsettled=unsettled, restricted=restricted)
    from_settled = min(amount, settled)
    from_unsettled = amount - from_settled
    now = timezone.now()
    # The hold row and its entry in one statement: when the order id already has a hold, neither is written.
    try:
        _entry_post(
            lead=(_HOLD_INSERT_SQL, [order_id, account.pk, amount, amount, from_unsettled]),
            source_type="hold",
            source_id=order_id,
            entry_type=EntryType.HOLD,
            account=account,
            effective_date=trade_date_of(now),
            occurred_at=now,
            details={"order_id": order_id, "amount": str(amount)},
            legs=[
                _Leg(rows[keys[0]], -from_settled),
                _Leg(rows[keys[1]], -from_unsettled),
                _Leg(rows[keys[2]], amount),
            ],
        )
    except _LeadWroteNothing:
        return _hold_existing(CashHold.objects.get(order_id=order_id), account, order_id, amount)
    return None


def _hold_existing(
    existing: CashHold, account: BrokerageAccount, order_id: str, amount: Decimal
) -> BrokerageError | None:
    if existing.account_id == account.pk and existing.amount == amount:
        return None  # the same hold again: idempotent
    return Conflict(f"order {order_id} already has a different hold", error="hold_exists")


def hold_release(*, order_id: str, amount: Decimal | None = None) -> Decimal:
    """Return the rest of the hold (or ``amount`` of it, capped at what is left). Returns what was released."""
    if amount is not None:
        _money(amount, "amount")
    with transaction.atomic():
        peek = CashHold.objects.filter(order_id=order_id).only("account_id").first()
        if peek is None:
            raise NotFound(f"no hold for order {order_id}")
        account_id = peek.account_id
        keys = [_cust(account_id, k) for k in (Kind.CASH_SETTLED, Kind.CASH_UNSETTLED, Kind.CASH_HELD)]
        rows = ledger_rows_lock(keys)
        hold = CashHold.objects.select_for_update().get(pk=peek.pk)
        release: Decimal = hold.remaining if amount is None else min(amount, hold.remaining)
        if release == 0:
            return ZERO
        to_unsettled = _hold_unsettled_return(hold, release, rows[keys[1]].balance)
        u_part = min(release, hold.unsettled_remaining)
        hold.remaining -= release
        hold.unsettled_remaining -= u_part
        hold.release_count += 1
        hold.save(update_fields=["remaining", "unsettled_remaining", "release_count", "updated_at"])
        now = timezone.now()
        _entry_post(
            source_type="hold_release",
            source_id=f"{order_id}:{hold.release_count}",
            entry_type=EntryType.HOLD_RELEASE,
            account=hold.account,
            effective_date=trade_date_of(now),
            occurred_at=now,
            details={"order_id": order_id, "amount": str(release)},
            legs=[
                _Leg(rows[keys[2]], -release),
                _Leg(rows[keys[1]], to_unsettled),
                _Leg(rows[keys[0]], release - to_unsettled),
            ],
        )
        return release


def _hold_unsettled_return(hold: CashHold, release: Decimal, unsettled_balance: Decimal) -> Decimal:
    """How much of a release goes back to unsettled proceeds: the unsettled-funded part, while still pending."""
    u_part: Decimal = min(release, hold.unsettled_remaining)
    if u_part == 0:
        return ZERO
    drawn_outstanding = max(_pending_cash_receivable(hold.account_id) - unsettled_balance, ZERO)
    return Decimal(min(u_part, drawn_outstanding))


def _reserved_total(account_id: Any, symbol: str) -> Decimal:
    total = ShareReservation.objects.filter(account_id=account_id, symbol=symbol).aggregate(
        s=Sum("remaining")
    )["s"]
    return total or ZERO


def shares_reserve(*, account: BrokerageAccount, order_id: str, symbol: str, qty: Decimal) -> None:
    """Reserve ``qty`` shares for a sell order (no naked shorts). Idempotent for the same order/qty."""
    _qty(qty)
    with transaction.atomic():
        keys = [_cust(account.pk, Kind.SEC_SETTLED, symbol), _cust(account.pk, Kind.SEC_UNSETTLED, symbol)]
        rows = ledger_rows_lock(keys)
        existing = ShareReservation.objects.filter(order_id=order_id).first()
        if existing is not None:
            if existing.account_id == account.pk and existing.symbol == symbol and existing.qty == qty:
                return
            raise Conflict(
                f"order {order_id} already has a different reservation", error="reservation_exists"
            )
        held = rows[keys[0]].balance + rows[keys[1]].balance
        available = held - _reserved_total(account.pk, symbol)
        if qty > available:
            raise BusinessRuleViolation(
                "Insufficient qty available for order.",
                error="insufficient_qty",
                rule="no_short_selling_cash_account",
                details={"symbol": symbol, "requested": str(qty), "available": str(available)},
            )
        ShareReservation.objects.create(
            order_id=order_id, account=account, symbol=symbol, qty=qty, remaining=qty
        )


def shares_release(*, order_id: str, qty: Decimal | None = None) -> Decimal:
    """Release the rest of a reservation (or ``qty`` of it, capped). Returns what was released."""
    if qty is not None:
        _qty(qty)
    with transaction.atomic():
        peek = ShareReservation.objects.filter(order_id=order_id).first()
        if peek is None:
            raise NotFound(f"no share reservation for order {order_id}")
        ledger_rows_lock([_cust(peek.account_id, Kind.SEC_SETTLED, peek.symbol)])
        res = ShareReservation.objects.select_for_update().get(pk=peek.pk)
        release: Decimal = res.remaining if qty is None else min(qty, res.remaining)
        if release:
            res.remaining -= release
            res.save(update_fields=["remaining", "updated_at"])
        return release


# --------------------------------------------------------------------------------------------------------------
# Fees


def fees_for(*, side: str, notional: Decimal, qty: Decimal, trade_date: date) -> list[tuple[str, Decimal]]:
    """The fees of one fill by the schedule in force on ``trade_date`` (newest version per code)."""
    return fees_apply(fee_rules_in_force(trade_date), side=side, notional=notional, qty=qty)


def fee_rules_in_force(trade_date: date) -> list[FeeRule]:
    """The fee schedule in force on ``trade_date``: the newest version of each code (inactive ones included, as
    they switch a fee off), by code. Read once and applied to many fills with ``fees_apply``."""
    return models_from_sql(FeeRule, _FEE_RULES_IN_FORCE_SQL, [trade_date])


# One statement text (prepared once per connection), read once per projection chunk.
_FEE_RULES_IN_FORCE_SQL = (
    f"SELECT DISTINCT ON (code) {select_list(FeeRule)} FROM {FeeRule._meta.db_table} "  # noqa: S608
    "WHERE effective_from <= %s ORDER BY code, effective_from DESC"
)


def fees_apply(
    rules: Iterable[FeeRule], *, side: str, notional: Decimal, qty: Decimal
) -> list[tuple[str, Decimal]]:
    """The fees of one fill under ``rules`` (from ``fee_rules_in_force``)."""
    out: list[tuple[str, Decimal]] = []
    for rule in rules:
        if not rule.active or rule.side not in (side, FeeRule.Side.BOTH):
            continue
        fee = WIDE.add(WIDE.multiply(notional, rule.rate), WIDE.multiply(qty, rule.per_share))  # unrounded
        if fee <= 0:
            continue
        fee = max(fee, rule.min_fee)
        if rule.max_fee is not None:
            fee = min(fee, rule.max_fee)
        fee = fee.quantize(CENT, rounding=ROUND_UP, context=WIDE)
        if fee > 0:
            out.append((rule.code, fee))
    return out


# --------------------------------------------------------------------------------------------------------------
# Fills and settlement


def _share_of(amount: Decimal, part: Decimal, whole: Decimal, quantum: Decimal = MONEY_QUANTUM) -> Decimal:
    """``amount x part / whole`` on ``quantum`` (half-even), rounded once (the wide context decides the quantum
    exactly: the quotient's denominator is far below its 80 digits)."""
    return WIDE.divide(WIDE.multiply(amount, part), whole).quantize(
        quantum, rounding=ROUND_HALF_EVEN, context=WIDE
    )


def _lot_cost_of(lot: TaxLot, take: Decimal) -> Decimal:
    """The open cost of ``take`` of ``lot``'s remaining shares: all of it for the rest, else its share."""
    return lot.remaining_cost if take == lot.remaining else _share_of(lot.remaining_cost, take, lot.remaining)


def fill_notional(qty: Decimal, price: Decimal) -> Decimal:
    """qty x price on the money quantum (4 dp, half-even), rounded once: the product is exact first (up to 40
    digits, beyond the default context's 28, where a second rounding could turn a half-even tie)."""
    return WIDE.multiply(qty, price).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN, context=WIDE)


def fill_ledger_keys(fill: FillData, account_id: Any) -> dict[str, LedgerKey]:
    """The ledger rows a fill's trade-date entry touches, by role (also used by ``bulk.trade_date_book``)."""
    return {
        "settled": _cust(account_id, Kind.CASH_SETTLED),
        "unsettled": _cust(account_id, Kind.CASH_UNSETTLED),
        "held": _cust(account_id, Kind.CASH_HELD),
        "sec_unsettled": _cust(account_id, Kind.SEC_UNSETTLED, fill.symbol),
        "clearing_cash": _house(Kind.CLEARING),
        "clearing_sec": _house(Kind.CLEARING, fill.symbol),
        "fees": _house(Kind.FEES),
    }


def fill_entry_details(
    fill: FillData, *, notional: Decimal, fees: list[tuple[str, Decimal]], settle_date: date
) -> dict[str, Any]:
    """The ``details`` of a fill's journal entry (what activities and confirmations read)."""
    details: dict[str, Any] = {
        "fill_id": fill.fill_id,
        "order_id": fill.order_id,
        "symbol": fill.symbol,
        "side": fill.side,
        "qty": str(fill.qty),
        "price": str(fill.price),
        "notional": str(notional),
        "fees": {code: str(f) for code, f in fees},
        "liquidity": fill.liquidity,
        "transaction_time": fill.filled_at.isoformat(),
        "settle_date": settle_date.isoformat(),
    }
    if fill.cum_qty is not None:
        details["cum_qty"] = str(fill.cum_qty)
    if fill.leaves_qty is not None:
        details["leaves_qty"] = str(fill.leaves_qty)
    return details


def fill_settle_trade_date(*, fill: FillData) -> JournalEntry:
    """Trade-date postings for one fill (idempotent by ``fill.fill_id``); consumes the order's hold/reservation."""
    _qty(fill.qty)
    if fill.price <= 0:
        raise ValidationError("price must be positive", field="price")
    if fill.side not in ("buy", "sell"):
        raise ValidationError("side must be buy or sell", field="side")
    with transaction.atomic():
        existing = _existing_entry("fill", fill.fill_id)
        if existing is not None:
            return existing
        account = _account_get(fill.account_id)
        trade_date = trade_date_of(fill.filled_at)
        settle_date = settlement_date_of(trade_date)
        notional = fill_notional(fill.qty, fill.price)
        fees = fees_for(side=fill.side, notional=notional, qty=fill.qty, trade_date=trade_date)
        fee_total = sum((f for _, f in fees), ZERO)
        keys = fill_ledger_keys(fill, account.pk)
        existing, rows = _lock_unless_booked("fill", fill.fill_id, keys.values())
        if existing is not None:
            return existing
        r = {name: rows[key] for name, key in keys.items()}
        details = fill_entry_details(fill, notional=notional, fees=fees, settle_date=settle_date)
        legs: list[_Leg] = [
            _Leg(r["sec_unsettled"], fill.qty if fill.side == "buy" else -fill.qty),
            _Leg(r["clearing_sec"], -fill.qty if fill.side == "buy" else fill.qty),
        ]
        if fill.side == "buy":
            legs += _buy_cash_legs(fill, r, notional, fee_total, details)
        else:
            _reservation_consume(fill)
            legs += [
                _Leg(r["clearing_cash"], -notional),
                _Leg(r["unsettled"], notional - fee_total),
                _Leg(r["fees"], fee_total),
            ]
        entry = _entry_post(
            source_type="fill",
            source_id=fill.fill_id,
            entry_type=EntryType.FILL,
            account=account,
            effective_date=trade_date,
            occurred_at=fill.filled_at,
            legs=legs,
            description=f"{fill.side} {fill.qty} {fill.symbol} @ {fill.price}",
            details=details,
        )
        obligations = [
            SettlementObligation(
                account=account,
                trade_entry=entry,
                kind="sec",
                asset=fill.symbol,
                amount=fill.qty if fill.side == "buy" else -fill.qty,
                trade_date=trade_date,
                settle_date=settle_date,
            )
        ]
        if fill.side == "sell":
            obligations.append(
                SettlementObligation(
                    account=account,
                    trade_entry=entry,
                    kind="cash",
                    asset=CURRENCY,
                    amount=notional - fee_total,
                    trade_date=trade_date,
                    settle_date=settle_date,
                )
            )
        SettlementObligation.objects.bulk_create(obligations)
        if fee_total:
            # The fee as its own (zero-sum, informational) FEE activity; the cash moved in the fill entry.
            _fee_activity_record(account=account, fill=fill, fees=fees, trade_date=trade_date)
        _lots_apply(account=account, fill=fill, entry=entry, notional=notional, fee_total=fee_total)
        return entry


def _buy_cash_legs(
    fill: FillData,
    r: dict[str, LedgerAccount],
    notional: Decimal,
    fee_total: Decimal,
    details: dict[str, Any],
) -> list[_Leg]:
    """Pay a buy from its hold (settled-funded part first), then settled cash, then unsettled proceeds."""
    need = notional + fee_total
    hold = CashHold.objects.select_for_update().filter(order_id=fill.order_id).first()
    take = take_u = ZERO
    if hold is not None:
        take = min(need, hold.remaining)
        settled_part = hold.remaining - hold.unsettled_remaining
        take_u = max(take - settled_part, ZERO)
        hold.remaining -= take
        hold.unsettled_remaining -= take_u
        hold.save(update_fields=["remaining", "unsettled_remaining", "updated_at"])
    shortfall = need - take
    from_settled = min(shortfall, max(r["settled"].balance, ZERO))
    # Whatever is still short comes out of unsettled proceeds; it may go negative (a debit the customer owes),
    # which reconciliation reports; a fill already executed cannot be refused.
    from_unsettled = shortfall - from_settled
    if take_u or from_unsettled:
        details["unsettled_funded"] = str(take_u + from_unsettled)
        latest = (
            SettlementObligation.objects.filter(
                account_id=r["settled"].account_id, kind="cash", settled_at__isnull=True, amount__gt=0
            )
            .order_by("-settle_date")
            .values_list("settle_date", flat=True)
            .first()
        )
        # No pending proceeds (a debit beyond them): the buy's own settlement date is when it must be paid.
        details["funds_settle_date"] = (latest or date.fromisoformat(details["settle_date"])).isoformat()
    return [
        _Leg(r["held"], -take),
        _Leg(r["settled"], -from_settled),
        _Leg(r["unsettled"], -from_unsettled),
        _Leg(r["clearing_cash"], notional),
        _Leg(r["fees"], fee_total),
    ]


def _reservation_consume(fill: FillData) -> None:
    res = ShareReservation.objects.select_for_update().filter(order_id=fill.order_id).first()
    if res is not None and res.remaining:
        res.remaining -= min(fill.qty, res.remaining)
        res.save(update_fields=["remaining", "updated_at"])


def _fee_activity_record(
    *, account: BrokerageAccount, fill: FillData, fees: list[tuple[str, Decimal]], trade_date: date
) -> None:
    JournalEntry.objects.create(
        source_type="fill_fee",
        source_id=fill.fill_id,
        entry_type=EntryType.FEE,
        account=account,
        effective_date=trade_date,
        occurred_at=fill.filled_at,
        description="; ".join(f"{code} {amount}" for code, amount in fees),
        details={
            "fill_id": fill.fill_id,
            "order_id": fill.order_id,
            "symbol": fill.symbol,
            "net_amount": str(-sum((f for _, f in fees), ZERO)),
            "fees": {code: str(f) for code, f in fees},
        },
    )


def _lots_apply(
    *, account: BrokerageAccount, fill: FillData, entry: JournalEntry, notional: Decimal, fee_total: Decimal
) -> None:
    """Open a lot on a buy; on a sell close lots by the order's lot selection, then the account's method
    (``lots_relieve``), and write what it decided."""
    if fill.side == "buy":
        TaxLot.objects.create(
            **lot_opened_fields(fill=fill, entry=entry, notional=notional, fee_total=fee_total)
        )
        return
    method = cost_basis_method_of(account.pk)
    open_lots = _open_lots_lock(account.pk, fill.symbol, with_entry=True)
    selections = list(
        LotSelection.objects.select_for_update(of=("self",))
        .filter(reservation__order_id=fill.order_id, reservation__account=account, remaining__gt=0)
        .order_by("seq", "pk")
    )
    relief = lots_relieve(
        account=account,
        fill=fill,
        entry=entry,
        notional=notional,
        fee_total=fee_total,
        method=method,
        open_lots=open_lots,
        selections=selections,
    )
    for sel in relief.selections:
        sel.save(update_fields=["remaining"])
    for lot in relief.lots:
        lot.save(update_fields=["remaining", "remaining_cost"])
    RealizedGain.objects.bulk_create(relief.gains)
    if relief.violations:
        GoodFaithViolation.objects.bulk_create(relief.violations)
        good_faith_rule_apply(account=account, violation=relief.violations[0])


def lot_opened_fields(
    *, fill: FillData, entry: JournalEntry, notional: Decimal, fee_total: Decimal
) -> dict[str, Any]:
    """The ``TaxLot`` a buy fill opens (its cost includes the fees)."""
    cost = notional + fee_total
    return {
        "account_id": entry.account_id,
        "symbol": fill.symbol,
        "source_entry": entry,
        "acquired_date": entry.effective_date,
        "qty": fill.qty,
        "remaining": fill.qty,
        "cost_basis": cost,
        "remaining_cost": cost,
    }


@dataclass(slots=True)
class LotRelief:
    """What one sell fill's lot relief decided: the lots and selections it changed (in first-touch order), the
    realized gains (in relief order) and the good-faith violations (one per lot, in relief order)."""

    lots: list[TaxLot]
    selections: list[LotSelection]
    gains: list[RealizedGain]
    violations: list[GoodFaithViolation]


def lots_relieve(
    *,
    account: BrokerageAccount,
    fill: FillData,
    entry: JournalEntry,
    notional: Decimal,
    fee_total: Decimal,
    method: str,
    open_lots: Sequence[TaxLot],
    selections: Sequence[LotSelection],
) -> LotRelief:
    """Relieve lots for one sell fill in memory (no database access; the caller locked and writes the rows).

    ``open_lots``: the account's open lots of the symbol (``remaining > 0``, ``source_entry`` loaded for the
    good-faith check); ``selections``: the order's selections still open, in ``(seq, pk)`` order. The lots and
    selections given are updated in place. Realized gain per closed lot part: cost apportioned by quantity (the
    last part of a lot takes the rest of its cost), proceeds (net of fees) apportioned by cumulative quantity so
    the parts add up to the total.
    """
    trade_date = entry.effective_date
    by_id = {lot.pk: lot for lot in open_lots}
    by_sel = {sel.pk: sel for sel in selections}
    plan = lots.relief_plan(
        lots=[
            lots.OpenLot(lot.pk, lot.acquired_date, lot.remaining, lot.remaining_cost) for lot in open_lots
        ],
        qty=fill.qty,
        method=method,
        selected=[lots.Selected(sel.pk, sel.lot_id, sel.remaining) for sel in selections],
    )
    proceeds_total = notional - fee_total
    done = ZERO
    allocated = ZERO
    out = LotRelief([], [], [], [])
    touched: dict[int, TaxLot] = {}
    for part in plan:
        lot = by_id[part.lot_id]
        take = part.qty
        cost = _lot_cost_of(lot, take)
        done += take
        upto = proceeds_total if done == fill.qty else _share_of(proceeds_total, done, fill.qty)
        proceeds, allocated = upto - allocated, upto
        lot.remaining -= take
        lot.remaining_cost -= cost
        if part.selection_id is not None:
            sel = by_sel[part.selection_id]
            sel.remaining -= take
            out.selections.append(sel)
        if lot.pk not in touched:  # a lot split between its selected and method parts is one sale of it
            touched[lot.pk] = lot
            gfv = _good_faith_check(account=account, lot=lot, sell_entry=entry)
            if gfv is not None:
                out.violations.append(gfv)
        out.gains.append(
            RealizedGain(
                lot=lot,
                sell_entry=entry,
                qty=take,
                proceeds=proceeds,
                cost_basis=cost,
                gain=proceeds - cost,
                term=lots.holding_term(lot.acquired_date, trade_date),
                closed_date=trade_date,
                relief_method=part.method,
            )
        )
    out.lots = list(touched.values())
    return out


def _open_lots_lock(account_id: Any, symbol: str, *, with_entry: bool = False) -> list[TaxLot]:
    """The account's open lots of ``symbol``, locked in primary-key order (one order for every lot writer)."""
    qs = TaxLot.objects.select_for_update(of=("self",))
    if with_entry:
        qs = qs.select_related("source_entry")
    return list(qs.filter(account_id=account_id, symbol=symbol, remaining__gt=0).order_by("pk"))


# --------------------------------------------------------------------------------------------------------------
# Good-faith violations (cash accounts)

DEFAULT_GOOD_FAITH_RULE = GoodFaithRule(max_violations=3, window_months=12, restriction_days=90)


def _good_faith_check(
    *, account: BrokerageAccount, lot: TaxLot, sell_entry: JournalEntry
) -> GoodFaithViolation | None:
    """A violation when this lot was bought with proceeds that settle after the sale's trade date."""
    if account.account_type != BrokerageAccount.AccountType.CASH:
        return None
    buy = lot.source_entry
    funded, funds_settle = buy.details.get("unsettled_funded"), buy.details.get("funds_settle_date")
    if buy.entry_type != EntryType.FILL or not funded or not funds_settle:
        return None
    settles = date.fromisoformat(funds_settle)
    if sell_entry.effective_date >= settles:
        return None  # the proceeds had settled by the sale: a good-faith sale
    return GoodFaithViolation(
        account=account,
        symbol=lot.symbol,
        buy_entry=buy,
        sell_entry=sell_entry,
        trade_date=sell_entry.effective_date,
        funds_settle_date=settles,
        unsettled_funded=Decimal(funded),
    )


def good_faith_rule_in_force(on: date) -> GoodFaithRule:
    rule = GoodFaithRule.objects.filter(effective_from__lte=on).order_by("-effective_from").first()
    return rule or DEFAULT_GOOD_FAITH_RULE


def _months_before(day: date, months: int) -> date:
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    month = m + 1
    last = calendar.monthrange(y, month)[1]
    return date(y, month, min(day.day, last))


def good_faith_rule_apply(
    *, account: BrokerageAccount, violation: GoodFaithViolation
) -> CashAccountRestriction | None:
    """Restrict the account to settled cash when the violations in the window reach the rule's limit."""
    on = violation.trade_date
    rule = good_faith_rule_in_force(on)
    since = _months_before(on, rule.window_months)
    count = (
        GoodFaithViolation.objects.filter(account=account, trade_date__gt=since, trade_date__lte=on)
        .values("sell_entry_id")
        .distinct()
        .count()
    )
    if count < rule.max_violations:
        return None
    if CashAccountRestriction.objects.filter(account=account, start_date__lte=on, end_date__gte=on).exists():
        return None  # already restricted: the running restriction stands
    return CashAccountRestriction.objects.create(
        account=account,
        start_date=on,
        end_date=on + timedelta(days=rule.restriction_days),
        reason=f"{count} good-faith violations in {rule.window_months} months",
        trigger=violation,
    )


def settled_cash_only(account_id: Any, on: date) -> bool:
    """Whether a good-faith restriction limits the account to settled cash on ``on``."""
    return CashAccountRestriction.objects.filter(
        account_id=account_id, start_date__lte=on, end_date__gte=on
    ).exists()


def settlement_apply(*, trade_entry_id: int) -> JournalEntry | None:
    """Settle every leg of one trade entry (unsettled -> settled). Idempotent; returns the settlement entry."""
    with transaction.atomic():
        existing = _existing_entry("settlement", str(trade_entry_id))
        if existing is not None:
            return existing
        obligations = list(SettlementObligation.objects.filter(trade_entry_id=trade_entry_id).order_by("pk"))
        if not obligations:
            return None
        account_id = obligations[0].account_id
        keys: list[LedgerKey] = []
        for ob in obligations:
            if ob.kind == "sec":
                keys += [
                    _cust(account_id, Kind.SEC_UNSETTLED, ob.asset),
                    _cust(account_id, Kind.SEC_SETTLED, ob.asset),
                ]
            else:
                keys += [_cust(account_id, Kind.CASH_UNSETTLED), _cust(account_id, Kind.CASH_SETTLED)]
        existing, rows = _lock_unless_booked("settlement", str(trade_entry_id), keys)
        if existing is not None:
            return existing
        obligations = list(
            SettlementObligation.objects.select_for_update()
            .filter(trade_entry_id=trade_entry_id)
            .order_by("pk")
        )
        legs: list[_Leg] = []
        for ob in obligations:
            if ob.kind == "sec":
                legs += [
                    _Leg(rows[_cust(account_id, Kind.SEC_UNSETTLED, ob.asset)], -ob.amount),
                    _Leg(rows[_cust(account_id, Kind.SEC_SETTLED, ob.asset)], ob.amount),
                ]
            else:
                # Proceeds already drawn by holds/buys are spent: only what is still unsettled moves.
                unsettled = rows[_cust(account_id, Kind.CASH_UNSETTLED)]
                move = max(min(ob.amount, unsettled.balance), ZERO)
                legs += [
                    _Leg(unsettled, -move),
                    _Leg(rows[_cust(account_id, Kind.CASH_SETTLED)], move),
                ]
        now = timezone.now()
        entry = _entry_post(
            source_type="settlement",
            source_id=str(trade_entry_id),
            entry_type=EntryType.SETTLE,
            account=obligations[0].account,
            effective_date=obligations[0].settle_date,
            occurred_at=now,
            legs=legs,
            details={"trade_entry_id": trade_entry_id},
        )
        SettlementObligation.objects.filter(pk__in=[ob.pk for ob in obligations]).update(
            settled_entry=entry, settled_at=now
        )
        return entry


def settlement_run(*, as_of: date) -> int:
    """Settle every trade due on or before ``as_of`` (one transaction per trade, in fill order).

    Safe to run twice or concurrently: each trade's settlement is idempotent by its source id.
    Returns the number of trades settled by this call.
    """
    due = (
        SettlementObligation.objects.filter(settle_date__lte=as_of, settled_at__isnull=True)
        .order_by("trade_entry_id")
        .values_list("trade_entry_id", flat=True)
        .distinct()
    )
    settled = 0
    for trade_entry_id in list(due):
        with transaction.atomic():
            before = _existing_entry("settlement", str(trade_entry_id))
            if before is None and settlement_apply(trade_entry_id=trade_entry_id) is not None:
                settled += 1
    return settled


# --------------------------------------------------------------------------------------------------------------
# Securities transfers (ACATS in/out)


def shares_deposit_post(
    *, account: BrokerageAccount, symbol: str, qty: Decimal, cost_basis: Decimal, transfer_id: str
) -> JournalEntry:
    """Shares transferred in arrive settled, with one lot at ``cost_basis`` (total). Idempotent by transfer id."""
    _qty(qty)
    if (
        not isinstance(cost_basis, Decimal)
        or cost_basis < 0
        or cost_basis != cost_basis.quantize(MONEY_QUANTUM)
    ):
        raise ValidationError(
            "cost_basis must be a non-negative amount with at most 4 decimals", field="cost_basis"
        )
    with transaction.atomic():
        existing = _existing_entry("transfer", transfer_id)
        if existing is not None:
            return existing
        keys = [_cust(account.pk, Kind.SEC_SETTLED, symbol), _house(Kind.FUNDING_IN_TRANSIT, symbol)]
        existing, rows = _lock_unless_booked("transfer", transfer_id, keys)
        if existing is not None:
            return existing
        now = timezone.now()
        entry = _entry_post(
            source_type="transfer",
            source_id=transfer_id,
            entry_type=EntryType.JNLS,
            account=account,
            effective_date=trade_date_of(now),
            occurred_at=now,
            description=f"transfer in {qty} {symbol}",
            details={"symbol": symbol, "qty": str(qty), "transfer_id": transfer_id},
            legs=[_Leg(rows[keys[1]], -qty), _Leg(rows[keys[0]], qty)],
        )
        TaxLot.objects.create(
            account=account,
            symbol=symbol,
            source_entry=entry,
            acquired_date=entry.effective_date,
            qty=qty,
            remaining=qty,
            cost_basis=cost_basis,
            remaining_cost=cost_basis,
        )
        return entry


def shares_withdrawal_post(
    *, account: BrokerageAccount, symbol: str, qty: Decimal, transfer_id: str
) -> JournalEntry:
    """Shares transferred out (settled and unreserved only); lots are reduced FIFO without a realized gain,
    sparing the lots open sell orders have chosen (``_transfer_out_plan``)."""
    _qty(qty)
    with transaction.atomic():
        existing = _existing_entry("transfer", transfer_id)
        if existing is not None:
            return existing
        keys = [
            _cust(account.pk, Kind.SEC_SETTLED, symbol),
            _cust(account.pk, Kind.SEC_UNSETTLED, symbol),
            _house(Kind.FUNDING_IN_TRANSIT, symbol),
        ]
        existing, rows = _lock_unless_booked("transfer", transfer_id, keys)
        if existing is not None:
            return existing
        settled = rows[keys[0]].balance
        unsettled_out = min(rows[keys[1]].balance, ZERO)  # shares sold but not yet delivered
        available = settled + unsettled_out - _reserved_total(account.pk, symbol)
        if qty > available:
            raise BusinessRuleViolation(
                "Insufficient settled shares to transfer out.",
                error="insufficient_qty",
                rule="transfer_settled_unreserved_shares_only",
                details={"symbol": symbol, "requested": str(qty), "available": str(available)},
            )
        now = timezone.now()
        entry = _entry_post(
            source_type="transfer",
            source_id=transfer_id,
            entry_type=EntryType.JNLS,
            account=account,
            effective_date=trade_date_of(now),
            occurred_at=now,
            description=f"transfer out {qty} {symbol}",
            details={"symbol": symbol, "qty": str(-qty), "transfer_id": transfer_id},
            legs=[_Leg(rows[keys[0]], -qty), _Leg(rows[keys[2]], qty)],
        )
        by_id = {lot.pk: lot for lot in _open_lots_lock(account.pk, symbol)}
        for lot_id, take in _transfer_out_plan(by_id.values(), qty):
            lot = by_id[lot_id]
            cost = _lot_cost_of(lot, take)
            lot.remaining -= take
            lot.remaining_cost -= cost
            lot.save(update_fields=["remaining", "remaining_cost"])
        return entry


def _transfer_out_plan(open_lots: Iterable[TaxLot], qty: Decimal) -> list[tuple[int, Decimal]]:
    """FIFO over what open sell orders have not chosen, then (only if that is short) FIFO over the rest, so a
    transfer out never takes shares a customer picked for a pending sale. The shares moved are unreserved, and
    choices never exceed reservations, so the first pass covers them whenever lots agree with the ledger."""
    lots_ = list(open_lots)
    chosen = _chosen_elsewhere([lot.pk for lot in lots_])
    free = [
        lots.OpenLot(lot.pk, lot.acquired_date, max(lot.remaining - chosen.get(lot.pk, ZERO), ZERO), ZERO)
        for lot in lots_
    ]
    first = lots.relief_plan(lots=free, qty=qty, method=lots.FIFO)
    taken: dict[int, Decimal] = defaultdict(Decimal)
    for part in first:
        taken[part.lot_id] += part.qty
    rest = [lots.OpenLot(lot.pk, lot.acquired_date, lot.remaining - taken[lot.pk], ZERO) for lot in lots_]
    second = lots.relief_plan(lots=rest, qty=qty - sum(taken.values(), ZERO), method=lots.FIFO)
    return [(part.lot_id, part.qty) for part in (*first, *second)]


def _chosen_elsewhere(lot_ids: Sequence[int], *, exclude_reservation: Any = None) -> dict[int, Decimal]:
    """Quantity still chosen from each lot by open sell orders (their reservations not yet used up)."""
    qs = LotSelection.objects.filter(lot_id__in=lot_ids, remaining__gt=0, reservation__remaining__gt=0)
    if exclude_reservation is not None:
        qs = qs.exclude(reservation=exclude_reservation)
    return {row["lot_id"]: row["s"] for row in qs.values("lot_id").annotate(s=Sum("remaining"))}


# --------------------------------------------------------------------------------------------------------------
# Cost basis: the account's lot relief method and specific lot selection

EVENTS_TOPIC = "settlement.events"


def cost_basis_method_of(account_id: Any) -> str:
    """The account's lot relief method (FIFO without a setting)."""
    method = CostBasisSetting.objects.filter(account_id=account_id).values_list("method", flat=True).first()
    return method or CostBasisMethod.FIFO


def cost_basis_method_set(
    *, account: BrokerageAccount, method: str, actor: Any = None, request: Any = None
) -> CostBasisSetting:
    """Set the account's default lot relief method; applies to sells booked after this commits.

    A change is audited and recorded as ``settlement.CostBasisMethodChanged``; setting the current method again
    changes nothing (no audit record, no event).
    """
    if method not in CostBasisMethod.values:
        raise ValidationError(
            f"method must be one of {', '.join(CostBasisMethod.values)}",
            field="method",
            error="invalid_method",
        )
    with transaction.atomic():
        CostBasisSetting.objects.bulk_create([CostBasisSetting(account=account)], ignore_conflicts=True)
        setting = CostBasisSetting.objects.select_for_update().get(account=account)
        previous = setting.method
        if previous == method:
            return setting
        setting.method = method
        setting.save(update_fields=["method", "updated_at"])
        audit_record(
            actor=actor,
            action="settlement.cost_basis_method_changed",
            target=setting,
            before={"account_id": str(account.pk), "method": previous},
            after={"account_id": str(account.pk), "method": method},
            request=request,
        )
        event_record(
            topic=EVENTS_TOPIC,
            key=str(account.pk),
            event_type="settlement.CostBasisMethodChanged",
            aggregate_type="cost_basis_setting",
            aggregate_id=str(account.pk),
            payload={"account_id": str(account.pk), "method": method, "previous_method": previous},
        )
        return setting


@dataclass(frozen=True, slots=True)
class LotChoice:
    lot_id: int
    qty: Decimal


def lot_selection_set(
    *,
    account: BrokerageAccount,
    order_id: str,
    choices: Sequence[LotChoice],
    actor: Any = None,
    request: Any = None,
) -> list[LotSelection]:
    """Choose the lots an open sell order relieves (replacing any earlier choice; an empty list clears it).

    Allowed only while no fill of the order has booked (its reservation is whole). Checked under lock: the
    order is the account's own open sell (``NotFound`` otherwise), every lot is the account's own (``NotFound``),
    of the order's symbol, each ``qty`` is at most the lot's open quantity less what other open orders already
    selected from it, and the total is at most the order's quantity. Fills then relieve these lots first, in
    this order, and the account's method covers the rest. Lock order: reservation, then lots (primary key),
    as in the sell path (ledger rows, reservation, lots).
    """
    seen: set[int] = set()
    for i, choice in enumerate(choices):
        _qty(choice.qty, f"lots[{i}].qty")
        if choice.lot_id in seen:
            raise ValidationError(f"lot {choice.lot_id} is chosen twice", field="lots", error="duplicate_lot")
        seen.add(choice.lot_id)
    with transaction.atomic():
        res = ShareReservation.objects.select_for_update().filter(order_id=order_id, account=account).first()
        if res is None:
            raise NotFound(f"no open sell order {order_id}")
        if res.remaining == 0:
            raise Conflict(
                f"order {order_id} is no longer open", error="order_not_open", details={"order_id": order_id}
            )
        if res.remaining != res.qty:
            raise Conflict(
                "Lots can be chosen only before any fill of the order books.",
                error="order_partially_filled",
                details={"order_id": order_id, "qty": str(res.qty), "remaining": str(res.remaining)},
            )
        total = sum((c.qty for c in choices), ZERO)
        if total > res.qty:
            raise ValidationError(
                "The chosen quantity exceeds the order quantity.",
                field="lots",
                error="lot_selection_exceeds_order",
                details={"selected": str(total), "order_qty": str(res.qty)},
            )
        locked = {
            lot.pk: lot
            for lot in TaxLot.objects.select_for_update().filter(pk__in=seen, account=account).order_by("pk")
        }
        for choice in choices:
            if choice.lot_id not in locked:
                raise NotFound(f"lot {choice.lot_id} not found")
        taken_elsewhere = _chosen_elsewhere(sorted(seen), exclude_reservation=res)
        for choice in choices:
            lot = locked[choice.lot_id]
            if lot.symbol != res.symbol:
                raise ValidationError(
                    f"lot {lot.pk} is {lot.symbol}, the order sells {res.symbol}",
                    field="lots",
                    error="lot_symbol_mismatch",
                )
            available = lot.remaining - taken_elsewhere.get(lot.pk, ZERO)
            if choice.qty > available:
                raise ValidationError(
                    f"lot {lot.pk} has {available} shares open for selection",
                    field="lots",
                    error="lot_qty_exceeded",
                    details={
                        "lot_id": str(lot.pk),
                        "requested": str(choice.qty),
                        "available": str(available),
                    },
                )
        LotSelection.objects.filter(reservation=res).delete()
        rows = LotSelection.objects.bulk_create(
            [
                LotSelection(reservation=res, lot_id=c.lot_id, seq=i, qty=c.qty, remaining=c.qty)
                for i, c in enumerate(choices)
            ]
        )
        payload_lots = [{"lot_id": str(c.lot_id), "qty": str(c.qty)} for c in choices]
        audit_record(
            actor=actor,
            action="settlement.lot_selection_recorded",
            target=("order", order_id),
            before=None,
            after={"account_id": str(account.pk), "symbol": res.symbol, "lots": payload_lots},
            request=request,
        )
        event_record(
            topic=EVENTS_TOPIC,
            key=str(account.pk),
            event_type="settlement.LotSelectionRecorded",
            aggregate_type="lot_selection",
            aggregate_id=order_id,
            payload={
                "account_id": str(account.pk),
                "order_id": order_id,
                "symbol": res.symbol,
                "lots": payload_lots,
            },
        )
        return rows


def lot_selections_split(*, symbol: str, ratio: Fraction) -> int:
    """Scale the still-open lot choices of ``symbol`` by a split's ratio (new shares per old share), rounded down
    to the quantity quantum, as the lots themselves are. For ``corporate_actions`` to call inside the split's
    transaction after it scaled the lots; a choice larger than its lot after cash in lieu is capped when the
    fill books. Returns the number of choices adjusted."""
    rows = list(
        LotSelection.objects.select_for_update(of=("self",))
        .filter(lot__symbol=symbol, remaining__gt=0, reservation__remaining__gt=0)
        .order_by("pk")
    )
    scale = 10**QTY_DECIMAL_PLACES
    for sel in rows:
        remaining = Decimal(int(Fraction(sel.remaining) * ratio * scale)) / scale
        qty = max(Decimal(int(Fraction(sel.qty) * ratio * scale)) / scale, remaining, QTY_QUANTUM)
        sel.remaining, sel.qty = remaining, qty
        sel.save(update_fields=["remaining", "qty"])
    return len(rows)
