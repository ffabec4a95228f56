"""Property test: random deposits, holds, releases, fills, withdrawals and settlements keep the books sound.

After every operation: every entry balances, the trial balance is zero, cached == derived balances, no customer
cash bucket is negative, and cash/shares equal an independent model of what should be there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
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


# --------------------------------------------------------------------------------------------------------------
# Tax lots: for any relief method (and any lot selection), sells relieve exactly what was sold, no lot goes
# negative, and remaining cost + relieved cost = total bought cost.

METHODS = st.sampled_from(["FIFO", "LIFO", "HIFO", "SPEC_ID"])
open_lots = st.lists(
    st.tuples(st.integers(0, 400), st.integers(1, 5_000), st.integers(1, 2_000_000)),
    min_size=0,
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(
    open_lots,
    METHODS,
    st.integers(0, 40_000),
    st.lists(st.tuples(st.integers(0, 7), st.integers(1, 5_000)), max_size=5),
)
def test_relief_plan_relieves_exactly_the_sold_qty_and_never_overdraws_a_lot(
    raw_lots: list[tuple[int, int, int]],
    method: str,
    qty_units: int,
    raw_selected: list[tuple[int, int]],
) -> None:
    from apps.settlement import lots

    open_ = [
        lots.OpenLot(i + 1, date(2024, 1, 1) + timedelta(days=d), Decimal(q) / 1000, Decimal(c) / 100)
        for i, (d, q, c) in enumerate(raw_lots)
    ]
    selected = [
        lots.Selected(j + 1, open_[i % len(open_)].lot_id, Decimal(q) / 1000)
        for j, (i, q) in enumerate(raw_selected)
        if open_
    ]
    qty = Decimal(qty_units) / 1000
    plan = lots.relief_plan(lots=open_, qty=qty, method=method, selected=selected)
    total_open = sum((lot.remaining for lot in open_), Decimal(0))
    assert sum((p.qty for p in plan), Decimal(0)) == min(qty, total_open)
    assert all(p.qty > 0 for p in plan)
    by_lot: dict[int, Decimal] = {}
    for p in plan:
        by_lot[p.lot_id] = by_lot.get(p.lot_id, Decimal(0)) + p.qty
    assert all(by_lot[lot.lot_id] <= lot.remaining for lot in open_ if lot.lot_id in by_lot)
    by_sel = {s.selection_id: s for s in selected}
    assert all(p.qty <= by_sel[p.selection_id].remaining for p in plan if p.selection_id is not None)
    spec = [p.method == "SPEC_ID" for p in plan]
    assert spec == sorted(spec, reverse=True)  # selected parts come first
    assert {p.method for p in plan if p.selection_id is None} <= {"FIFO" if method == "SPEC_ID" else method}


lot_ops = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), st.integers(1, 3_000), st.integers(100, 50_000)),
        st.tuples(
            st.just("sell"),
            st.integers(1, 100),  # percent of the position
            st.integers(100, 50_000),
            st.lists(st.tuples(st.integers(0, 20), st.integers(1, 100)), max_size=3),  # (lot index, percent)
            st.integers(1, 3),  # partial fills
        ),
        st.tuples(st.just("next_day"), st.integers(1, 200)),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(METHODS, lot_ops)
def test_lots_conserve_qty_and_cost_for_any_method(method: str, operations: list[tuple[object, ...]]) -> None:
    from apps.settlement.models import FeeRule, RealizedGain, TaxLot
    from apps.settlement.reconciliation import reconciliation_run

    # A per-share commission with a minimum makes costs and proceeds round (half-even, cent fees).
    FeeRule.objects.get_or_create(
        code="commission",
        effective_from=date(2000, 1, 1),
        defaults={"per_share": Decimal("0.0035"), "min_fee": Decimal("0.35")},
    )
    account = account_create()
    services.cost_basis_method_set(account=account, method=method)
    services.cash_deposit_post(account=account, amount=Decimal("100000000"), transfer_id=f"d{next(_ids)}")
    day = date(2024, 1, 2)
    bought_cost = Decimal(0)
    held = Decimal(0)
    for op in operations:
        at = datetime.combine(day, time(15, 0), tzinfo=UTC)
        if op[0] == "buy":
            qty_units, price_units = op[1], op[2]
            assert isinstance(qty_units, int)
            assert isinstance(price_units, int)
            qty, price = Decimal(qty_units) / 1000, Decimal(price_units) / 100
            entry = services.fill_settle_trade_date(
                fill=_fill(account.pk, f"b{next(_ids)}", "buy", qty, price, at)
            )
            bought_cost += TaxLot.objects.get(source_entry=entry).cost_basis
            held += qty
        elif op[0] == "sell" and held > 0:
            pct, price_cents, picks, parts = op[1], op[2], op[3], op[4]
            assert isinstance(pct, int)
            assert isinstance(price_cents, int)
            assert isinstance(picks, list)
            assert isinstance(parts, int)
            qty = max((held * pct / 100).quantize(Decimal("0.001"), rounding="ROUND_DOWN"), Decimal("0.001"))
            order_id = f"s{next(_ids)}"
            services.shares_reserve(account=account, order_id=order_id, symbol="XYZ", qty=qty)
            open_ = list(TaxLot.objects.filter(account=account, remaining__gt=0).order_by("pk"))
            choices: dict[int, Decimal] = {}
            budget = qty
            for idx, lot_pct in picks:
                lot = open_[idx % len(open_)]
                if lot.pk in choices:
                    continue
                want = min(
                    (lot.remaining * lot_pct / 100).quantize(Decimal("0.001"), rounding="ROUND_DOWN"), budget
                )
                if want > 0:
                    choices[lot.pk] = want
                    budget -= want
            services.lot_selection_set(
                account=account,
                order_id=order_id,
                choices=[services.LotChoice(lot_id=k, qty=v) for k, v in choices.items()],
            )
            sizes = [(qty / parts).quantize(Decimal("0.001"), rounding="ROUND_DOWN")] * (parts - 1)
            sizes = [s for s in sizes if s > 0]
            sizes.append(qty - sum(sizes, Decimal(0)))
            price = Decimal(price_cents) / 100
            for size in sizes:
                entry = services.fill_settle_trade_date(
                    fill=_fill(account.pk, order_id, "sell", size, price, at)
                )
                closed = list(RealizedGain.objects.filter(sell_entry=entry))
                assert sum((g.qty for g in closed), Decimal(0)) == size
                notional = services.fill_notional(size, price)
                fees = sum((Decimal(f) for f in entry.details["fees"].values()), Decimal(0))
                assert sum((g.proceeds for g in closed), Decimal(0)) == notional - fees
                assert all(g.gain == g.proceeds - g.cost_basis for g in closed)
            held -= qty
        elif op[0] == "next_day":
            steps = op[1]
            assert isinstance(steps, int)
            day += timedelta(days=steps)
        lots_now = list(TaxLot.objects.filter(account=account))
        assert all(0 <= lot.remaining <= lot.qty for lot in lots_now)
        assert all(lot.remaining_cost >= 0 for lot in lots_now)
        assert all(lot.remaining_cost == 0 for lot in lots_now if lot.remaining == 0)
        relieved = RealizedGain.objects.filter(lot__account=account)
        assert sum((lot.remaining for lot in lots_now), Decimal(0)) == held
        assert (
            sum((lot.remaining_cost for lot in lots_now), Decimal(0))
            + sum((g.cost_basis for g in relieved), Decimal(0))
            == bought_cost
        )
    breaks = reconciliation_run(job="positions_vs_lots", halt=False).breaks
    assert [b for b in breaks if b["account_id"] == str(account.pk)] == []
    books_assert_sound()
