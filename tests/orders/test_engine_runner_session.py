"""The session clock: one SessionOpen/SessionClose per partition per session date, through the outbox."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, Message

from apps.core import events, kafka
from apps.core.markettime import XNYSCalendar
from apps.core.models import StoredEvent
from apps.core.relay import relay_drain
from apps.orders.engine_runner import command_decode
from apps.orders.engine_runner_session import session_clock_tick, session_partition_keys
from engine.commands import SessionClose, SessionOpen
from tests.orders.engine_kafka_helpers import read_all

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]


@pytest.mark.parametrize("partitions", [pytest.param(8, id="eight"), pytest.param(3, id="three")])
def test_session_keys_land_on_every_partition_under_the_producer_partitioner(
    fresh_topic: Any, partitions: int
) -> None:
    topic = fresh_topic(partitions=partitions)
    keys = session_partition_keys(partitions)
    landed: dict[str, int] = {}

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        assert err is None
        landed[(msg.key() or b"").decode()] = msg.partition() or 0

    producer = kafka.producer_create()
    for key in keys:  # no explicit partition: the default partitioner decides, as for the relay
        producer.produce(kafka.topic_name(topic), key=key.encode(), value=b"x", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    assert [landed[k] for k in keys] == list(range(partitions))


def test_session_clock_records_each_command_once_and_every_partition_gets_it(fresh_topic: Any) -> None:
    topic = fresh_topic(partitions=8)
    calendar = XNYSCalendar()
    # 2025-07-03 is an early close (13:00 ET = 17:00 UTC); the session opened at 13:30 UTC.
    during = datetime(2025, 7, 3, 14, 0, tzinfo=UTC)
    after_close = datetime(2025, 7, 3, 17, 1, tzinfo=UTC)

    first = session_clock_tick(now=during, calendar=calendar, partitions=8, topic=topic)
    assert first == [(date(2025, 7, 2), "close", 8), (date(2025, 7, 3), "open", 8)]
    assert session_clock_tick(now=during, calendar=calendar, partitions=8, topic=topic) == []
    assert session_clock_tick(now=after_close, calendar=calendar, partitions=8, topic=topic) == [
        (date(2025, 7, 3), "close", 8)
    ]
    assert session_clock_tick(now=after_close, calendar=calendar, partitions=8, topic=topic) == []
    assert StoredEvent.objects.filter(topic=topic).count() == 24

    assert relay_drain() == 24
    per_partition: dict[int, list[tuple[str, datetime]]] = {}
    for partition, _key, value in read_all(topic):
        envelope, command = command_decode(value)
        assert envelope.event_type == "orders.SessionCommand"
        assert isinstance(command, SessionOpen | SessionClose)
        per_partition.setdefault(partition, []).append((type(command).__name__, envelope.occurred_at))
    expected = [
        ("SessionClose", datetime(2025, 7, 2, 20, 0, tzinfo=UTC)),
        ("SessionOpen", datetime(2025, 7, 3, 13, 30, tzinfo=UTC)),
        ("SessionClose", datetime(2025, 7, 3, 17, 0, tzinfo=UTC)),
    ]
    assert per_partition == dict.fromkeys(range(8), expected)
    assert events.decode(read_all(topic)[0][2]).aggregate_type == "market_session"
