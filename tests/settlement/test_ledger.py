"""Ledger core: transfers, holds, fills, T+1 settlement, idempotency and the database-level rules."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import BrokerageAccount
from apps.core.copy import copy_insert_values
from apps.core.errors import BusinessRuleViolation, Conflict, InsufficientFunds, ValidationError
from apps.settlement import selectors, services
from apps.settlement.models import (
    CashHold,
    FeeRule,
    JournalEntry,
    LedgerAccount,
    Posting,
    RealizedGain,
    SettlementObligation,
    TaxLot,
)
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

D = Decimal
# Wednesday before Thanksgiving 2026 (Thu 2026-11-26 is an XNYS holiday), 10:00 New York time.
WED_1125 = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
# Friday after Thanksgiving (early close, still a session), 10:00 New York time.
FRI_1127 = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)


def _funded(amount: str = "10000") -> BrokerageAccount:
    account = account_create()
    services.cash_deposit_post(account=account, amount=D(amount), transfer_id=f"dep-{account.pk}")
    return account


def test_deposit_posts_settled_cash_and_is_idempotent_by_transfer_id() -> None:
    account = account_create()
    first = services.cash_deposit_post(account=account, amount=D("2500.25"), transfer_id="T1")
    again = services.cash_deposit_post(account=account, amount=D("2500.25"), transfer_id="T1")
    assert again.pk == first.pk
    assert JournalEntry.objects.filter(source_type="transfer").count() == 1
    assert Posting.objects.filter(entry=first).count() == 2
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.unsettled, bal.held, bal.buying_power, bal.withdrawable, bal.total) == (
        D("2500.25"),
        D(0),
        D(0),
        D("2500.25"),
        D("2500.25"),
        D("2500.25"),
    )


@pytest.mark.parametrize(
    "amount",
    [
        pytest.param(D(0), id="zero"),
        pytest.param(D("-1"), id="negative"),
        pytest.param(D("0.00001"), id="sub-quantum"),
    ],
)
def test_deposit_rejects_bad_amounts(amount: Decimal) -> None:
    account = account_create()
    with pytest.raises(ValidationError):
        services.cash_deposit_post(account=account, amount=amount, transfer_id="bad")
    assert JournalEntry.objects.count() == 0


def test_withdrawal_takes_settled_cash_only() -> None:
    account = _funded("100")
    services.hold_place(account=account, order_id="O1", amount=D("60"))
    with pytest.raises(InsufficientFunds) as exc:
        services.cash_withdrawal_post(account=account, amount=D("40.01"), transfer_id="W1")
    assert exc.value.rule == "withdraw_settled_cash_only"
    assert exc.value.details == {"requested": "40.01", "withdrawable": "40.000000000"}
    assert not JournalEntry.objects.filter(source_id="W1").exists()
    services.cash_withdrawal_post(account=account, amount=D("40"), transfer_id="W1")
    # Replaying the same withdrawal (balance now 0) returns the booked entry instead of failing.
    services.cash_withdrawal_post(account=account, amount=D("40"), transfer_id="W1")
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.held, bal.total) == (D(0), D(60), D(60))


def test_hold_place_refuses_beyond_buying_power_with_details() -> None:
    account = _funded("100")
    with pytest.raises(InsufficientFunds) as exc:
        services.hold_place(account=account, order_id="O1", amount=D("100.0001"))
    assert exc.value.rule == "cash_account_buying_power"
    assert exc.value.details["required"] == "100.0001"
    assert not CashHold.objects.exists()
    assert selectors.cash_balances(account).held == 0


def test_hold_place_is_idempotent_and_conflicts_on_a_different_amount() -> None:
    account = _funded("100")
    with CaptureQueriesContext(connection) as captured:
        services.hold_place(account=account, order_id="O1", amount=D("30"))
    # The hold row, its entry, the postings and the balances: one statement after the ledger rows' lock.
    (written,) = [q["sql"] for q in captured.captured_queries if "settlement_cashhold" in q["sql"]]
    assert "settlement_journalentry" in written
    assert "settlement_posting" in written
    services.hold_place(account=account, order_id="O1", amount=D("30"))
    with pytest.raises(Conflict):
        services.hold_place(account=account, order_id="O1", amount=D("31"))
    assert selectors.cash_balances(account).held == D(30)
    assert JournalEntry.objects.filter(entry_type="HOLD").count() == 1


def test_hold_release_exactly_once() -> None:
    account = _funded("100")
    services.hold_place(account=account, order_id="O1", amount=D("30"))
    assert services.hold_release(order_id="O1", amount=D("10")) == D(10)
    assert services.hold_release(order_id="O1") == D(20)
    assert services.hold_release(order_id="O1") == D(0)
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.held) == (D(100), D(0))
    assert JournalEntry.objects.filter(entry_type="HOLD_RELEASE").count() == 2


def test_worked_example_partial_fills_thanksgiving_and_weekend_settlement() -> None:
    """Hand-checked: deposit 10,000; buy 10 AAPL (limit 100) in two partial fills on Wed 2026-11-25;
    T+1 skips Thanksgiving -> settles Fri 2026-11-27; sell 4 on Fri -> settles Mon 2026-11-30 (weekend)."""
    account = _funded("10000")
    services.hold_place(account=account, order_id="B1", amount=D("1000.00"))
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="B1", side="buy", qty="4", price="99.50", at=WED_1125, fill_id="f1")
    )
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="B1", side="buy", qty="6", price="99.75", at=WED_1125, fill_id="f2")
    )
    # 4 x 99.50 = 398.00; 6 x 99.75 = 598.50; held 1000 - 996.50 = 3.50
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.held, bal.unsettled) == (D("9000"), D("3.50"), D(0))
    assert services.hold_release(order_id="B1") == D("3.50")
    assert selectors.cash_balances(account).settled == D("9003.50")
    pos = selectors.position(account, "AAPL")
    assert pos is not None
    assert (pos.qty, pos.qty_settled, pos.qty_unsettled) == (D(10), D(0), D(10))
    assert (pos.avg_entry_price, pos.cost_basis) == (D("99.65"), D("996.50"))
    due = set(SettlementObligation.objects.values_list("trade_date", "settle_date"))
    assert due == {(date(2026, 11, 25), date(2026, 11, 27))}

    assert services.settlement_run(as_of=date(2026, 11, 26)) == 0  # Thanksgiving: nothing due yet
    services.shares_reserve(account=account, order_id="S1", symbol="AAPL", qty=D(4))
    assert selectors.shares_available(account, "AAPL") == D(6)
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="S1", side="sell", qty="4", price="101.25", at=FRI_1127, fill_id="f3")
    )
    # 4 x 101.25 = 405.00 unsettled proceeds, settling Monday 2026-11-30
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.unsettled, bal.buying_power) == (D("9003.50"), D("405.00"), D("9408.50"))
    assert services.settlement_run(as_of=date(2026, 11, 27)) == 2  # both buys
    assert services.settlement_run(as_of=date(2026, 11, 27)) == 0  # idempotent
    pos = selectors.position(account, "AAPL")
    assert pos is not None
    assert (pos.qty, pos.qty_settled, pos.qty_unsettled, pos.qty_available) == (D(6), D(10), D(-4), D(6))
    assert services.settlement_run(as_of=date(2026, 11, 29)) == 0  # Sunday: the sale is not due
    assert services.settlement_run(as_of=date(2026, 11, 30)) == 1
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.unsettled, bal.held, bal.total) == (D("9408.50"), D(0), D(0), D("9408.50"))
    pos = selectors.position(account, "AAPL")
    assert pos is not None
    assert (pos.qty, pos.qty_settled, pos.qty_unsettled) == (D(6), D(6), D(0))
    # FIFO: the 4 sold come from the 99.50 lot: proceeds 405.00 - cost 398.00 = 7.00 short-term gain
    gains = list(RealizedGain.objects.values_list("qty", "proceeds", "cost_basis", "gain", "term"))
    assert gains == [(D(4), D("405.00"), D("398.00"), D("7.00"), "short")]
    assert (pos.avg_entry_price, pos.cost_basis) == (D("99.75"), D("598.50"))
    assert TaxLot.objects.filter(remaining=0).count() == 1


def test_replaying_a_fill_changes_nothing() -> None:
    account = _funded("1000")
    services.hold_place(account=account, order_id="B1", amount=D("500"))
    f = fill(account.pk, order_id="B1", side="buy", qty="2", price="100", at=WED_1125, fill_id="dup")
    first = services.fill_settle_trade_date(fill=f)
    counts = (JournalEntry.objects.count(), Posting.objects.count(), SettlementObligation.objects.count())
    again = services.fill_settle_trade_date(fill=f)
    assert again.pk == first.pk
    assert (
        JournalEntry.objects.count(),
        Posting.objects.count(),
        SettlementObligation.objects.count(),
    ) == counts
    assert CashHold.objects.get(order_id="B1").remaining == D(300)
    assert TaxLot.objects.count() == 1


def test_buying_with_unsettled_proceeds_and_release_back_to_unsettled() -> None:
    account = _funded("0.01")
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="X", side="buy", qty="1", price="0.01", at=WED_1125, fill_id="seed")
    )
    services.settlement_run(as_of=date(2026, 11, 27))
    services.shares_reserve(account=account, order_id="S", symbol="AAPL", qty=D(1))
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="S", side="sell", qty="1", price="50", at=FRI_1127, fill_id="sell")
    )
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.unsettled, bal.buying_power, bal.withdrawable) == (D(0), D(50), D(50), D(0))
    services.hold_place(account=account, order_id="B", amount=D(30))
    assert CashHold.objects.get(order_id="B").unsettled_remaining == D(30)
    assert services.hold_release(order_id="B", amount=D(10)) == D(10)
    bal = selectors.cash_balances(account)
    # The released part was drawn from pending proceeds, so it goes back to unsettled, not withdrawable cash.
    assert (bal.settled, bal.unsettled, bal.held) == (D(0), D(30), D(20))
    assert services.settlement_run(as_of=date(2026, 11, 30)) == 1
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.unsettled, bal.held) == (D(30), D(0), D(20))
    assert services.hold_release(order_id="B") == D(20)
    bal = selectors.cash_balances(account)
    assert (bal.settled, bal.unsettled, bal.held, bal.withdrawable) == (D(50), D(0), D(0), D(50))


def test_no_naked_short_on_reserve() -> None:
    account = _funded("100")
    with pytest.raises(BusinessRuleViolation) as exc:
        services.shares_reserve(account=account, order_id="S1", symbol="AAPL", qty=D(1))
    assert exc.value.error == "insufficient_qty"
    assert selectors.positions(account) == []


@pytest.mark.parametrize(
    ("trade_date", "side", "expected"),
    [
        pytest.param(date(2026, 6, 1), "sell", [("sec_fee", D("0.03"))], id="old-rate-sell"),
        pytest.param(date(2026, 9, 1), "sell", [("sec_fee", D("0.01"))], id="new-rate-sell"),
        pytest.param(date(2026, 12, 1), "sell", [], id="switched-off"),
        pytest.param(date(2026, 9, 1), "buy", [], id="buy-side-untouched"),
        pytest.param(date(2025, 12, 31), "sell", [], id="before-any-rule"),
    ],
)
def test_fee_schedule_versioned_by_effective_date(
    trade_date: date, side: str, expected: list[object]
) -> None:
    FeeRule.objects.create(code="sec_fee", effective_from=date(2026, 1, 1), side="sell", rate=D("0.0000278"))
    FeeRule.objects.create(code="sec_fee", effective_from=date(2026, 8, 1), side="sell", rate=D("0.00000001"))
    FeeRule.objects.create(code="sec_fee", effective_from=date(2026, 11, 1), side="sell", active=False)
    # 1000.00 notional: 0.0278 -> 0.03; 0.00001 -> 0.01 (fees round up to the cent)
    assert services.fees_for(side=side, notional=D("1000.00"), qty=D(10), trade_date=trade_date) == expected


def test_sell_fee_is_deducted_from_proceeds_and_shown_as_fee_activity() -> None:
    FeeRule.objects.create(code="sec_fee", effective_from=date(2026, 1, 1), side="sell", rate=D("0.0000278"))
    account = _funded("1000")
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="B", side="buy", qty="10", price="100", at=WED_1125, fill_id="b")
    )
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="S", side="sell", qty="10", price="100", at=FRI_1127, fill_id="s")
    )
    assert selectors.cash_balances(account).unsettled == D("999.97")
    fee = JournalEntry.objects.get(entry_type="FEE")
    assert fee.details["net_amount"] == "-0.03"
    assert LedgerAccount.objects.get(account=None, kind="fees").balance == D("0.03")


def test_unbalanced_entry_is_refused_by_the_database() -> None:
    account = _funded("10")
    la = LedgerAccount.objects.get(account=account, kind="cash_settled")
    entry = JournalEntry.objects.create(
        source_type="test",
        source_id="bad",
        entry_type="JNLC",
        effective_date=date(2026, 1, 2),
        occurred_at=WED_1125,
    )

    # Checked at the end of the inserting statement (an entry's postings are one statement).
    with (
        pytest.raises(IntegrityError, match=f"journal entry {entry.pk} does not balance: USD sums to 1"),
        transaction.atomic(),
    ):
        Posting.objects.create(entry=entry, ledger_account=la, asset="USD", amount=D("1"))
    assert not Posting.objects.filter(entry=entry).exists()


def test_one_statement_of_many_entries_is_refused_for_one_unbalanced_entry() -> None:
    account = _funded("10")
    settled = LedgerAccount.objects.get(account=account, kind="cash_settled")
    clearing, _ = LedgerAccount.objects.get_or_create(account=None, kind="clearing", asset="USD")
    entries = [
        JournalEntry.objects.create(
            source_type="test",
            source_id=f"many-{i}",
            entry_type="JNLC",
            effective_date=date(2026, 1, 2),
            occurred_at=WED_1125,
        )
        for i in range(3)
    ]
    legs = ("entry_id", "ledger_account_id", "asset", "amount")
    balanced = [
        (e.pk, la.pk, "USD", amount)
        for e in entries
        for la, amount in ((settled, D("-1")), (clearing, D("1")))
    ]
    before = Posting.objects.count()
    with (
        pytest.raises(IntegrityError, match=f"journal entry {entries[1].pk} does not balance"),
        transaction.atomic(),
    ):
        copy_insert_values(Posting, legs, [*balanced, (entries[1].pk, clearing.pk, "USD", D("0.01"))])
    assert Posting.objects.count() == before
    with (
        transaction.atomic()
    ):  # the same statement without the stray posting passes (rolled back: no balances)
        assert copy_insert_values(Posting, legs, balanced) == 6
        transaction.set_rollback(True)


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("UPDATE settlement_posting SET amount = amount * 2", id="update-posting"),
        pytest.param("DELETE FROM settlement_posting", id="delete-posting"),
        pytest.param("UPDATE settlement_journalentry SET description = 'x'", id="update-entry"),
        pytest.param("DELETE FROM settlement_journalentry", id="delete-entry"),
    ],
)
def test_postings_and_entries_are_immutable(sql: str) -> None:
    _funded("10")
    with (
        pytest.raises(IntegrityError, match="immutable"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql)
    assert Posting.objects.count() == 2


def test_negative_settled_cash_is_refused_by_check() -> None:
    account = _funded("10")
    with pytest.raises(IntegrityError, match="cash_nonneg"), transaction.atomic():
        LedgerAccount.objects.filter(account=account, kind="cash_settled").update(balance=D("-0.0001"))


def test_ledger_balance_breaks_finds_an_edited_cached_balance() -> None:
    account = _funded("10")
    LedgerAccount.objects.filter(account=account, kind="cash_settled").update(balance=D("11"))
    breaks = selectors.ledger_balance_breaks()
    assert [(b.kind, b.cached, b.derived) for b in breaks] == [("cash_settled", D(11), D(10))]
    LedgerAccount.objects.filter(account=account, kind="cash_settled").update(balance=D("10"))


def test_ledger_rows_lock_never_trusts_a_cached_id_of_another_row() -> None:
    """The per-process id cache is checked against each locked row's key: a stale id (the rows renumbered)
    costs the id read again, it never hands back another account's row."""
    first, second = _funded("10"), _funded("20")
    key_first = services._cust(first.pk, services.Kind.CASH_SETTLED)
    key_second = services._cust(second.pk, services.Kind.CASH_SETTLED)
    with transaction.atomic():
        rows = services.ledger_rows_lock([key_first, key_second])
    assert (rows[key_first].balance, rows[key_second].balance) == (D("10"), D("20"))
    cache = services._ledger_id_cache
    norm_first, norm_second = services._key_norm(key_first), services._key_norm(key_second)
    assert (cache[norm_first], cache[norm_second]) == (rows[key_first].pk, rows[key_second].pk)

    cache[norm_first], cache[norm_second] = rows[key_second].pk, rows[key_first].pk  # swapped: both stale
    with transaction.atomic():
        again = services.ledger_rows_lock([key_first, key_second])
    assert (again[key_first].account_id, again[key_first].balance) == (first.pk, D("10"))
    assert (again[key_second].account_id, again[key_second].balance) == (second.pk, D("20"))
    assert cache[norm_first] == rows[key_first].pk  # read again and cached right

    cache[norm_first] = -1  # a row that does not exist (any more)
    with transaction.atomic():
        assert services.ledger_rows_lock([key_first])[key_first].pk == rows[key_first].pk
