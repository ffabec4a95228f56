"""Fill-or-kill against Alpaca's contract: an FOK that cannot fill completely ends ``canceled``, not ``rejected``.

Alpaca (trading API spec, ``TimeInForce``): "A Fill or Kill (FOK) order is only executed if the entire order
quantity can be filled, otherwise the order is canceled." Ours: the engine cancels it (``fok_unfilled``)
without touching the book; the projection makes it ``canceled`` and releases its hold exactly.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.accounts.models import BrokerageAccount
from apps.orders.models import Fill, TradeUpdate
from apps.settlement import selectors as settlement_selectors
from tests.orders.test_projection import Harness, account, clock, mm_sell, submit  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "kw",
    [
        pytest.param({"type": "limit", "limit_price": Decimal("100")}, id="limit"),
        pytest.param({"type": "market"}, id="market"),
    ],
)
def test_fok_that_cannot_fill_completely_is_canceled_and_changes_nothing(
    account: BrokerageAccount,  # noqa: F811
    kw: dict[str, object],
) -> None:
    h = Harness()
    h.inject(mm_sell("4", "99.5", "mm-1"))
    cash_before = settlement_selectors.cash_balances(account)
    order = submit(account, qty=Decimal("10"), time_in_force="fok", **kw)
    out = h.pump()
    order.refresh_from_db()
    assert (order.status, order.cancel_reason, order.reject_reason, order.filled_qty) == (
        "canceled",
        "fok_unfilled",
        "",
        Decimal("0"),
    )
    assert order.canceled_at is not None
    assert order.failed_at is None
    assert [e.event_type for e in out] == ["engine.OrderAccepted", "engine.OrderCanceled"]
    assert list(TradeUpdate.objects.filter(order=order).order_by("seq").values_list("event", flat=True)) == [
        "new",
        "canceled",
    ]
    assert Fill.objects.count() == 0
    cash = settlement_selectors.cash_balances(account)
    assert (cash.held, cash.buying_power) == (cash_before.held, cash_before.buying_power)
    book = h.engine.book("AAPL")
    assert book is not None
    assert book.depth(False) == [(99_5000, 4_000_000_000, 1)]  # the liquidity it looked at is untouched


def test_fok_that_can_fill_completely_fills(account: BrokerageAccount) -> None:  # noqa: F811
    h = Harness()
    h.inject(mm_sell("4", "99.5", "mm-1"))
    h.inject(mm_sell("6", "100", "mm-2"))
    order = submit(account, qty=Decimal("10"), time_in_force="fok", limit_price=Decimal("100"))
    h.pump()
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.filled_avg_price) == (
        "filled",
        Decimal("10"),
        Decimal("99.8"),
    )
