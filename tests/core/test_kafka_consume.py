"""``kafka.consume_ready`` against the real broker: fetched messages are handed over at once, in order.

librdkafka's batch ``consume(n, timeout)`` waits until it has n messages or the whole timeout has passed; every
consumer loop (``ConsumerRunner``, the engine runner) polls through ``consume_ready`` instead, so a message never
sits in the local queue waiting for a batch to fill.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from apps.core import kafka

pytestmark = [pytest.mark.kafka]

LONG = 20.0  # seconds: far longer than a fetch takes, so returning before it means nothing waited for a batch


def _consumer(topic: str) -> Any:
    consumer = kafka.consumer_create(group_id=f"consume-ready-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    return consumer


def test_a_few_waiting_messages_come_back_without_waiting_for_a_full_batch(fresh_topic: Any) -> None:
    topic = kafka.topic_name(fresh_topic())
    producer = kafka.producer_create()
    for i in range(3):
        producer.produce(topic, f"m{i}".encode(), b"k")
    producer.flush(10)
    consumer = _consumer(topic)
    try:
        got: list[bytes] = []
        started = time.monotonic()
        while len(got) < 3:
            batch = kafka.consume_ready(consumer, 500, LONG)
            assert batch, "the timeout ran out with messages on the topic"
            got += [v for m in batch if m.error() is None and (v := m.value()) is not None]
        waited = time.monotonic() - started
    finally:
        consumer.close()
    assert got == [b"m0", b"m1", b"m2"]
    # A batch consume of 500 would have blocked for the whole LONG timeout with only 3 messages there.
    assert waited < LONG


def test_an_empty_topic_returns_nothing_once_the_timeout_passes(fresh_topic: Any) -> None:
    consumer = _consumer(kafka.topic_name(fresh_topic()))
    try:
        assert kafka.consume_ready(consumer, 500, 0.2) == []
        assert kafka.consume_ready(consumer, 500, 0) == []
    finally:
        consumer.close()


def test_a_topics_id_is_asked_again_until_it_exists_and_a_missing_topic_still_fails(fresh_topic: Any) -> None:
    # Right after creation a broker may not know the topic yet; topic_id asks again until its timeout, so a
    # topic that exists answers and one that never appears raises UNKNOWN_TOPIC_OR_PART once the timeout passed.
    assert len(kafka.topic_id(fresh_topic())) == 22
    started = time.monotonic()
    with pytest.raises(KafkaException) as exc:
        kafka.topic_id(f"never-created-{uuid.uuid4().hex[:8]}", timeout=1.0)
    error = kafka.kafka_error(exc.value)
    assert error is not None
    assert error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    assert time.monotonic() - started >= 1.0
