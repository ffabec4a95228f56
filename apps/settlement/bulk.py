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

``trade_date_book(ops=[...])`` books many fills and order releases (any accounts), in the given order, with
exactly the rows that ``services.fill_settle_trade_date`` (a ``FillData``) and ``services.hold_release`` +
``services.shares_release`` (an ``OrderRelease``; an order with neither is skipped, as their ``NotFound``)
called on each in turn would write: ledger entries and postings, obligations, fee activities, lots, holds and
reservations (tests/settlement/test_fills_bulk.py compares both ways). The ledger rows of every op are locked
once (primary-key order), then the holds, then the reservations (pk order); the ops are decided in order against
running in-memory balances (so a release sees the cash a fill before it moved, and the pending proceeds of a
sale before it); entries, postings and obligations are bulk-inserted in op order and every ledger row's balance
moves once. Fee rules are read once per trade date. Lots (``_lots_book``, after the entries exist): the buys'
lots are inserted at once in op order, the sold (account, symbol) pairs' open lots and the sold orders' lot
selections are locked once each (primary-key order, after the reservations), and every sell is decided in op
order by ``services.lots_relieve`` (the per-fill path's own relief) on running in-memory lots and selections.
``fills_settle_trade_date(fills=...)`` and ``orders_release(order_ids=...)`` are its one-kind shorthands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.copy import copy_insert_values
from apps.core.errors import BusinessRuleViolation, NotFound, ValidationError
from apps.core.sql import hot_cursor, model_from_row, models_from_sql, rows_from_sql, select_list
from apps.settlement.models import (
    CURRENCY,
    CashHold,
    CostBasisMethod,
    FeeRule,
    GoodFaithViolation,
    JournalEntry,
    LedgerAccount,
    LotSelection,
    Posting,
    RealizedGain,
    SettlementObligation,
    ShareReservation,
    TaxLot,
)
from apps.settlement.services import (
    ZERO,
    EntryType,
    Kind,
    LedgerKey,
    _cust,
    _money,
    _pending_cash_receivable,
    _qty,
    cash_spendable,
    fee_rules_in_force,
    fees_apply,
    fill_entry_details,
    fill_ledger_keys,
    fill_notional,
    good_faith_rule_apply,
    house_moves_apply,
    insufficient_funds,
    ledger_balances_move,
    ledger_rows_lock,
    lot_opened_fields,
    lots_relieve,
    settlement_date_of,
    trade_date_of,
)
from apps.settlement.types import FillData


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
        if amount > self.settled + self.unsettled:
            raise insufficient_funds(
                amount=amount, settled=self.settled, unsettled=self.unsettled, restricted=self.restricted
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
            postings: list[tuple[int, int, str, Decimal]] = []
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
                        postings.append((entry.pk, row.pk, row.asset, amount))
                        totals[row.pk] += amount
            copy_insert_values(Posting, ("entry_id", "ledger_account_id", "asset", "amount"), postings)
            ledger_balances_move(self.rows.values(), totals)
        if self.reservations:
            ShareReservation.objects.bulk_create(
                [
                    ShareReservation(order_id=oid, account=account, symbol=sym, qty=qty, remaining=qty)
                    for oid, sym, qty in self.reservations
                ]
            )
        self.holds = []
        self.reservations = []


def reservations_open(*, account: BrokerageAccount, sell_symbols: Iterable[str]) -> AccountReservations:
    """Lock the account's cash rows and the sold symbols' share rows once; read the balances to decide on."""
    symbols = sorted(set(sell_symbols))
    keys: list[LedgerKey] = [
        _cust(account.pk, k) for k in (Kind.CASH_SETTLED, Kind.CASH_UNSETTLED, Kind.CASH_HELD)
    ]
    for sym in symbols:
        keys += [_cust(account.pk, Kind.SEC_SETTLED, sym), _cust(account.pk, Kind.SEC_UNSETTLED, sym)]
    rows = ledger_rows_lock(keys)
    settled, unsettled, restricted = cash_spendable(account.pk, rows[keys[0]], rows[keys[1]])
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


# --------------------------------------------------------------------------------------------------------------
# Many fills and releases at once (the order projection's chunk)


@dataclass(frozen=True, slots=True)
class OrderRelease:
    """Release what is left of the order's hold and reservation (``hold_release`` + ``shares_release``)."""

    order_id: str


def _fill_validate(fill: FillData) -> None:
    _qty(fill.qty)
    if fill.price <= 0:
        raise ValidationError("price must be positive", field="price")
    if fill.side not in ("buy", "sell"):
        raise ValidationError("side must be buy or sell", field="side")


def _cash_keys(a: Any) -> tuple[LedgerKey, LedgerKey, LedgerKey]:
    return _cust(a, Kind.CASH_SETTLED), _cust(a, Kind.CASH_UNSETTLED), _cust(a, Kind.CASH_HELD)


@dataclass(slots=True)
class _Booked:
    """One op's writes: its entry (and fee entry), net legs in row-pk order, obligations; ``fill`` for lots."""

    entry: JournalEntry
    legs: list[tuple[LedgerAccount, Decimal]]
    fee_entry: JournalEntry | None = None
    obligations: list[SettlementObligation] = field(default_factory=list)
    fill: FillData | None = None
    notional: Decimal = ZERO
    fee_total: Decimal = ZERO


class _Book:
    """The locked rows and running state of one ``trade_date_book`` call."""

    def __init__(self, rows: dict[LedgerKey, LedgerAccount], house: HouseMoves | None = None) -> None:
        self.rows = rows
        self.house = house  # the firm's rows' moves, deferred to the caller's last write (not locked yet)
        self.balance: dict[int, Decimal] = {r.pk: r.balance for r in rows.values()}
        self.holds: dict[str, CashHold] = {}
        self.reservations: dict[str, ShareReservation] = {}
        self.touched_holds: dict[int, CashHold] = {}
        self.touched_res: dict[int, ShareReservation] = {}
        # Positive cash obligations booked in this call, per account (settle date, amount): pending proceeds.
        self.proceeds_due: dict[Any, list[tuple[date, Decimal]]] = {}
        self.pending_stored: dict[
            Any, Decimal
        ] = {}  # _pending_cash_receivable as stored, read once when needed
        self.booked: list[_Booked] = []
        self.now = timezone.now()
        self.fee_rules: dict[date, list[FeeRule]] = {}  # the schedule in force, read once per trade date

    def net(self, legs: Iterable[tuple[LedgerAccount, Decimal]]) -> list[tuple[LedgerAccount, Decimal]]:
        """Net per ledger row, in primary-key order, zero legs left out (as ``services._entry_post``); moves the
        running balances."""
        totals: dict[int, Decimal] = {}
        by_pk: dict[int, LedgerAccount] = {}
        for row, amount in legs:
            totals[row.pk] = totals.get(row.pk, ZERO) + amount
            by_pk[row.pk] = row
        out = [(by_pk[pk], totals[pk]) for pk in sorted(totals) if totals[pk] != 0]
        for row, amount in out:
            self.balance[row.pk] += amount
        return out

    def release(self, order_id: str) -> None:
        """``shares_release`` then ``hold_release`` of one order, on the running state."""
        res = self.reservations.get(order_id)
        if res is not None and res.remaining:
            res.remaining = ZERO
            self.touched_res[res.pk] = res
        hold = self.holds.get(order_id)
        if hold is None or hold.remaining == 0:
            return
        settled, unsettled, held = (self.rows[k] for k in _cash_keys(hold.account_id))
        release = hold.remaining
        u_part = min(release, hold.unsettled_remaining)
        to_unsettled = ZERO
        if u_part:
            # services._hold_unsettled_return, with this call's pending proceeds and running unsettled balance.
            if hold.account_id not in self.pending_stored:
                self.pending_stored[hold.account_id] = _pending_cash_receivable(hold.account_id)
            pending = self.pending_stored[hold.account_id] + sum(
                (amount for _, amount in self.proceeds_due.get(str(hold.account_id), [])), ZERO
            )
            drawn_outstanding = max(pending - self.balance[unsettled.pk], ZERO)
            to_unsettled = Decimal(min(u_part, drawn_outstanding))
        hold.remaining -= release
        hold.unsettled_remaining -= u_part
        hold.release_count += 1
        self.touched_holds[hold.pk] = hold
        entry = JournalEntry(
            source_type="hold_release",
            source_id=f"{order_id}:{hold.release_count}",
            entry_type=EntryType.HOLD_RELEASE,
            account_id=hold.account_id,
            effective_date=trade_date_of(self.now),
            occurred_at=self.now,
            details={"order_id": order_id, "amount": str(release)},
        )
        legs = self.net([(held, -release), (unsettled, to_unsettled), (settled, release - to_unsettled)])
        self.booked.append(_Booked(entry, legs))

    def fill(self, fill: FillData, account: BrokerageAccount, keys: dict[str, LedgerKey]) -> None:
        """``fill_settle_trade_date`` of one fill, decided on the running state."""
        r = {name: self.rows[key] for name, key in keys.items()}
        trade_date = trade_date_of(fill.filled_at)
        settle_date = settlement_date_of(trade_date)
        notional = fill_notional(fill.qty, fill.price)
        if trade_date not in self.fee_rules:
            self.fee_rules[trade_date] = fee_rules_in_force(trade_date)
        fees = fees_apply(self.fee_rules[trade_date], side=fill.side, notional=notional, qty=fill.qty)
        fee_total = sum((f for _, f in fees), ZERO)
        details = fill_entry_details(fill, notional=notional, fees=fees, settle_date=settle_date)
        buy = fill.side == "buy"
        legs: list[tuple[LedgerAccount, Decimal]] = [
            (r["sec_unsettled"], fill.qty if buy else -fill.qty),
            (r["clearing_sec"], -fill.qty if buy else fill.qty),
        ]
        if buy:
            legs += self._buy_cash_legs(fill, r, notional, fee_total, details)
        else:
            res = self.reservations.get(fill.order_id)
            if res is not None and res.remaining:  # services._reservation_consume
                res.remaining -= min(fill.qty, res.remaining)
                self.touched_res[res.pk] = res
            legs += [
                (r["clearing_cash"], -notional),
                (r["unsettled"], notional - fee_total),
                (r["fees"], fee_total),
            ]
        entry = JournalEntry(
            source_type="fill",
            source_id=fill.fill_id,
            entry_type=EntryType.FILL,
            account=account,
            effective_date=trade_date,
            occurred_at=fill.filled_at,
            description=f"{fill.side} {fill.qty} {fill.symbol} @ {fill.price}"[:300],
            details=details,
        )
        obligations = [
            SettlementObligation(
                account=account,
                trade_entry=entry,
                kind="sec",
                asset=fill.symbol,
                amount=fill.qty if buy else -fill.qty,
                trade_date=trade_date,
                settle_date=settle_date,
            )
        ]
        if not buy:
            proceeds = notional - fee_total
            obligations.append(
                SettlementObligation(
                    account=account,
                    trade_entry=entry,
                    kind="cash",
                    asset=CURRENCY,
                    amount=proceeds,
                    trade_date=trade_date,
                    settle_date=settle_date,
                )
            )
            if proceeds > 0:
                self.proceeds_due.setdefault(fill.account_id, []).append((settle_date, proceeds))
        fee_entry = None
        if fee_total:
            fee_entry = JournalEntry(  # services._fee_activity_record
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
                    "net_amount": str(-fee_total),
                    "fees": {code: str(f) for code, f in fees},
                },
            )
        self.booked.append(_Booked(entry, self.net(legs), fee_entry, obligations, fill, notional, fee_total))

    def _buy_cash_legs(
        self,
        fill: FillData,
        r: dict[str, LedgerAccount],
        notional: Decimal,
        fee_total: Decimal,
        details: dict[str, Any],
    ) -> list[tuple[LedgerAccount, Decimal]]:
        """``services._buy_cash_legs`` on the locked hold and the running balances."""
        need = notional + fee_total
        hold = self.holds.get(fill.order_id)
        take = take_u = ZERO
        if hold is not None:
            take = min(need, hold.remaining)
            settled_part = hold.remaining - hold.unsettled_remaining
            take_u = max(take - settled_part, ZERO)
            hold.remaining -= take
            hold.unsettled_remaining -= take_u
            self.touched_holds[hold.pk] = hold
        shortfall = need - take
        from_settled = min(shortfall, max(self.balance[r["settled"].pk], ZERO))
        from_unsettled = shortfall - from_settled
        if take_u or from_unsettled:
            details["unsettled_funded"] = str(take_u + from_unsettled)
            stored = (
                SettlementObligation.objects.filter(
                    account_id=r["settled"].account_id, kind="cash", settled_at__isnull=True, amount__gt=0
                )
                .order_by("-settle_date")
                .values_list("settle_date", flat=True)
                .first()
            )
            dates = [d for d in [stored, *(d for d, _ in self.proceeds_due.get(fill.account_id, []))] if d]
            latest = max(dates) if dates else None
            details["funds_settle_date"] = (latest or date.fromisoformat(details["settle_date"])).isoformat()
        return [
            (r["held"], -take),
            (r["settled"], -from_settled),
            (r["unsettled"], -from_unsettled),
            (r["clearing_cash"], notional),
            (r["fees"], fee_total),
        ]

    def write(self, accounts: dict[str, BrokerageAccount]) -> None:
        """Bulk-insert the entries (in op order, each fee entry after its fill's, as booked one by one),
        postings and obligations; move every touched ledger row once; write holds and reservations; then
        open and relieve the lots of every fill (``_lots_book``)."""
        entries: list[JournalEntry] = []
        for b in self.booked:
            entries.append(b.entry)
            if b.fee_entry is not None:
                entries.append(b.fee_entry)
        if entries:
            JournalEntry.objects.bulk_create(entries)  # INSERT: the postings need the entries' ids back
            copy_insert_values(  # no Posting instances: four values a row
                Posting,
                ("entry_id", "ledger_account_id", "asset", "amount"),
                [(b.entry.pk, row.pk, row.asset, amount) for b in self.booked for row, amount in b.legs],
            )
        obligations = [o for b in self.booked for o in b.obligations]
        if obligations:
            SettlementObligation.objects.bulk_create(obligations)
        totals: dict[int, Decimal] = {}
        for b in self.booked:
            for row, amount in b.legs:
                if self.house is not None and row.account_id is None:
                    self.house.add(row, amount)
                else:
                    totals[row.pk] = totals.get(row.pk, ZERO) + amount
        ledger_balances_move(self.rows.values(), totals)
        for h in self.touched_holds.values():
            h.updated_at = self.now
        for res in self.touched_res.values():
            res.updated_at = self.now
        # One UPDATE from arrays each (QuerySet.bulk_update's CASE per row and field cost more to build).
        _rows_update(
            CashHold._meta.db_table,
            {
                "remaining": "numeric",
                "unsettled_remaining": "numeric",
                "release_count": "integer",
                "updated_at": "timestamptz",
            },
            [
                (pk, h.remaining, h.unsettled_remaining, h.release_count, h.updated_at)
                for pk, h in sorted(self.touched_holds.items())
            ],
        )
        _rows_update(
            ShareReservation._meta.db_table,
            {"remaining": "numeric", "updated_at": "timestamptz"},
            [(pk, r.remaining, r.updated_at) for pk, r in sorted(self.touched_res.items())],
        )
        _lots_book([b for b in self.booked if b.fill is not None], accounts)


def _lots_book(fills: Sequence[_Booked], accounts: dict[str, BrokerageAccount]) -> None:
    """``services._lots_apply`` of every fill in op order, with a handful of statements for the whole call.

    Buy lots are inserted first, in op order (so their primary keys, the FIFO tie-break, follow op order as
    they would one by one); a buy's lot becomes available to the sells after it. The open lots of every sold
    (account, symbol) and the sold orders' open lot selections are locked once each, in primary-key order, after
    the ledger rows, holds and reservations (as on the per-fill path). Each sell is then decided by
    ``services.lots_relieve`` on the running in-memory lots and selections, with the account's method read
    once; changed lots and selections are written with one UPDATE each and the gains with one INSERT. A sell
    with good-faith violations has them inserted and the rule applied in op order (the rule counts the
    violations already stored, as it did after each earlier sell).
    """
    new_lots: dict[int, TaxLot] = {}  # position in ``fills`` -> the lot its buy opened
    for i, b in enumerate(fills):
        assert b.fill is not None
        if b.fill.side == "buy":
            new_lots[i] = TaxLot(
                **lot_opened_fields(fill=b.fill, entry=b.entry, notional=b.notional, fee_total=b.fee_total)
            )
    if new_lots:
        TaxLot.objects.bulk_create(list(new_lots.values()))
    sells = [b for b in fills if b.fill is not None and b.fill.side == "sell"]
    if not sells:
        return
    # Keys by the account's canonical id (a fill carries the id as the event spelled it).
    pairs = sorted(
        {(str(accounts[b.fill.account_id].pk), b.fill.symbol) for b in sells if b.fill is not None}
    )
    methods = {str(a): m for a, m in rows_from_sql(_COST_BASIS_METHODS_SQL, [sorted({a for a, _ in pairs})])}
    opened = {lot.pk for lot in new_lots.values()}
    open_lots: dict[tuple[str, str], dict[int, TaxLot]] = {pair: {} for pair in pairs}
    for lot in _open_lots_lock_many(pairs):
        if lot.pk not in opened:  # this call's buy lots join in op order below
            open_lots[(str(lot.account_id), lot.symbol)][lot.pk] = lot
    selections: dict[tuple[str, str], list[LotSelection]] = {}
    sold_orders = sorted({b.fill.order_id for b in sells if b.fill is not None})
    for *row, order_id, account_id in rows_from_sql(_SELECTIONS_LOCK_SQL, [sold_orders]):
        sel = model_from_row(LotSelection, row)
        assert sel is not None
        selections.setdefault((order_id, str(account_id)), []).append(sel)
    for chosen in selections.values():
        chosen.sort(key=lambda sel: (sel.seq, sel.pk))
    touched_lots: dict[int, TaxLot] = {}
    touched_sels: dict[int, LotSelection] = {}
    gains: list[RealizedGain] = []
    violations: list[list[GoodFaithViolation]] = []
    for i, b in enumerate(fills):
        fill = b.fill
        assert fill is not None
        account = accounts[fill.account_id]
        pair = (str(account.pk), fill.symbol)
        if fill.side == "buy":
            if pair in open_lots:
                open_lots[pair][new_lots[i].pk] = new_lots[i]
            continue
        chosen = selections.get((fill.order_id, str(account.pk)), [])
        relief = lots_relieve(
            account=account,
            fill=fill,
            entry=b.entry,
            notional=b.notional,
            fee_total=b.fee_total,
            method=methods.get(pair[0]) or CostBasisMethod.FIFO,  # no setting: FIFO (cost_basis_method_of)
            open_lots=list(open_lots[pair].values()),
            selections=[sel for sel in chosen if sel.remaining > 0],
        )
        for lot in relief.lots:
            touched_lots[lot.pk] = lot
            if lot.remaining == 0:
                del open_lots[pair][lot.pk]
        for sel in relief.selections:
            touched_sels[sel.pk] = sel
        gains += relief.gains
        if relief.violations:
            violations.append(relief.violations)
    _rows_update(
        TaxLot._meta.db_table,
        {"remaining": "numeric", "remaining_cost": "numeric"},
        [(pk, lot.remaining, lot.remaining_cost) for pk, lot in sorted(touched_lots.items())],
    )
    _rows_update(
        LotSelection._meta.db_table,
        {"remaining": "numeric"},
        [(pk, sel.remaining) for pk, sel in sorted(touched_sels.items())],
    )
    RealizedGain.objects.bulk_create(gains)
    for found in violations:
        GoodFaithViolation.objects.bulk_create(found)
        good_faith_rule_apply(account=found[0].account, violation=found[0])


def _open_lots_lock_many(pairs: Sequence[tuple[str, str]]) -> list[TaxLot]:
    """The open lots of each (account id, symbol), locked in primary-key order (``services._open_lots_lock`` for
    many pairs), with their buy entries loaded for the good-faith check."""
    found = []
    width = len(TaxLot._meta.concrete_fields)
    for row in rows_from_sql(_OPEN_LOTS_LOCK_SQL, [[a for a, _ in pairs], [s for _, s in pairs]]):
        lot = model_from_row(TaxLot, row)
        entry = model_from_row(JournalEntry, row, width)
        assert lot is not None
        assert entry is not None
        lot.source_entry = entry
        found.append(lot)
    return found


# The hand-written reads of a chunk's booking: fixed statement texts (``= ANY`` of an array, not ``IN`` of a
# list), so each is prepared once per connection, and no ORM statement building on the projection's hot path.
_JE = JournalEntry._meta.db_table
_ENTRIES_BY_SOURCE_SQL = (
    f"SELECT {select_list(JournalEntry)} FROM {_JE} "  # noqa: S608 (model meta)
    "WHERE source_type = %s AND source_id = ANY(%s::text[])"
)
_ACCOUNTS_SQL = (
    f"SELECT {select_list(BrokerageAccount)} FROM {BrokerageAccount._meta.db_table} "  # noqa: S608
    "WHERE id = ANY(%s::uuid[])"
)
_HOLDS_PEEK_SQL = "SELECT id, account_id FROM settlement_cashhold WHERE order_id = ANY(%s::text[])"
_RESERVATIONS_PEEK_SQL = (
    "SELECT id, account_id, symbol FROM settlement_sharereservation WHERE order_id = ANY(%s::text[])"
)
_HOLDS_LOCK_SQL = (
    f"SELECT {select_list(CashHold)} FROM settlement_cashhold "  # noqa: S608 (model meta)
    "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"
)
_RESERVATIONS_LOCK_SQL = (
    f"SELECT {select_list(ShareReservation)} FROM settlement_sharereservation "  # noqa: S608 (model meta)
    "WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE"
)
_COST_BASIS_METHODS_SQL = (
    "SELECT account_id, method FROM settlement_costbasissetting WHERE account_id = ANY(%s::uuid[])"
)
# The open selections of the sold orders, locked (the selection rows only) in primary-key order, each with its
# reservation's order and account.
_SELECTIONS_LOCK_SQL = (
    f"SELECT {select_list(LotSelection, 's')}, r.order_id, r.account_id "  # noqa: S608 (model meta)
    "FROM settlement_lotselection s JOIN settlement_sharereservation r ON r.id = s.reservation_id "
    "WHERE r.order_id = ANY(%s::text[]) AND s.remaining > 0 ORDER BY s.id FOR UPDATE OF s"
)
# The open lots of each (account id, symbol) with their buy entries (not locked), locked in primary-key order.
_OPEN_LOTS_LOCK_SQL = (
    f"SELECT {select_list(TaxLot, 't')}, {select_list(JournalEntry, 'e')} "  # noqa: S608 (model meta)
    "FROM settlement_taxlot t "
    "JOIN unnest(%s::uuid[], %s::text[]) AS k(a, s) ON t.account_id = k.a AND t.symbol = k.s "
    f"JOIN {_JE} e ON e.id = t.source_entry_id "
    "WHERE t.remaining > 0 ORDER BY t.id FOR UPDATE OF t"
)


def _entries_by_source(source_type: str, source_ids: Sequence[str]) -> dict[str, JournalEntry]:
    """The stored entries of ``source_type`` among ``source_ids``, by source id."""
    if not source_ids:
        return {}
    found = models_from_sql(JournalEntry, _ENTRIES_BY_SOURCE_SQL, [source_type, list(source_ids)])
    return {e.source_id: e for e in found}


def _ids_rows(sql: str, values: Iterable[Any]) -> list[tuple[Any, ...]]:
    """The rows of a hand-written read keyed by one array parameter (nothing read for no values)."""
    wanted = sorted(set(values))
    return rows_from_sql(sql, [wanted]) if wanted else []


def _rows_update(table: str, columns: dict[str, str], rows: Sequence[tuple[Any, ...]]) -> None:
    """``UPDATE table SET column = new`` for many rows in one statement (rows already locked, pk order)."""
    if not rows:
        return
    names = ["id", *columns]
    types = ["bigint", *columns.values()]
    sets = ", ".join(f"{c} = u.{c}" for c in columns)
    arrays = ", ".join(f"%s::{t}[]" for t in types)
    with hot_cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET {sets} FROM unnest({arrays}) AS u({', '.join(names)}) "  # noqa: S608
            "WHERE t.id = u.id",
            [[row[n] for row in rows] for n in range(len(names))],
        )


