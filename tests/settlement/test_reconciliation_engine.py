"""Reconciliation (c) against the real broker: our fills == the engine's fill events on Kafka, one for one.

Injected breaks: an engine fill event the ledger never booked (a dropped event) and a second ledger fill for
the same execution under another id (a duplicated fill). Each is classified, alerted, and halts its account.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.models import BrokerageAccount
from apps.core import events, kafka
from apps.settlement import services
from apps.settlement.models import ReconciliationAlert
from apps.settlement.reconciliation import reconciliation_run
from tests.settlement.factories import account_create
from tests.settlement.helpers import fill

pytestmark = [pytest.mark.django_db, pytest.mark.kafka]

WED = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def _publish(topic: str, payloads: list[dict[str, Any]]) -> None:
    producer = kafka.producer_create()
    for seq, payload in enumerate(payloads, start=1):
        envelope = events.new_envelope(
            event_type="engine.OrderFilled",
            aggregate_type="book",
            aggregate_id="AAPL",
            sequence=seq,
            payload={"event": "OrderFilled", "symbol": "AAPL", **payload},
        )
        producer.produce(kafka.topic_name(topic), key=b"AAPL", value=events.encode(envelope))
    # An event of another type on the same topic is not a fill.
    other = events.new_envelope(
        event_type="engine.OrderAccepted", aggregate_type="book", aggregate_id="AAPL", sequence=99, payload={}
    )
    producer.produce(kafka.topic_name(topic), key=b"AAPL", value=events.encode(other))
    assert producer.flush(30) == 0


def _payload(account: BrokerageAccount, fill_id: str, qty: str, at: datetime = WED) -> dict[str, Any]:
    return {
        "fill_id": fill_id,
        "order_id": "O1",
        "account_id": str(account.pk),
        "side": "buy",
        "qty": qty,
        "price": "10",
        "filled_at": at.isoformat().replace("+00:00", "Z"),
    }


def _book(account: BrokerageAccount, fill_id: str, qty: str) -> None:
    services.fill_settle_trade_date(
        fill=fill(account.pk, order_id="O1", side="buy", qty=qty, price="10", at=WED, fill_id=fill_id)
    )


@pytest.fixture
def funded() -> BrokerageAccount:
    account = account_create()
    services.cash_deposit_post(account=account, amount=Decimal("1000"), transfer_id="dep")
    return account


def test_fills_agree_one_for_one_and_in_flight_fills_are_not_breaks(
    funded: BrokerageAccount, fresh_topic: Callable[..., str]
) -> None:
    topic = fresh_topic(partitions=2)
    _book(funded, "p0:1:0:b", "1")
    _book(funded, "p0:2:0:b", "2")
    in_flight = _payload(funded, "p0:3:0:b", "3", at=timezone.now())  # the bridge has not delivered it yet
    _publish(topic, [_payload(funded, "p0:1:0:b", "1"), _payload(funded, "p0:2:0:b", "2"), in_flight])
    report = reconciliation_run(job="fills_vs_engine", topic=topic)
    assert (report.status, report.breaks, report.halted_accounts) == ("clean", [], [])
    assert ReconciliationAlert.objects.count() == 0


def test_dropped_event_and_duplicated_fill_are_found_classified_and_halt(
    funded: BrokerageAccount, fresh_topic: Callable[..., str]
) -> None:
    other = account_create()
    services.cash_deposit_post(account=other, amount=Decimal("1000"), transfer_id="dep-other")
    topic = fresh_topic()
    _book(funded, "p0:1:0:b", "1")
    _book(funded, "dup-of-p0:1:0:b", "1")  # the same execution booked again under another id
    dropped = {**_payload(other, "p0:2:0:b", "2"), "order_id": "O2"}  # never reached the ledger
    _publish(topic, [_payload(funded, "p0:1:0:b", "1"), _payload(funded, "p0:1:0:b", "1"), dropped])

    report = reconciliation_run(job="fills_vs_engine", topic=topic, grace_seconds=0)

    assert report.status == "breaks"
    assert sorted((b["kind"], b["fill_id"], b["account_id"]) for b in report.breaks) == [
        ("fill_duplicated", "dup-of-p0:1:0:b", str(funded.pk)),
        ("fill_missing_in_ledger", "p0:2:0:b", str(other.pk)),
    ]
    assert sorted(report.halted_accounts) == sorted([str(funded.pk), str(other.pk)])
    for account in (funded, other):
        account.refresh_from_db()
        assert account.trading_halted_reason == "reconciliation break: fills_vs_engine"
    assert sorted((a.kind, a.account_id) for a in ReconciliationAlert.objects.all()) == sorted(
        [("fill_duplicated", funded.pk), ("fill_missing_in_ledger", other.pk)]
    )
