"""Corporate actions, worked examples with hand-checked numbers: a 3-for-2 split, a 1-for-10 reverse split and a
cash dividend across several holders (holders of record by settlement date, allocation exact to the cent)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from django_otp.plugins.otp_static.models import StaticDevice
from rest_framework.test import APIClient

from apps.accounts.models import BrokerageAccount
from apps.core.errors import BusinessRuleViolation
from apps.core.models import StoredEvent
from apps.orders.models import Asset, Order
from apps.settlement import selectors, services
from apps.settlement.activities import activity_render
from apps.settlement.corporate_actions import corporate_action_apply, corporate_actions_due
from apps.settlement.models import (
    CorporateAction,
    JournalEntry,
    LedgerAccount,
    LotSelection,
    Posting,
    RealizedGain,
    ShareReservation,
    TaxLot,
)
from tests.settlement.factories import UserFactory, account_create, order_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db

D = Decimal
MON = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00 New York; settles Tue 11-24
TUE = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # settles Wed 11-25
WED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # settles Fri 11-27 (Thanksgiving Thursday is a holiday)


def _holder(cash: str = "1000", account_id: str | None = None) -> BrokerageAccount:
    kwargs = {"id": uuid.UUID(account_id)} if account_id else {}
    account = account_create(**kwargs)
    services.cash_deposit_post(account=account, amount=D(cash), transfer_id=f"dep-{account.pk}")
    return account


def _buy(account: BrokerageAccount, qty: str, price: str, at: datetime, symbol: str = "AAPL") -> None:
    services.fill_settle_trade_date(
        fill=fill(
            account.pk, order_id=f"o-{uuid.uuid4()}", side="buy", qty=qty, price=price, at=at, symbol=symbol
        )
    )


def _lots(account: BrokerageAccount) -> list[tuple[Decimal, Decimal, Decimal]]:
    return [
        (lot.qty, lot.remaining, lot.remaining_cost)
        for lot in TaxLot.objects.filter(account=account).order_by("acquired_date", "id")
    ]


def _split(num: int, den: int, price: str, symbol: str = "AAPL") -> CorporateAction:
    return CorporateAction.objects.create(
        kind="split",
        symbol=symbol,
        effective_date=date(2026, 11, 25),
        ratio_num=num,
        ratio_den=den,
        cash_in_lieu_price=D(price),
    )


def test_three_for_two_split_with_cash_in_lieu_lots_and_open_orders() -> None:
    a, b = _holder(), _holder()
    _buy(a, "7", "60", MON)  # lot 7 sh, cost 420.00
    _buy(b, "3", "50", MON)  # lot 3 sh, cost 150.00
    _buy(b, "2", "55", TUE)  # lot 2 sh, cost 110.00
    services.settlement_run(as_of=date(2026, 11, 25))
    buy = order_create(a, side="buy", qty="4", limit_price="61.00", reserved_amount=D("244"))
    services.hold_place(account=a, order_id=str(buy.id), amount=D("244"))
    sell = order_create(a, side="sell", qty="3", limit_price="65.00", reserved_qty=D("3"))
    services.shares_reserve(account=a, order_id=str(sell.id), symbol="AAPL", qty=D("3"))
    (lot_a,) = TaxLot.objects.filter(account=a)
    chosen = services.LotChoice(lot_id=lot_a.pk, qty=D("3"))
    services.lot_selection_set(account=a, order_id=str(sell.id), choices=[chosen])
    action = _split(3, 2, "41.50")

    entries = corporate_action_apply(action_id=action.pk)

    # A: 7 x 3/2 = 10.5 -> 10 shares + 0.5 x 41.50 = 20.75 cash in lieu.
    # B: 5 x 3/2 = 7.5 -> 7 shares + 20.75; lots 4.5 (150.00) and 3 (110.00); the 0.5 leaves the newest lot.
    assert [
        (e.entry_type, e.account_id, e.details["qty"], e.details["net_amount"]) for e in entries
    ] == sorted([("SPLIT", a.pk, "3", "20.75"), ("SPLIT", b.pk, "2", "20.75")], key=lambda t: str(t[1]))
    pos_a, pos_b = selectors.position(a, "AAPL"), selectors.position(b, "AAPL")
    assert pos_a is not None
    assert pos_b is not None
    assert (pos_a.qty, pos_a.cost_basis, pos_a.avg_entry_price) == (D(10), D("400.0000"), D("40.0000"))
    assert (pos_b.qty, pos_b.cost_basis) == (D(7), D("241.6667"))  # 150 + 110 - 110 x 0.5/3 (18.3333)
    assert _lots(a) == [(D("10.5"), D(10), D("400.0000"))]
    assert _lots(b) == [(D("4.5"), D("4.5"), D("150.0000")), (D(3), D("2.5"), D("91.6667"))]
    gains = {
        g.lot.account_id: (g.qty, g.proceeds, g.cost_basis, g.gain, g.term, g.relief_method)
        for g in RealizedGain.objects.all()
    }
    assert gains == {  # cash in lieu leaves the newest lots: labelled LIFO, held a week: short term
        a.pk: (D("0.5"), D("20.7500"), D("20.0000"), D("0.7500"), "short", "LIFO"),  # 420 x 0.5/10.5 = 20.00
        b.pk: (D("0.5"), D("20.7500"), D("18.3333"), D("2.4167"), "short", "LIFO"),
    }
    # The customer's chosen lot for the open sell follows the split: 3 chosen shares are now 4.5.
    assert LotSelection.objects.values_list("qty", "remaining").get() == (D("4.5"), D("4.5"))
    # A's cash: 1000 - 420 = 580 settled, 244 of it held for the buy; + 20.75 in lieu.
    cash_a = selectors.cash_balances(a)
    assert (cash_a.settled, cash_a.held) == (D("356.75"), D("244"))
    assert selectors.cash_balances(b).settled == D("1000") - D("150") - D("110") + D("20.75")
    # Open orders on new terms: buy 4 @ 61 -> 6 @ 40.66 (down), sell 3 @ 65 -> 4 (4.5 rounded down) @ 43.34 (up).
    buy.refresh_from_db()
    sell.refresh_from_db()
    assert (buy.qty, buy.limit_price, sell.qty, sell.limit_price, sell.reserved_qty) == (
        D(6),
        D("40.66"),
        D(4),
        D("43.34"),
        D(4),
    )
    assert ShareReservation.objects.get(order_id=str(sell.id)).remaining == D(4)
    assert Asset.objects.get(symbol="AAPL").reference_price == D("40.00")
    # The house side is the issuer's new shares (3 + 2 = 5 whole ones out) and the cash paid in lieu (2 x 20.75).
    house = {(la.kind, la.asset): la.balance for la in LedgerAccount.objects.filter(account=None)}
    assert (house[("house", "AAPL")], house[("house", "USD")]) == (D(-5), D("-41.50"))

    # Idempotent by corporate-action id: applying again books nothing.
    postings = Posting.objects.count()
    assert [e.pk for e in corporate_action_apply(action_id=action.pk)] == [e.pk for e in entries]
    assert Posting.objects.count() == postings
    assert (buy.qty, Order.objects.get(pk=buy.pk).qty) == (D(6), D(6))


def test_one_for_ten_reverse_split_cashes_out_fractions_and_cancels_dust_orders() -> None:
    a, c = _holder(), _holder()
    _buy(a, "25", "2", MON)  # cost 50.00
    _buy(c, "3", "2", MON)  # cost 6.00
    services.settlement_run(as_of=date(2026, 11, 24))
    dust = order_create(a, side="buy", qty="5", limit_price="2.05", reserved_amount=D("10.25"))
    services.hold_place(account=a, order_id=str(dust.id), amount=D("10.25"))
    action = _split(1, 10, "21.00")

    entries = corporate_action_apply(action_id=action.pk)

    # A: 25 / 10 = 2.5 -> 2 shares + 0.5 x 21.00 = 10.50; cost of the half share 50 x 0.5/2.5 = 10.00.
    # C: 3 / 10 = 0.3 -> 0 shares + 0.3 x 21.00 = 6.30; the whole lot (6.00) is sold.
    by_account = {
        e.account_id: (e.details["old_qty"], e.details["new_qty"], e.details["net_amount"]) for e in entries
    }
    assert by_account == {a.pk: ("25", "2", "10.50"), c.pk: ("3", "0", "6.30")}
    pos_a = selectors.position(a, "AAPL")
    assert pos_a is not None
    assert (pos_a.qty, pos_a.cost_basis, pos_a.avg_entry_price) == (
        D(2),
        D("40.0000"),
        D("20.0000"),
    )
    assert selectors.position(c, "AAPL") is None
    assert _lots(c) == [(D("0.3"), D(0), D("0.0000"))]
    assert sorted((g.proceeds, g.gain) for g in RealizedGain.objects.all()) == [
        (D("6.3000"), D("0.3000")),
        (D("10.5000"), D("0.5000")),
    ]
    assert selectors.cash_balances(c).settled == D("1000") - D("6") + D("6.30")
    # 5 shares / 10 = 0.5 -> rounds to zero whole shares: the order is canceled through the engine.
    dust.refresh_from_db()
    assert dust.status == "pending_cancel"
    assert (
        StoredEvent.objects.filter(event_type="orders.CancelRequested", aggregate_id=str(dust.id)).count()
        == 1
    )


def test_split_is_refused_while_trades_are_unsettled() -> None:
    a = _holder()
    _buy(a, "10", "5", WED)  # settles Fri 11-27
    action = _split(2, 1, "2.50")
    with pytest.raises(BusinessRuleViolation) as exc:
        corporate_action_apply(action_id=action.pk)
    assert exc.value.rule == "split_after_settlement"
    action.refresh_from_db()
    assert action.applied_at is None
    assert JournalEntry.objects.filter(entry_type="SPLIT").count() == 0


def test_dividend_pays_holders_of_record_on_pay_date_exact_to_the_cent() -> None:
    a = _holder(account_id="00000000-0000-0000-0000-00000000000a")
    b = _holder(account_id="00000000-0000-0000-0000-00000000000b")
    c = _holder(account_id="00000000-0000-0000-0000-00000000000c")
    d = _holder(account_id="00000000-0000-0000-0000-00000000000d")
    e = _holder(account_id="00000000-0000-0000-0000-00000000000e")
    f = _holder(account_id="00000000-0000-0000-0000-00000000000f")
    _buy(a, "10", "20", MON)
    for half in (b, c, d):
        _buy(half, "0.5", "20", MON)
    _buy(f, "3", "20", MON)
    # On the record date E buys (settles Fri: not a holder of record) and F sells (delivers Fri: still one).
    _buy(e, "5", "20", WED)
    services.fill_settle_trade_date(
        fill=fill(f.pk, order_id="f-sell", side="sell", qty="3", price="21", at=WED, symbol="AAPL")
    )
    services.settlement_run(as_of=date(2026, 11, 27))
    action = CorporateAction.objects.create(
        kind="dividend",
        symbol="AAPL",
        effective_date=date(2026, 11, 25),
        cash_per_share=D("0.0333"),
        record_date=date(2026, 11, 25),
        pay_date=date(2026, 11, 30),
    )

    with pytest.raises(BusinessRuleViolation) as exc:
        corporate_action_apply(action_id=action.pk, as_of=date(2026, 11, 27))
    assert exc.value.rule == "dividend_on_pay_date"
    assert corporate_actions_due(as_of=date(2026, 11, 27)) == 0

    assert corporate_actions_due(as_of=date(2026, 11, 30)) == 1
    # Record-date shares: A 10, B/C/D 0.5 each, F 3 = 14.5 x 0.0333 = 0.48285 -> the house receives 0.48.
    # Largest remainder over 48 cents: A 33.10, B/C/D 1.655, F 9.93 -> floors 33+1+1+1+9 = 45; the 3 left go to
    # F (.93), B and C (.655, earlier ids first); D's identical .655 gets none.
    entries = list(JournalEntry.objects.filter(entry_type="DIV").order_by("account_id"))
    assert [(x.account_id, x.details["qty"], x.details["net_amount"]) for x in entries] == [
        (a.pk, "10", "0.33"),
        (b.pk, "0.5", "0.02"),
        (c.pk, "0.5", "0.02"),
        (d.pk, "0.5", "0.01"),
        (f.pk, "3", "0.10"),
    ]
    assert all(x.effective_date == date(2026, 11, 30) for x in entries)
    assert sum((D(x.details["net_amount"]) for x in entries), D(0)) == D("0.48")
    assert selectors.cash_balances(e).settled == D("1000") - D("100")  # no dividend for E
    assert activity_render(entries[0]) | {"id": "-", "created_at": "-"} == {
        "id": "-",
        "activity_type": "DIV",
        "date": "2026-11-30",
        "created_at": "-",
        "net_amount": "0.33",
        "description": "cash dividend AAPL 0.0333/share on 10",
        "status": "executed",
        "currency": "USD",
        "symbol": "AAPL",
        "qty": "10",
        "per_share_amount": "0.0333",
    }
    # Paid once: neither the task nor a direct apply books it again.
    assert corporate_actions_due(as_of=date(2026, 12, 1)) == 0
    assert len(corporate_action_apply(action_id=action.pk)) == 5
    assert JournalEntry.objects.filter(entry_type="DIV").count() == 5

    client = APIClient()
    client.force_authenticate(user=a.owner)
    body = client.get("/v2/account/activities?activity_types=DIV,SPLIT").json()
    assert [(x["activity_type"], x["net_amount"]) for x in body] == [("DIV", "0.33")]


def test_operations_apply_a_dividend_from_the_admin_once(client: Any) -> None:
    holder = _holder()
    _buy(holder, "4", "20", MON)
    services.settlement_run(as_of=date(2026, 11, 24))
    action = CorporateAction.objects.create(
        kind="dividend",
        symbol="AAPL",
        effective_date=date(2026, 11, 24),
        cash_per_share=D("0.25"),
        record_date=date(2026, 11, 24),
        pay_date=date(2026, 11, 24),
    )
    ops = UserFactory.create(is_staff=True, is_superuser=True)
    client.force_login(ops)
    device = StaticDevice.objects.create(
        user=ops, name="backup"
    )  # the admin requires a verified second factor
    session = client.session
    session["otp_device_id"] = device.persistent_id
    session.save()
    for _ in range(2):
        resp = client.post(
            "/admin/settlement/corporateaction/", {"action": "apply", "_selected_action": [action.pk]}
        )
        assert resp.status_code == 302
    action.refresh_from_db()
    assert action.applied_at is not None
    assert [
        (e.account_id, e.details["net_amount"]) for e in JournalEntry.objects.filter(entry_type="DIV")
    ] == [
        (holder.pk, "1.00")  # 4 x 0.25
    ]


@pytest.mark.parametrize(("num", "den"), [(1001, 1), (1, 1001)])
def test_split_terms_beyond_the_engines_domain_are_refused_by_the_form_and_the_database(
    num: int, den: int
) -> None:
    # The split's SplitApply carries the terms; the engine process would dead-letter terms outside its domain
    # (engine.commands.SPLIT_TERM_MAX) while the orders' rows were already adjusted.
    from django.core.exceptions import ValidationError as ModelValidationError
    from django.db import IntegrityError, transaction

    action = CorporateAction(
        kind="split",
        symbol="AAPL",
        effective_date=date(2026, 11, 25),
        ratio_num=num,
        ratio_den=den,
        cash_in_lieu_price=D("10"),
    )
    with pytest.raises(ModelValidationError, match="1000"):
        action.full_clean()
    with pytest.raises(IntegrityError, match="settlement_corporateaction_terms"), transaction.atomic():
        action.save()
    assert _split(1000, 1, "10").pk
    assert _split(1, 1000, "10", symbol="MSFT").pk


def test_a_split_that_would_take_a_holding_beyond_the_share_range_is_refused_and_changes_nothing() -> None:
    # Share amounts hold 15 integer digits: 1e12 shares stay inside through a 999-for-1 split, not a 1000-for-1.
    a = _holder()
    services.shares_deposit_post(
        account=a, symbol="AAPL", qty=D(10) ** 12, cost_basis=D("1.00"), transfer_id="acats-in-huge"
    )
    refused = _split(1000, 1, "1")
    with pytest.raises(BusinessRuleViolation) as exc:
        corporate_action_apply(action_id=refused.pk)
    assert (exc.value.error, exc.value.rule) == ("split_beyond_share_range", "split_within_share_range")
    refused.refresh_from_db()
    assert refused.applied_at is None
    assert JournalEntry.objects.filter(entry_type="SPLIT").count() == 0
    assert _held(a) == D(10) ** 12
    applied = _split(999, 1, "1")
    corporate_action_apply(action_id=applied.pk)
    assert _held(a) == 999 * D(10) ** 12


def _held(account: BrokerageAccount) -> Decimal:
    view = selectors.position(account, "AAPL")
    assert view is not None
    return view.qty


def test_a_dividend_beyond_what_the_ledger_holds_is_refused_and_the_daily_task_pays_the_others() -> None:
    a = _holder()
    services.shares_deposit_post(
        account=a, symbol="AAPL", qty=D(10) ** 9, cost_basis=D("1.00"), transfer_id="in-1"
    )
    services.shares_deposit_post(
        account=a, symbol="MSFT", qty=D(10), cost_basis=D("1.00"), transfer_id="in-2"
    )
    day = date(2026, 11, 30)

    def dividend(symbol: str, per_share: str) -> CorporateAction:
        return CorporateAction.objects.create(
            kind="dividend", symbol=symbol, effective_date=day, cash_per_share=D(per_share), record_date=day,
            pay_date=day,
        )  # fmt: skip

    # 1e9 shares x $1e6 = $1e15: a cash amount the ledger's columns cannot hold (a typo in the admin, say).
    refused = dividend("AAPL", "1000000")
    paid = dividend("MSFT", "0.25")
    with pytest.raises(BusinessRuleViolation) as exc:
        corporate_action_apply(action_id=refused.pk, as_of=day)
    assert (exc.value.error, exc.value.rule) == (
        "dividend_beyond_amount_range",
        "dividend_within_amount_range",
    )
    # The daily task pays the other one and leaves the refused one unapplied (logged), day after day.
    assert corporate_actions_due(as_of=day) == 1
    assert corporate_actions_due(as_of=day) == 0
    refused.refresh_from_db()
    paid.refresh_from_db()
    assert (refused.applied_at is None, paid.applied_at is not None) == (True, True)
    assert [x.details["net_amount"] for x in JournalEntry.objects.filter(entry_type="DIV")] == ["2.50"]
    assert selectors.cash_balances(a).settled == D("1002.50")