@dataclass
class HouseMoves:
    """The firm's ledger rows' balance moves of ``trade_date_book(..., house=...)``, not yet applied: the
    caller applies them as the last write of its transaction (``apply``), so the rows every fill shares are
    locked only from then to the commit (see ``services.ledger_rows_lock``)."""

    rows: dict[int, LedgerAccount] = field(default_factory=dict)
    totals: dict[int, Decimal] = field(default_factory=dict)

    def add(self, row: LedgerAccount, amount: Decimal) -> None:
        self.rows[row.pk] = row
        self.totals[row.pk] = self.totals.get(row.pk, ZERO) + amount

    def apply(self) -> None:
        house_moves_apply(self.rows.values(), self.totals)
        self.totals.clear()


def trade_date_book(
    *, ops: Sequence[FillData | OrderRelease], house: HouseMoves | None = None
) -> dict[str, JournalEntry]:
    """Book fills and releases in order, as the per-op services would (see the module docstring).

    Idempotent: a fill already booked (or earlier in ``ops``) books nothing again; a release releases only what
    is left. Returns the entry of every fill by ``fill_id``. With ``house``, the firm's rows are not locked and
    their moves are added to it instead of written: the caller must ``house.apply()`` in this transaction.
    """
    fills = [op for op in ops if isinstance(op, FillData)]
    for fill in fills:
        _fill_validate(fill)
    if not ops:
        return {}
    with transaction.atomic():
        booked = _entries_by_source("fill", [f.fill_id for f in fills])
        fills = [f for f in fills if f.fill_id not in booked]
        wanted_accounts = sorted({f.account_id for f in fills})
        accounts = (
            {str(a.pk): a for a in models_from_sql(BrokerageAccount, _ACCOUNTS_SQL, [wanted_accounts])}
            if wanted_accounts
            else {}
        )
        for f in fills:
            if f.account_id not in accounts:
                raise NotFound(f"brokerage account {f.account_id} not found")
        released = [op.order_id for op in ops if isinstance(op, OrderRelease)]
        buy_orders = {f.order_id for f in fills if f.side == "buy"} | set(released)
        sell_orders = {f.order_id for f in fills if f.side == "sell"} | set(released)
        peek_holds = _ids_rows(_HOLDS_PEEK_SQL, buy_orders)
        peek_res = _ids_rows(_RESERVATIONS_PEEK_SQL, sell_orders)
        if not fills and not peek_holds and not peek_res:
            return booked
        fill_keys = {id(f): fill_ledger_keys(f, accounts[f.account_id].pk) for f in fills}
        keys: list[LedgerKey] = [k for ks in fill_keys.values() for k in ks.values()]
        for _, a in peek_holds:
            keys += _cash_keys(a)
        keys += [_cust(a, Kind.SEC_SETTLED, sym) for _, a, sym in peek_res]  # shares_release's lock
        book = _Book(ledger_rows_lock(keys, defer_house=house is not None), house)
        # Looked for again under the locks: a concurrent twin may have booked some fills while we waited.
        booked.update(_entries_by_source("fill", [f.fill_id for f in fills]))
        if peek_holds:
            book.holds = {
                h.order_id: h
                for h in models_from_sql(CashHold, _HOLDS_LOCK_SQL, [sorted(pk for pk, _ in peek_holds)])
            }
        if peek_res:
            book.reservations = {
                r.order_id: r
                for r in models_from_sql(
                    ShareReservation, _RESERVATIONS_LOCK_SQL, [sorted(pk for pk, _, _ in peek_res)]
                )
            }
        for op in ops:
            if isinstance(op, OrderRelease):
                book.release(op.order_id)
            elif op.fill_id not in booked:
                book.fill(op, accounts[op.account_id], fill_keys[id(op)])
                booked[op.fill_id] = book.booked[-1].entry
        book.write(accounts)
        return booked


