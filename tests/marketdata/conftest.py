"""Market data test wiring: engine events → EventEnvelopes on the real Kafka topics → the real consumer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from apps.core import events, kafka
from apps.core.consumers import ConsumerRunner, consumer_get
from apps.marketdata.stream import publisher
from engine.events import BookLevelChanged, Event, TradeExecuted

TOPIC_OF = {TradeExecuted: "marketdata.trades", BookLevelChanged: "marketdata.book"}


def engine_payload(event: Event, timestamp: datetime | None = None) -> dict[str, Any]:
    """The producer's contract: builtins, ``*_e4``/``*_e9`` also as exact decimal strings without the suffix."""
    payload: dict[str, Any] = msgspec.to_builtins(event)
    for name, value in list(payload.items()):
        for suffix, scale in (("_e4", -4), ("_e9", -9)):
            if name.endswith(suffix) and isinstance(value, int):
                payload[name[: -len(suffix)]] = format(Decimal(value).scaleb(scale).normalize(), "f")
    if timestamp is not None:
        payload["timestamp"] = timestamp.isoformat()
    return payload


def envelope_for(event: Event, timestamp: datetime | None = None) -> events.EventEnvelope:
    return events.new_envelope(
        event_type=f"engine.{type(event).__name__}",
        aggregate_type="book",
        aggregate_id=event.symbol,
        sequence=event.book_seq,
        payload=engine_payload(event, timestamp),
        occurred_at=timestamp or datetime.now(UTC),
    )


@pytest.fixture
def md_topics(kafka_topics: list[str], fresh_topic: Any) -> dict[str, str]:
    """Per-test stand-ins for marketdata.trades / marketdata.book, so no test reads another's events."""
    return {"marketdata.trades": fresh_topic(base="mdtrades"), "marketdata.book": fresh_topic(base="mdbook")}


@pytest.fixture
def engine_publish(md_topics: dict[str, str]) -> Callable[..., int]:
    """Produce engine events (only those bound for marketdata topics) as envelopes; returns how many."""
    producer = kafka.producer_create()

    def publish(evts: list[Event], timestamp: datetime | None = None) -> int:
        n = 0
        for event in evts:
            logical = TOPIC_OF.get(type(event))
            if logical is None:
                continue
            topic = md_topics[logical]
            envelope = envelope_for(event, timestamp)
            producer.produce(kafka.topic_name(topic), key=event.symbol, value=events.encode(envelope))
            n += 1
        assert producer.flush(30) == 0
        return n

    return publish


@pytest.fixture
def md_consume(md_topics: dict[str, str]) -> Callable[[int], int]:
    """Run the registered ``marketdata`` consumer until ``n`` messages were applied, then flush the fan-out."""
    group = f"marketdata-test-{uuid.uuid4().hex[:8]}"

    def consume(n: int) -> int:
        spec = replace(consumer_get("marketdata"), group_id=group, topics=tuple(md_topics.values()))
        runner = ConsumerRunner(spec)
        done = runner.run(max_messages=n, idle_timeout=20)
        publisher().flush()
        return done

    return consume
