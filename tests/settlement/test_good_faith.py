"""Good-faith violations on cash accounts, with dates: buying with unsettled proceeds and selling before they
settle is a violation; the configured rule (default 3 in 12 months) restricts the account to settled cash."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core.errors import InsufficientFunds
from apps.settlement import selectors, services
from apps.settlement.models import CashAccountRestriction, CashHold, GoodFaithRule, GoodFaithViolation
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = pytest.mark.django_db


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 16, 0, tzinfo=UTC)  # 11:00 or 12:00 in New York


def _trade(account: BrokerageAccount, side: str, symbol: str, day: date, qty: str = "10") -> None:
    services.fill_settle_trade_date(
        fill=fill(
            account.pk,
            order_id=f"o-{uuid.uuid4()}",
            side=side,
            qty=qty,
            price="10",
            at=_at(day),
            symbol=symbol,
        )
    )


def _cash_account_holding_s(start: date) -> BrokerageAccount:
    """$100 deposited and spent on 10 S at $10 (settled): no settled cash left, so buys use sale proceeds."""
    account = account_create()
    services.cash_deposit_post(account=account, amount=Decimal("100"), transfer_id=f"d-{account.pk}")
    _trade(account, "buy", "S", start)
    services.settlement_run(as_of=start + timedelta(days=7))
    return account


def _violation_round(account: BrokerageAccount, day: date) -> None:
    """Sell S; buy T with the unsettled proceeds; sell T the same day (the violation); buy S back."""
    _trade(account, "sell", "S", day)
    _trade(account, "buy", "T", day)
    _trade(account, "sell", "T", day)
    _trade(account, "buy", "S", day)
    services.settlement_run(as_of=day + timedelta(days=7))


def test_selling_before_the_funding_proceeds_settle_is_a_violation_and_after_is_not() -> None:
    account = _cash_account_holding_s(date(2026, 10, 1))
    mon, tue = date(2026, 11, 2), date(2026, 11, 3)
    _trade(account, "sell", "S", mon)  # proceeds settle Tue 11-03
    _trade(account, "buy", "T", mon, qty="5")  # paid with unsettled proceeds
    _trade(account, "buy", "U", mon, qty="5")  # paid with unsettled proceeds
    _trade(account, "sell", "T", mon, qty="5")  # Monday: before the proceeds settle -> violation
    _trade(account, "sell", "U", tue, qty="5")  # Tuesday: the proceeds settled -> a good-faith sale
    gfvs = selectors.good_faith_violations(account)
    assert [(g.symbol, g.trade_date, g.funds_settle_date, g.unsettled_funded) for g in gfvs] == [
        ("T", mon, tue, Decimal("50.0000"))
    ]
    assert CashAccountRestriction.objects.count() == 0  # one violation: no consequence yet


def test_settled_cash_buys_and_margin_accounts_are_never_violations() -> None:
    settled = account_create()
    services.cash_deposit_post(account=settled, amount=Decimal("100"), transfer_id="d1")
    day = date(2026, 11, 2)
    _trade(settled, "buy", "T", day)  # paid with settled cash
    _trade(settled, "sell", "T", day)
    margin = _cash_account_holding_s(date(2026, 10, 1))
    margin.account_type = BrokerageAccount.AccountType.MARGIN
    margin.save(update_fields=["account_type"])
    _violation_round(margin, day)
    assert GoodFaithViolation.objects.count() == 0


@pytest.mark.parametrize(
    ("days", "restricted"),
    [
        pytest.param(
            [date(2026, 1, 5), date(2026, 5, 4), date(2026, 11, 2)],
            (date(2026, 11, 2), date(2027, 1, 31)),
            id="three-in-12-months-restricts-90-days",
        ),
        pytest.param(
            [date(2025, 1, 6), date(2026, 5, 4), date(2026, 11, 2)], None, id="oldest-outside-window"
        ),
        pytest.param([date(2026, 5, 4), date(2026, 11, 2)], None, id="two-only"),
    ],
)
def test_standard_rule_three_violations_in_twelve_months(
    days: list[date], restricted: tuple[date, date] | None
) -> None:
    account = _cash_account_holding_s(date(2024, 12, 2))
    for day in days:
        _violation_round(account, day)
    assert [g.trade_date for g in selectors.good_faith_violations(account)] == days
    got = [(r.start_date, r.end_date) for r in CashAccountRestriction.objects.filter(account=account)]
    assert got == ([restricted] if restricted else [])
    if restricted:
        assert selectors.settled_cash_only_restriction(account, on=date(2027, 1, 31)) is not None
        assert selectors.settled_cash_only_restriction(account, on=date(2027, 2, 1)) is None


def test_rule_is_configuration_versioned_by_date() -> None:
    GoodFaithRule.objects.create(
        effective_from=date(2026, 6, 1), max_violations=1, window_months=12, restriction_days=30
    )
    account = _cash_account_holding_s(date(2026, 1, 2))
    _violation_round(account, date(2026, 5, 4))  # before the new rule: default 3 -> nothing
    assert CashAccountRestriction.objects.count() == 0
    _violation_round(account, date(2026, 11, 2))  # 1 is enough now -> 30 days
    restriction = CashAccountRestriction.objects.get(account=account)
    assert (restriction.start_date, restriction.end_date) == (date(2026, 11, 2), date(2026, 12, 2))
    assert restriction.trigger is not None
    assert restriction.trigger.trade_date == date(2026, 11, 2)


def test_restricted_account_buys_with_settled_cash_only() -> None:
    account = _cash_account_holding_s(date(2026, 10, 1))
    today = timezone.now().date()
    _trade(account, "sell", "S", today)  # $100 of unsettled proceeds, no settled cash
    assert selectors.cash_balances(account).buying_power == Decimal("100")
    CashAccountRestriction.objects.create(
        account=account,
        start_date=today - timedelta(days=1),
        end_date=today + timedelta(days=89),
        reason="test",
    )
    assert selectors.cash_balances(account).buying_power == Decimal("0")
    with pytest.raises(InsufficientFunds) as exc:
        services.hold_place(account=account, order_id="restricted-buy", amount=Decimal("50"))
    assert exc.value.rule == "settled_cash_only_restriction"
    assert CashHold.objects.count() == 0