def fills_settle_trade_date(*, fills: Sequence[FillData]) -> list[JournalEntry]:
    """``fill_settle_trade_date`` for each fill in turn (``trade_date_book``); one entry per fill, in order."""
    booked = trade_date_book(ops=fills)
    return [booked[f.fill_id] for f in fills]


def orders_release(*, order_ids: Sequence[str]) -> None:
    """``hold_release`` + ``shares_release`` of each order in turn (``trade_date_book``)."""
    trade_date_book(ops=[OrderRelease(order_id) for order_id in order_ids])


def position_qtys(*, pairs: Iterable[tuple[Any, str]]) -> dict[tuple[str, str], Decimal]:
    """Shares held (settled + unsettled) per ``(str(account id), symbol)``: ``selectors.position(...).qty`` for
    many positions in one read, ``Decimal(0)`` where there is none."""
    wanted = {(str(a), s) for a, s in pairs}
    out: dict[tuple[str, str], Decimal] = dict.fromkeys(wanted, ZERO)
    if not wanted:
        return out
    keys = sorted(wanted)
    rows = rows_from_sql(
        _POSITIONS_SQL, [[a for a, _ in keys], [s for _, s in keys], [Kind.SEC_SETTLED, Kind.SEC_UNSETTLED]]
    )
    for account_id, asset, bal in rows:
        key = (str(account_id), asset)
        if key in out:
            out[key] += bal
    return {k: v if v != 0 else ZERO for k, v in out.items()}


# Shares per (account, symbol): the settled and unsettled security rows of exactly the pairs asked for.
_POSITIONS_SQL = (
    "SELECT l.account_id, l.asset, l.balance FROM settlement_ledgeraccount l "
    "JOIN unnest(%s::uuid[], %s::text[]) AS k(a, s) ON l.account_id = k.a AND l.asset = k.s "
    "WHERE l.kind = ANY(%s::text[])"
)
