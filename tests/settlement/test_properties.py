"""Property test: random deposits, holds, releases, fills, withdrawals and settlements keep the books sound.

After every operation: every entry balances, the trial balance is zero, cached == derived balances, no customer
cash bucket is negative, and cash/shares equal an independent model of what should be there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.core.errors import BusinessRuleViolation, InsufficientFunds
from apps.core.markettime import XNYSCalendar
from apps.settlement import selectors, services
from apps.settlement.models import CashHold, ShareReservation
from apps.settlement.types import FillData
from tests.settlement.conftest import books_assert_sound
from tests.settlement.factories import account_create

pytestmark = pytest.mark.django_db

CAL = XNYSCalendar()
TRADING_DAYS = CAL.sessions_between(date(2026, 11, 20), date(2026, 12, 31))
_ids = itertools.count(1)

cents = st.integers(min_value=1, max_value=500_000).map(lambda c: Decimal(c) / 100)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), cents),
        st.tuples(st.just("withdraw"), cents),
        st.tuples(st.just("hold"), cents),
        st.tuples(st.just("release"), st.integers(0, 9), st.booleans()),
        st.tuples(st.just("buy"), st.integers(0, 9), st.integers(1, 100), st.integers(1, 20_000)),
        st.tuples(st.just("sell"), st.integers(1, 100), st.integers(1, 20_000)),
        st.tuples(st.just("next_day"), st.integers(1, 3)),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Model:
    cash: Decimal = Decimal(0)
    shares: Decimal = Decimal(0)
    day: int = 0
    orders: list[str] = field(default_factory=list)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops)
def test_random_ledger_operations_keep_the_books_sound(operations: list[tuple[object, ...]]) -> None:
    account = account_create()
    m = Model()
    for op in operations:
        kind = op[0]
        now = datetime.combine(TRADING_DAYS[m.day].date, time(15, 0), tzinfo=UTC)
        if kind == "deposit":
            amount = op[1]
            assert isinstance(amount, Decimal)
            services.cash_deposit_post(account=account, amount=amount, transfer_id=f"d{next(_ids)}")
            m.cash += amount
        elif kind == "withdraw":
            amount = op[1]
            assert isinstance(amount, Decimal)
            try:
                services.cash_withdrawal_post(account=account, amount=amount, transfer_id=f"w{next(_ids)}")
                m.cash -= amount
            except InsufficientFunds:
                assert amount > selectors.cash_balances(account).withdrawable
        elif kind == "hold":
            amount = op[1]
            assert isinstance(amount, Decimal)
            order_id = f"o{next(_ids)}"
            try:
                services.hold_place(account=account, order_id=order_id, amount=amount)
                m.orders.append(order_id)
            except InsufficientFunds:
                assert amount > selectors.cash_balances(account).buying_power
        elif kind == "release" and m.orders:
            idx, everything = op[1], op[2]
            assert isinstance(idx, int)
            order_id = m.orders[idx % len(m.orders)]
            services.hold_release(order_id=order_id, amount=None if everything else Decimal("0.01"))
        elif kind == "buy" and m.orders:
            idx, qty_units, price_cents = op[1], op[2], op[3]
            assert isinstance(idx, int)
            assert isinstance(qty_units, int)
            assert isinstance(price_cents, int)
            order_id = m.orders[idx % len(m.orders)]
            remaining = CashHold.objects.get(order_id=order_id).remaining
            price = Decimal(price_cents) / 100
            qty = min(
                Decimal(qty_units) / 10, (remaining / price).quantize(Decimal("0.1"), rounding="ROUND_DOWN")
            )
            if qty > 0:
                services.fill_settle_trade_date(fill=_fill(account.pk, order_id, "buy", qty, price, now))
                m.cash -= services.fill_notional(qty, price)
                m.shares += qty
        elif kind == "sell":
            qty_units, price_cents = op[1], op[2]
            assert isinstance(qty_units, int)
            assert isinstance(price_cents, int)
            qty = Decimal(qty_units) / 10
            order_id = f"s{next(_ids)}"
            try:
                services.shares_reserve(account=account, order_id=order_id, symbol="XYZ", qty=qty)
            except BusinessRuleViolation:
                assert qty > selectors.shares_available(account, "XYZ")
                continue
            price = Decimal(price_cents) / 100
            services.fill_settle_trade_date(fill=_fill(account.pk, order_id, "sell", qty, price, now))
            assert ShareReservation.objects.get(order_id=order_id).remaining == 0
            m.cash += services.fill_notional(qty, price)
            m.shares -= qty
        elif kind == "next_day":
            steps = op[1]
            assert isinstance(steps, int)
            m.day = min(m.day + steps, len(TRADING_DAYS) - 1)
            services.settlement_run(as_of=TRADING_DAYS[m.day].date)
        bal = selectors.cash_balances(account)
        assert bal.settled >= 0
        assert bal.held >= 0
        assert bal.unsettled >= 0
        assert bal.total == m.cash
        assert selectors.shares_available(account, "XYZ") == m.shares
        books_assert_sound()


def _fill(
    account_id: object, order_id: str, side: str, qty: Decimal, price: Decimal, at: datetime
) -> FillData:
    return FillData(
        fill_id=f"f{next(_ids)}",
        order_id=order_id,
        account_id=str(account_id),
        symbol="XYZ",
        side="buy" if side == "buy" else "sell",
        qty=qty,
        price=price,
        filled_at=at,
    )
