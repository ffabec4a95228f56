"""``ConsumerSpec.chunk_handler``: one call per chunk with only the chunk's new events, in message order, inside
the chunk's transaction (inbox rows and effects commit or roll back together); ``handler`` is not called."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from apps.core import events
from apps.core.consumers import ConsumerSpec, MessageMeta, inbox_apply_many
from apps.core.models import InboxRecord

pytestmark = pytest.mark.django_db


class _Refused(Exception):
    pass


def _env(n: int) -> events.EventEnvelope:
    return events.new_envelope(
        event_type="test.Thing",
        aggregate_type="thing",
        aggregate_id=f"t{n}",
        sequence=1,
        payload={"n": n},
        occurred_at=datetime(2026, 11, 24, 15, 0, tzinfo=UTC),
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"chunk-handler-{n}"),
    )


def _items(ns: Sequence[int]) -> list[tuple[events.EventEnvelope, MessageMeta]]:
    return [(_env(n), MessageMeta("test.things", 0, i, None)) for i, n in enumerate(ns)]


def _spec(calls: list[list[int]], refuse: int | None = None) -> ConsumerSpec:
    def per_event(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        raise AssertionError("handler must not run when the spec has a chunk_handler")

    def chunk(items: Sequence[tuple[events.EventEnvelope, MessageMeta]]) -> None:
        ns = [int(env.payload["n"]) for env, _ in items]
        calls.append(ns)
        if refuse in ns:
            raise _Refused(str(refuse))

    return ConsumerSpec(
        name=f"test.chunk.{uuid.uuid4().hex[:8]}",
        topics=("test.things",),
        handler=per_event,
        transaction_batch=10,
        chunk_handler=chunk,
    )


def test_one_call_with_the_new_events_in_order() -> None:
    calls: list[list[int]] = []
    spec = _spec(calls)
    assert inbox_apply_many(spec, _items([1, 2])) == 2
    # 1 is stored, 3 comes twice in the chunk: only 3 and 4 are new, once each, in message order.
    assert inbox_apply_many(spec, _items([3, 1, 3, 4])) == 2
    assert inbox_apply_many(spec, _items([4, 2])) == 0
    assert calls == [[1, 2], [3, 4]]  # nothing new: no call at all
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 4


def test_a_failing_chunk_leaves_no_inbox_rows() -> None:
    calls: list[list[int]] = []
    spec = _spec(calls, refuse=6)
    with pytest.raises(_Refused):
        inbox_apply_many(spec, _items([5, 6, 7]))
    assert calls == [[5, 6, 7]]
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 0
