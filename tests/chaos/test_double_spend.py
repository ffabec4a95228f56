"""Concurrent double spend through the real order API: 50 simultaneous buys, each (or several) spending the
whole balance; exactly the affordable set is accepted, the rest refused, and cash never goes negative."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.core.markettime import FixedClock
from apps.core.markettime_config import market_clock_override
from apps.orders.models import Order
from apps.settlement import selectors
from apps.settlement.models import CashHold
from apps.settlement.services import cash_deposit_post
from tests.orders.factories import asset_create, funded_account

pytestmark = pytest.mark.django_db(transaction=True)

CLIENTS = 50
OPEN_AT = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 New York
BUY = {
    "symbol": "AAPL",
    "qty": "10",
    "side": "buy",
    "type": "limit",
    "time_in_force": "day",
    "limit_price": "100",
}


@pytest.fixture(autouse=True)
def _open_market() -> Iterator[None]:
    market_clock_override(FixedClock(OPEN_AT))
    yield
    market_clock_override(None)


@pytest.mark.parametrize(
    "affordable",
    [pytest.param(1, id="each-order-spends-everything"), pytest.param(3, id="three-of-fifty-fit")],
)
def test_fifty_simultaneous_orders_accept_exactly_the_affordable_set(affordable: int) -> None:
    asset_create(symbol="AAPL")
    account = funded_account(cash=Decimal(0))
    probe = APIClient()
    probe.force_authenticate(funded_account().owner)  # a dry run on a rich account prices the hold
    hold = Decimal(probe.post("/v2/orders?dry_run=true", BUY, format="json").data["hold"])
    # Enough for ``affordable`` orders, one cent short of one more.
    cash_deposit_post(account=account, amount=hold * (affordable + 1) - Decimal("0.01"), transfer_id="fund")

    barrier = threading.Barrier(CLIENTS)
    statuses: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        try:
            c = APIClient()
            c.force_authenticate(account.owner)
            barrier.wait(timeout=30)
            r: Any = c.post(
                "/v2/orders",
                {**BUY, "client_order_id": f"ds-{i}"},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"ds-{i}",
            )
            with lock:
                statuses.append(r.status_code)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert sorted(statuses) == [200] * affordable + [403] * (CLIENTS - affordable)  # never a 5xx
    assert Order.objects.filter(account=account).count() == affordable
    assert CashHold.objects.filter(account=account).count() == affordable
    bal = selectors.cash_balances(account)
    assert bal.held == hold * affordable
    assert bal.settled == hold - Decimal("0.01")
    assert bal.settled >= 0
