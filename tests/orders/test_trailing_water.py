"""``OrderTriggered.water_e4`` → the projection's ``hwm``: exact for ``trail_percent`` stops too (issue 3)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from apps.accounts.models import BrokerageAccount
from apps.orders.models import TradeUpdate
from tests.orders.test_projection import Harness, account, clock, mm, submit  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("trail", "stop"),
    [
        pytest.param(
            {"trail_percent": Decimal("2")}, Decimal("99.96"), id="trail-percent-98x1.02-rounded-up"
        ),
        pytest.param({"trail_price": Decimal("1.5")}, Decimal("99.5"), id="trail-price-98+1.5"),
    ],
)
def test_buy_trailing_stop_trigger_carries_the_exact_low_water_mark(
    account: BrokerageAccount,  # noqa: F811
    trail: dict[str, Decimal],
    stop: Decimal,
) -> None:
    h = Harness()
    order = submit(account, type="trailing_stop", qty=Decimal("1"), **trail)
    h.pump()
    h.inject(mm("sell", "1", "98", "mm-a1", "trader-a"))
    h.inject(mm("buy", "1", "98", "mm-b1", "trader-b"))  # prints 98: the low water mark
    h.inject(mm("sell", "2", "100", "mm-a2", "trader-a"))
    out = h.inject(mm("buy", "1", "100", "mm-b2", "trader-b"))  # prints 100 >= stop: triggers
    (triggered,) = [e.payload for e in out if e.event_type == "engine.OrderTriggered"]
    assert (triggered["water"], triggered["water_e4"], triggered["stop_price"]) == ("98", 98_0000, str(stop))
    order.refresh_from_db()
    assert (order.status, order.hwm, order.stop_price) == ("filled", Decimal("98"), stop)
    fill = TradeUpdate.objects.get(order=order, event="fill")
    assert (fill.data["order"]["hwm"], fill.data["order"]["stop_price"]) == ("98", str(stop))


def test_plain_stop_trigger_has_no_water_mark(account: BrokerageAccount) -> None:  # noqa: F811
    h = Harness()
    order = submit(account, type="stop", qty=Decimal("1"), stop_price=Decimal("99"))
    h.pump()
    h.inject(mm("sell", "2", "99", "mm-a1", "trader-a"))
    out = h.inject(mm("buy", "1", "99", "mm-b1", "trader-b"))
    (triggered,) = [e.payload for e in out if e.event_type == "engine.OrderTriggered"]
    assert (triggered["water"], triggered["water_e4"]) == (None, 0)
    order.refresh_from_db()
    assert (order.status, order.hwm) == ("filled", None)
