"""Consumer throughput options keep exactly-once: ``transaction_batch`` (one transaction per chunk, bulk inbox
insert, fall back to one message at a time) and ``event_types`` (no transaction for events the handler ignores)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import transaction

from apps.core import events
from apps.core.consumers import (
    ConsumerRunner,
    ConsumerSpec,
    MessageMeta,
    consumer_register,
    consumer_unregister,
    inbox_apply_many,
)
from apps.core.models import InboxRecord, StoredEvent
from apps.core.outbox import event_record
from apps.core.relay import relay_drain

pytestmark = [pytest.mark.django_db(transaction=True)]


class _Poison(Exception):
    pass


def _echo_handler(echo_topic: str) -> Callable[[events.EventEnvelope, MessageMeta], None]:
    """Effect: an echo event in the same transaction; ``amount`` "poison" always fails."""

    def handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        if envelope.payload["amount"] == "poison":
            raise _Poison("refused")
        event_record(
            topic=echo_topic,
            key=envelope.aggregate_id,
            event_type="test.EchoRecorded",
            aggregate_type="echo",
            aggregate_id=envelope.aggregate_id,
            payload={"of": str(envelope.event_id)},
            causation_id=envelope.event_id,
        )

    return handle


def _echo_causes() -> list[uuid.UUID]:
    return list(
        StoredEvent.objects.filter(event_type="test.EchoRecorded")
        .order_by("id")
        .values_list("causation_id", flat=True)  # type: ignore[arg-type]
    )


def _envelope(amount: str, event_type: str = "test.MoneyMoved") -> events.EventEnvelope:
    return events.EventEnvelope(
        event_id=uuid.uuid4(),
        event_type=event_type,
        event_version=1,
        aggregate_type="test",
        aggregate_id="acct-1",
        sequence=1,
        occurred_at=datetime.now(UTC),
        payload={"amount": amount},
    )


def _meta(offset: int) -> MessageMeta:
    return MessageMeta(topic="src", partition=0, offset=offset, key="acct-1")


@pytest.fixture
def spec_factory() -> Iterator[Callable[..., ConsumerSpec]]:
    names: list[str] = []

    def make(**kwargs: Any) -> ConsumerSpec:
        spec = consumer_register(ConsumerSpec(name=f"test-{uuid.uuid4().hex[:8]}", **kwargs))
        names.append(spec.name)
        return spec

    yield make
    for name in names:
        consumer_unregister(name)


def test_inbox_apply_many_applies_each_event_once(spec_factory: Any) -> None:
    spec = spec_factory(topics=("src",), handler=_echo_handler("echo"))
    a, b, c = _envelope("1"), _envelope("2"), _envelope("3")

    # b twice in one chunk: applied once.
    assert inbox_apply_many(spec, [(a, _meta(0)), (b, _meta(1)), (b, _meta(1))]) == 2
    # a and b are stored: only c is new.
    assert inbox_apply_many(spec, [(a, _meta(0)), (b, _meta(1)), (c, _meta(2))]) == 1

    assert _echo_causes() == [a.event_id, b.event_id, c.event_id]
    assert set(InboxRecord.objects.filter(consumer=spec.name).values_list("event_id", flat=True)) == {
        a.event_id,
        b.event_id,
        c.event_id,
    }


def test_inbox_apply_many_failure_rolls_back_the_whole_chunk(spec_factory: Any) -> None:
    spec = spec_factory(topics=("src",), handler=_echo_handler("echo"))
    good, bad = _envelope("1"), _envelope("poison")

    with pytest.raises(_Poison):
        inbox_apply_many(spec, [(good, _meta(0)), (bad, _meta(1))])

    assert _echo_causes() == []
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 0


@pytest.mark.kafka
@pytest.mark.parametrize("transaction_batch", [1, 50], ids=["per-message", "chunked"])
def test_runner_chunks_filters_and_falls_back_exactly_once(
    fresh_topic: Any, spec_factory: Any, transaction_batch: int
) -> None:
    source, echo = fresh_topic(), fresh_topic()
    spec = spec_factory(
        topics=(source,),
        handler=_echo_handler(echo),
        event_types=frozenset({"test.MoneyMoved"}),
        transaction_batch=transaction_batch,
        max_attempts=1,
    )
    with transaction.atomic():
        sent = [
            event_record(
                topic=source,
                key="acct-1",
                event_type=event_type,
                aggregate_type="test",
                aggregate_id="acct-1",
                payload={"amount": amount},
            )
            for event_type, amount in [
                ("test.MoneyMoved", "1"),
                ("test.Ignored", "2"),
                ("test.MoneyMoved", "poison"),
                ("test.MoneyMoved", "4"),
            ]
        ]
    assert relay_drain() == 4

    assert ConsumerRunner(spec).run(max_messages=4, idle_timeout=20) == 4

    # The poison message (dead-lettered) does not take the chunk's good messages with it; the ignored type
    # gets no inbox row and no effect.
    assert _echo_causes() == [sent[0].event_id, sent[3].event_id]
    assert set(InboxRecord.objects.filter(consumer=spec.name).values_list("event_id", flat=True)) == {
        sent[0].event_id,
        sent[3].event_id,
    }
    # Once more from the committed offsets: nothing new arrives, nothing changes.
    assert ConsumerRunner(spec).run(idle_timeout=3) == 0
    assert len(_echo_causes()) == 2


def test_bridge_chunk_task_applies_once_and_a_failing_event_spares_the_rest(spec_factory: Any) -> None:
    """``consumer_events_apply`` (a celery-mode chunk): one transaction; if that fails, event by event, so the
    good events apply, the failing one raises (the task fails, as its one-event task would), none applies twice."""
    from apps.core.tasks import consumer_events_apply

    spec = spec_factory(topics=("src",), handler=_echo_handler("echo"), mode="celery", transaction_batch=10)
    a, poison, c = _envelope("1"), _envelope("poison"), _envelope("3")

    def items(*envs: events.EventEnvelope) -> list[tuple[str, str, int, int]]:
        return [(events.encode(e).decode(), "src", 0, i) for i, e in enumerate(envs)]

    assert consumer_events_apply(spec.name, items(a)) == 1
    with pytest.raises(_Poison):
        consumer_events_apply(spec.name, items(a, poison, c))
    assert _echo_causes() == [a.event_id, c.event_id]
    assert consumer_events_apply(spec.name, items(a, c)) == 0  # redelivered: nothing applies again
    assert set(InboxRecord.objects.filter(consumer=spec.name).values_list("event_id", flat=True)) == {
        a.event_id,
        c.event_id,
    }
