"""Rebuild of the orders read model from the real ``orders.events`` topic equals the live projection."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from apps.accounts.models import BrokerageAccount
from apps.core import events
from apps.orders import services
from apps.orders.models import Fill, Order, TradeUpdate
from apps.orders.rebuild import _snapshot, orders_rebuild
from tests.orders.engine_kafka_helpers import produce
from tests.orders.test_projection import Harness, account, clock, mm_sell, submit  # noqa: F401

pytestmark = pytest.mark.django_db


def test_rebuild_equals_live_and_verify_finds_a_corrupted_row(
    kafka_topics: list[str],
    account: BrokerageAccount,  # noqa: F811
) -> None:
    h = Harness()
    h.inject(mm_sell("4", "99.5", "mm-1"))
    partial = submit(account, qty=Decimal("10"), limit_price=Decimal("100"))
    canceled = submit(account, qty=Decimal("1"), limit_price=Decimal("90"))
    h.pump()
    with transaction.atomic():
        services.order_cancel(account=account, order_id=canceled.id)
    h.pump()
    h.inject(mm_sell("6", "100", "mm-2"))
    resting = submit(account, qty=Decimal("1"), limit_price=Decimal("80"))
    h.pump()
    with transaction.atomic():
        services.order_cancel(account=account, order_id=resting.id)  # not sent to the engine: stays pending
    produce("orders.events", [(0, "AAPL", events.encode(env)) for env in h.applied])

    live = _snapshot()
    assert [Order.objects.get(id=o.id).status for o in (partial, canceled, resting)] == [
        "filled",
        "canceled",
        "pending_cancel",
    ]
    assert (Fill.objects.count(), TradeUpdate.objects.count()) == (2, 6)

    call_command("rebuild_read_models", "orders", "--verify")
    result = orders_rebuild(check_consumer=False)
    assert result.differences == []
    assert _snapshot() == live

    Order.objects.filter(id=partial.id).update(filled_qty=Decimal("3"))
    with pytest.raises(CommandError, match="1 difference"):
        call_command("rebuild_read_models", "orders", "--verify")
    assert Order.objects.get(id=partial.id).filled_qty == Decimal("3")  # verify changed nothing
    assert orders_rebuild(check_consumer=False).differences == [
        f"order {partial.id} filled_qty: live=Decimal('3.000000000') rebuilt=Decimal('10.000000000')"
    ]
    assert _snapshot() == live


def test_rebuild_refuses_while_the_projection_consumer_runs(kafka_topics: list[str]) -> None:
    from apps.core import kafka
    from apps.core.errors import Conflict
    from apps.orders.consumers import ORDERS_PROJECTION

    consumer = kafka.consumer_create(group_id=ORDERS_PROJECTION.group)
    consumer.subscribe([kafka.topic_name("orders.events")])
    try:
        while not consumer.assignment():
            consumer.poll(0.5)
        with pytest.raises(Conflict, match="active members"):
            orders_rebuild()
    finally:
        consumer.close()
