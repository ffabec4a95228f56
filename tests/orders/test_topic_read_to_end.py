"""``apps.core.kafka.topic_read_to_end`` (used by snapshot load, reconciliation and the orders rebuild)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core import kafka
from tests.orders.engine_kafka_helpers import produce

pytestmark = [pytest.mark.kafka]


def _rows(records: list[kafka.TopicRecord]) -> list[tuple[int, int, bytes | None, bytes | None]]:
    return sorted((r.partition, r.offset, r.key, r.value) for r in records)


def test_reads_every_partition_to_the_end_it_had_when_the_read_started(fresh_topic: Any) -> None:
    topic = fresh_topic(partitions=3, base="rte")
    produce(topic, [(0, "a", b"a0"), (0, "a", b"a1"), (2, "c", b"c0")])  # partition 1 stays empty

    assert _rows(list(kafka.topic_read_to_end(topic, timeout=30))) == [
        (0, 0, b"a", b"a0"),
        (0, 1, b"a", b"a1"),
        (2, 0, b"c", b"c0"),
    ]
    assert _rows(list(kafka.topic_read_to_end(topic, partitions=[2, 1], timeout=30))) == [(2, 0, b"c", b"c0")]

    reader = kafka.topic_read_to_end(topic, partitions=[0], timeout=30)
    first = next(reader)
    produce(topic, [(0, "a", b"late")])  # appended after the read started: beyond its end
    assert _rows([first, *reader]) == [(0, 0, b"a", b"a0"), (0, 1, b"a", b"a1")]
    assert [r.value for r in kafka.topic_read_to_end(topic, partitions=[0], timeout=30)][-1] == b"late"


def test_missing_topic_is_not_readable() -> None:
    with pytest.raises(kafka.TopicNotReadable):
        list(kafka.topic_read_to_end("no.such.topic.h3", timeout=2))  # asked again for 2 s, then refused
