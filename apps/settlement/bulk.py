"""Many cash holds and share reservations of ONE account in one go (the batch order endpoint's writes).

The same rules as ``services.hold_place`` / ``services.shares_reserve``, evaluated in request order against
balances read once:

- ``reservations_open`` creates missing ledger rows and locks every row the batch can touch (cash settled,
  unsettled, held; each sold symbol's settled and unsettled shares) ONCE, in primary-key order
  (``services.ledger_rows_lock``), before any balance is read. Nothing else is locked afterwards.
- ``hold`` / ``reserve`` decide one order at a time against the running balances: an unaffordable order raises
  (``InsufficientFunds`` / ``BusinessRuleViolation``, the single-order errors) and changes nothing, so later,
  smaller orders may still fit.
- ``flush`` writes what was decided with bulk inserts: CashHold rows, one HOLD JournalEntry per hold (source
  ``("hold", order_id)`` as in ``hold_place``, so ``hold_release`` works unchanged), their postings, one UPDATE
  per touched ledger row, and ShareReservation rows. It must run in the same transaction as the locks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import BusinessRuleViolation, InsufficientFunds
from apps.settlement.models import CashHold, JournalEntry, LedgerAccount, Posting, ShareReservation
from apps.settlement.services import (
    ZERO,
    EntryType,
    Kind,
    LedgerKey,
    _cust,
    _money,
    _qty,
    ledger_rows_lock,
    settled_cash_only,
    trade_date_of,
)


@dataclass(slots=True)
class _Hold:
    order_id: str
    amount: Decimal
    from_settled: Decimal
    from_unsettled: Decimal


@dataclass(slots=True)
class AccountReservations:
    """Running buying power and share availability of one locked account (see the module docstring)."""

    account: BrokerageAccount
    rows: dict[LedgerKey, LedgerAccount]
    settled: Decimal
    unsettled: Decimal
    restricted: bool
    shares_available: dict[str, Decimal]
    holds: list[_Hold] = field(default_factory=list)
    reservations: list[tuple[str, str, Decimal]] = field(default_factory=list)

    def hold(self, *, order_id: str, amount: Decimal) -> None:
        """Decide a cash hold; raises ``InsufficientFunds`` exactly as ``hold_place`` would at this point."""
        _money(amount, "amount")
        buying_power = self.settled + self.unsettled
        if amount > buying_power:
            raise InsufficientFunds(
                rule="settled_cash_only_restriction" if self.restricted else "cash_account_buying_power",
                details={
                    "required": str(amount),
                    "buying_power": str(buying_power),
                    "settled_cash": str(self.settled),
                    "unsettled_proceeds": str(self.unsettled),
                },
            )
        from_settled = min(amount, self.settled)
        from_unsettled = amount - from_settled
        self.settled -= from_settled
        self.unsettled -= from_unsettled
        self.holds.append(_Hold(order_id, amount, from_settled, from_unsettled))

    def reserve(self, *, order_id: str, symbol: str, qty: Decimal) -> None:
        """Decide a share reservation; raises ``insufficient_qty`` exactly as ``shares_reserve`` would."""
        _qty(qty)
        available = self.shares_available.get(symbol, ZERO)
        if qty > available:
            raise BusinessRuleViolation(
                "Insufficient qty available for order.",
                error="insufficient_qty",
                rule="no_short_selling_cash_account",
                details={"symbol": symbol, "requested": str(qty), "available": str(available)},
            )
        self.shares_available[symbol] = available - qty
        self.reservations.append((order_id, symbol, qty))

    def flush(self) -> None:
        """Bulk-write every decided hold and reservation (inside the transaction that holds the locks)."""
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("AccountReservations.flush must run inside the locking transaction")
        account = self.account
        if self.holds:
            CashHold.objects.bulk_create(
                [
                    CashHold(
                        order_id=h.order_id,
                        account=account,
                        amount=h.amount,
                        remaining=h.amount,
                        unsettled_remaining=h.from_unsettled,
                    )
                    for h in self.holds
                ]
            )
            now = timezone.now()
            entries = JournalEntry.objects.bulk_create(
                [
                    JournalEntry(
                        source_type="hold",
                        source_id=h.order_id,
                        entry_type=EntryType.HOLD,
                        account=account,
                        effective_date=trade_date_of(now),
                        occurred_at=now,
                        details={"order_id": h.order_id, "amount": str(h.amount)},
                    )
                    for h in self.holds
                ]
            )
            settled_row = self.rows[_cust(account.pk, Kind.CASH_SETTLED)]
            unsettled_row = self.rows[_cust(account.pk, Kind.CASH_UNSETTLED)]
            held_row = self.rows[_cust(account.pk, Kind.CASH_HELD)]
            postings: list[Posting] = []
            totals: dict[int, Decimal] = {settled_row.pk: ZERO, unsettled_row.pk: ZERO, held_row.pk: ZERO}
            for entry, h in zip(entries, self.holds, strict=True):
                # Postings in ledger-row pk order per entry, zero legs left out (as _entry_post does).
                legs = sorted(
                    [
                        (settled_row, -h.from_settled),
                        (unsettled_row, -h.from_unsettled),
                        (held_row, h.amount),
                    ],
                    key=lambda leg: leg[0].pk,
                )
                for row, amount in legs:
                    if amount != 0:
                        postings.append(
                            Posting(entry=entry, ledger_account=row, asset=row.asset, amount=amount)
                        )
                        totals[row.pk] += amount
            Posting.objects.bulk_create(postings)
            _balances_move(self.rows.values(), totals)
        if self.reservations:
            ShareReservation.objects.bulk_create(
                [
                    ShareReservation(order_id=oid, account=account, symbol=sym, qty=qty, remaining=qty)
                    for oid, sym, qty in self.reservations
                ]
            )
        self.holds = []
        self.reservations = []


def _balances_move(rows: Iterable[LedgerAccount], totals: dict[int, Decimal]) -> None:
    by_pk = {r.pk: r for r in rows}
    with connection.cursor() as cursor:
        for pk in sorted(totals):
            if totals[pk] == 0:
                continue
            cursor.execute(
                "UPDATE settlement_ledgeraccount SET balance = balance + %s, updated_at = now() "
                "WHERE id = %s RETURNING balance",
                [totals[pk], pk],
            )
            row = cursor.fetchone()
            assert row is not None
            by_pk[pk].balance = row[0]


def reservations_open(*, account: BrokerageAccount, sell_symbols: Iterable[str]) -> AccountReservations:
    """Lock the account's cash rows and the sold symbols' share rows once; read the balances to decide on."""
    symbols = sorted(set(sell_symbols))
    keys: list[LedgerKey] = [
        _cust(account.pk, k) for k in (Kind.CASH_SETTLED, Kind.CASH_UNSETTLED, Kind.CASH_HELD)
    ]
    for sym in symbols:
        keys += [_cust(account.pk, Kind.SEC_SETTLED, sym), _cust(account.pk, Kind.SEC_UNSETTLED, sym)]
    rows = ledger_rows_lock(keys)
    settled = rows[keys[0]].balance
    unsettled = max(rows[keys[1]].balance, ZERO)
    restricted = unsettled > 0 and settled_cash_only(account.pk, trade_date_of(timezone.now()))
    if restricted:
        unsettled = ZERO
    available: dict[str, Decimal] = {}
    if symbols:
        reserved: dict[str, Any] = dict(
            ShareReservation.objects.filter(account_id=account.pk, symbol__in=symbols)
            .values("symbol")
            .annotate(s=Sum("remaining"))
            .values_list("symbol", "s")
        )
        for sym in symbols:
            held = (
                rows[_cust(account.pk, Kind.SEC_SETTLED, sym)].balance
                + rows[_cust(account.pk, Kind.SEC_UNSETTLED, sym)].balance
            )
            available[sym] = held - (reserved.get(sym) or ZERO)
    return AccountReservations(
        account=account,
        rows=rows,
        settled=settled,
        unsettled=unsettled,
        restricted=restricted,
        shares_available=available,
    )
