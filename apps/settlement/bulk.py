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

``fills_settle_trade_date(fills=[...])`` books many fills (any accounts) with exactly the ledger entries,
postings, obligations, fee activities, lots and hold/reservation consumption that calling
``services.fill_settle_trade_date`` on each fill in turn would book (tests/settlement/test_fills_bulk.py compares
both): the fills' ledger rows are locked once (primary-key order), then their holds and reservations (pk order);
legs are computed in fill order against running in-memory balances; entries, postings and obligations are
bulk-inserted and every ledger row's balance moves once. Lot relief stays ``services._lots_apply``, called per
fill in fill order after the entries exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Sum
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import BusinessRuleViolation, InsufficientFunds, NotFound, ValidationError
from apps.settlement.models import (
    CURRENCY,
    CashHold,
    JournalEntry,
    LedgerAccount,
    Posting,
    SettlementObligation,
    ShareReservation,
)
from apps.settlement.services import (
    ZERO,
    EntryType,
    Kind,
    LedgerKey,
    _cust,
    _house,
    _lots_apply,
    _money,
    _qty,
    fees_for,
    fill_notional,
    ledger_rows_lock,
    settled_cash_only,
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


# --------------------------------------------------------------------------------------------------------------
# Many fills at once (the order projection's chunk)


def _fill_validate(fill: FillData) -> None:
    _qty(fill.qty)
    if fill.price <= 0:
        raise ValidationError("price must be positive", field="price")
    if fill.side not in ("buy", "sell"):
        raise ValidationError("side must be buy or sell", field="side")


def _fill_keys(fill: FillData, a: Any) -> dict[str, LedgerKey]:
    return {
        "settled": _cust(a, Kind.CASH_SETTLED),
        "unsettled": _cust(a, Kind.CASH_UNSETTLED),
        "held": _cust(a, Kind.CASH_HELD),
        "sec_unsettled": _cust(a, Kind.SEC_UNSETTLED, fill.symbol),
        "clearing_cash": _house(Kind.CLEARING),
        "clearing_sec": _house(Kind.CLEARING, fill.symbol),
        "fees": _house(Kind.FEES),
    }


@dataclass(slots=True)
class _Booked:
    fill: FillData
    entry: JournalEntry
    fee_entry: JournalEntry | None
    legs: list[tuple[LedgerAccount, Decimal]]
    obligations: list[SettlementObligation]
    notional: Decimal
    fee_total: Decimal


def fills_settle_trade_date(*, fills: Sequence[FillData]) -> list[JournalEntry]:
    """Trade-date postings for many fills, as ``fill_settle_trade_date`` on each in turn (see the module doc).

    Idempotent by ``fill_id`` (a fill already booked, or repeated in ``fills``, returns the entry booked first).
    Returns one entry per fill, in order.
    """
    for fill in fills:
        _fill_validate(fill)
    if not fills:
        return []
    with transaction.atomic():
        ids = [f.fill_id for f in fills]
        booked: dict[str, JournalEntry] = {
            e.source_id: e for e in JournalEntry.objects.filter(source_type="fill", source_id__in=ids)
        }
        if all(i in booked for i in ids):
            return [booked[i] for i in ids]
        accounts = {
            str(a.pk): a for a in BrokerageAccount.objects.filter(pk__in={f.account_id for f in fills})
        }
        for f in fills:
            if f.account_id not in accounts:
                raise NotFound(f"brokerage account {f.account_id} not found")
        keys = [_fill_keys(f, accounts[f.account_id].pk) for f in fills]
        rows = ledger_rows_lock(k for ks in keys for k in ks.values())
        # Looked for again under the locks: a concurrent twin may have booked some while we waited.
        booked.update(
            (e.source_id, e)
            for e in JournalEntry.objects.filter(
                source_type="fill", source_id__in=[i for i in ids if i not in booked]
            )
        )
        todo: list[int] = []
        seen: set[str] = set(booked)
        for n, f in enumerate(fills):
            if f.fill_id not in seen:
                seen.add(f.fill_id)
                todo.append(n)
        if not todo:
            return [booked[i] for i in ids]
        buy_orders = sorted({fills[n].order_id for n in todo if fills[n].side == "buy"})
        sell_orders = sorted({fills[n].order_id for n in todo if fills[n].side == "sell"})
        holds = {
            h.order_id: h
            for h in CashHold.objects.select_for_update().filter(order_id__in=buy_orders).order_by("pk")
        }
        reservations = {
            r.order_id: r
            for r in ShareReservation.objects.select_for_update()
            .filter(order_id__in=sell_orders)
            .order_by("pk")
        }
        balance: dict[int, Decimal] = {r.pk: r.balance for r in rows.values()}
        # Positive cash obligations booked in this call, per account: pending proceeds for _funds_settle_date.
        proceeds_due: dict[Any, list[date]] = {}
        out: list[_Booked] = []
        touched_holds: dict[int, CashHold] = {}
        touched_res: dict[int, ShareReservation] = {}
        for n in todo:
            fill = fills[n]
            r = {name: rows[key] for name, key in keys[n].items()}
            b = _fill_book(fill, accounts[fill.account_id], r, balance, holds, reservations, proceeds_due)
            for row, amount in b.legs:
                balance[row.pk] += amount
            if fill.side == "buy" and fill.order_id in holds:
                touched_holds[holds[fill.order_id].pk] = holds[fill.order_id]
            if fill.side == "sell" and fill.order_id in reservations:
                touched_res[reservations[fill.order_id].pk] = reservations[fill.order_id]
            out.append(b)
        _fills_write(out, rows, touched_holds, touched_res)
        for b in out:
            booked[b.fill.fill_id] = b.entry
        for b in out:
            _lots_apply(
                account=accounts[b.fill.account_id],
                fill=b.fill,
                entry=b.entry,
                notional=b.notional,
                fee_total=b.fee_total,
            )
        return [booked[i] for i in ids]


def _fill_book(
    fill: FillData,
    account: BrokerageAccount,
    r: dict[str, LedgerAccount],
    balance: dict[int, Decimal],
    holds: dict[str, CashHold],
    reservations: dict[str, ShareReservation],
    proceeds_due: dict[Any, list[date]],
) -> _Booked:
    """One fill's entry, legs and obligations, decided in memory exactly as ``fill_settle_trade_date`` does."""
    trade_date = trade_date_of(fill.filled_at)
    settle_date = settlement_date_of(trade_date)
    notional = fill_notional(fill.qty, fill.price)
    fees = fees_for(side=fill.side, notional=notional, qty=fill.qty, trade_date=trade_date)
    fee_total = sum((f for _, f in fees), ZERO)
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
    buy = fill.side == "buy"
    legs: list[tuple[LedgerAccount, Decimal]] = [
        (r["sec_unsettled"], fill.qty if buy else -fill.qty),
        (r["clearing_sec"], -fill.qty if buy else fill.qty),
    ]
    if buy:
        legs += _buy_cash_legs(fill, r, notional, fee_total, details, balance, holds, proceeds_due)
    else:
        res = reservations.get(fill.order_id)
        if res is not None and res.remaining:
            res.remaining -= min(fill.qty, res.remaining)
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
        if notional - fee_total > 0:
            proceeds_due.setdefault(fill.account_id, []).append(settle_date)
    fee_entry = None
    if fee_total:
        fee_entry = JournalEntry(
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
    # Net per ledger row, in primary-key order, zero legs left out (as services._entry_post does).
    totals: dict[int, Decimal] = {}
    by_pk: dict[int, LedgerAccount] = {}
    for row, amount in legs:
        totals[row.pk] = totals.get(row.pk, ZERO) + amount
        by_pk[row.pk] = row
    net = [(by_pk[pk], totals[pk]) for pk in sorted(totals) if totals[pk] != 0]
    return _Booked(fill, entry, fee_entry, net, obligations, notional, fee_total)


def _buy_cash_legs(
    fill: FillData,
    r: dict[str, LedgerAccount],
    notional: Decimal,
    fee_total: Decimal,
    details: dict[str, Any],
    balance: dict[int, Decimal],
    holds: dict[str, CashHold],
    proceeds_due: dict[Any, list[date]],
) -> list[tuple[LedgerAccount, Decimal]]:
    """``services._buy_cash_legs`` on the locked hold and the running balances."""
    need = notional + fee_total
    hold = holds.get(fill.order_id)
    take = take_u = ZERO
    if hold is not None:
        take = min(need, hold.remaining)
        settled_part = hold.remaining - hold.unsettled_remaining
        take_u = max(take - settled_part, ZERO)
        hold.remaining -= take
        hold.unsettled_remaining -= take_u
    shortfall = need - take
    from_settled = min(shortfall, max(balance[r["settled"].pk], ZERO))
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
        pending = [d for d in [stored, *proceeds_due.get(fill.account_id, [])] if d is not None]
        latest = max(pending) if pending else None
        details["funds_settle_date"] = (latest or date.fromisoformat(details["settle_date"])).isoformat()
    return [
        (r["held"], -take),
        (r["settled"], -from_settled),
        (r["unsettled"], -from_unsettled),
        (r["clearing_cash"], notional),
        (r["fees"], fee_total),
    ]


def _fills_write(
    booked: Sequence[_Booked],
    rows: dict[LedgerKey, LedgerAccount],
    holds: dict[int, CashHold],
    reservations: dict[int, ShareReservation],
) -> None:
    """Bulk-insert the entries (fill and fee entries interleaved, as booked one by one), postings and
    obligations; move every touched ledger row's balance once; write the consumed holds and reservations."""
    entries: list[JournalEntry] = []
    for b in booked:
        entries.append(b.entry)
        if b.fee_entry is not None:
            entries.append(b.fee_entry)
    JournalEntry.objects.bulk_create(entries)
    postings: list[Posting] = []
    totals: dict[int, Decimal] = {}
    for b in booked:
        for row, amount in b.legs:
            postings.append(Posting(entry=b.entry, ledger_account=row, asset=row.asset, amount=amount))
            totals[row.pk] = totals.get(row.pk, ZERO) + amount
    Posting.objects.bulk_create(postings)
    SettlementObligation.objects.bulk_create([o for b in booked for o in b.obligations])
    moves = sorted((pk, amount) for pk, amount in totals.items() if amount != 0)
    if moves:
        by_pk = {r.pk: r for r in rows.values()}
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE settlement_ledgeraccount AS l SET balance = l.balance + u.d, updated_at = now() "
                "FROM unnest(%s::bigint[], %s::numeric[]) AS u(id, d) WHERE l.id = u.id "
                "RETURNING l.id, l.balance",
                [[pk for pk, _ in moves], [amount for _, amount in moves]],
            )
            for pk, bal in cursor.fetchall():
                by_pk[pk].balance = bal
    now = timezone.now()
    for h in holds.values():
        h.updated_at = now
    for res in reservations.values():
        res.updated_at = now
    if holds:
        CashHold.objects.bulk_update(
            [holds[pk] for pk in sorted(holds)], ["remaining", "unsettled_remaining", "updated_at"]
        )
    if reservations:
        ShareReservation.objects.bulk_update(
            [reservations[pk] for pk in sorted(reservations)], ["remaining", "updated_at"]
        )
