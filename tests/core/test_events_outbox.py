"""The event envelope and the outbox write path (PostgreSQL only)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from django.db import transaction

from apps.core import events
from apps.core.models import StoredEvent
from apps.core.outbox import NotInTransaction, event_record


def test_envelope_round_trips_exactly() -> None:
    env = events.new_envelope(
        event_type="test.ThingHappened",
        aggregate_type="thing",
        aggregate_id="t-1",
        sequence=3,
        payload={"amount": "10.01", "n": 2},
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
    )
    raw = events.encode(env)
    assert events.decode(raw) == env
    assert b'"amount":"10.01"' in raw


def test_envelope_rejects_naive_or_non_utc_time() -> None:
    with pytest.raises(ValueError, match="UTC"):
        events.new_envelope(
            event_type="t.X",
            aggregate_type="a",
            aggregate_id="1",
            sequence=1,
            payload={},
            occurred_at=datetime(2026, 1, 1),
        )
    with pytest.raises(ValueError, match="UTC"):
        events.new_envelope(
            event_type="t.X",
            aggregate_type="a",
            aggregate_id="1",
            sequence=1,
            payload={},
            occurred_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
        )


def test_envelope_schema_is_explicit_and_strict() -> None:
    schema = events.envelope_json_schema()
    props = schema["$defs"]["EventEnvelope"]["properties"]
    assert set(props) == {
        "schema",
        "event_id",
        "event_type",
        "event_version",
        "aggregate_type",
        "aggregate_id",
        "sequence",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "payload",
    }
    raw = events.encode(
        events.new_envelope(event_type="t.X", aggregate_type="a", aggregate_id="1", sequence=1, payload={})
    )
    with pytest.raises(msgspec.ValidationError):
        events.decode(raw.replace(b'"payload"', b'"extra":1,"payload"'))


def test_upcaster_brings_old_versions_forward() -> None:
    @events.register_upcaster("test.Renamed", 1)
    def _v1_to_v2(payload: dict[str, object]) -> dict[str, object]:
        return {"quantity": payload["qty"]}

    old = events.new_envelope(
        event_type="test.Renamed", aggregate_type="a", aggregate_id="1", sequence=1, payload={"qty": "5"}
    )
    new = events.decode(events.encode(old))
    assert new.event_version == 2
    assert new.payload == {"quantity": "5"}


@pytest.mark.django_db(transaction=True)
def test_event_record_needs_the_business_transaction() -> None:
    with pytest.raises(NotInTransaction):
        event_record(topic="x", key="k", event_type="t.X", aggregate_type="a", aggregate_id="1", payload={})
    assert StoredEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_sequences_are_per_aggregate_and_gap_free() -> None:
    with transaction.atomic():
        a1 = event_record(
            topic="x", key="k", event_type="t.X", aggregate_type="a", aggregate_id="1", payload={}
        )
        b1 = event_record(
            topic="x", key="k", event_type="t.X", aggregate_type="a", aggregate_id="2", payload={}
        )
        a2 = event_record(
            topic="x", key="k", event_type="t.X", aggregate_type="a", aggregate_id="1", payload={}
        )
    assert (a1.sequence, a2.sequence, b1.sequence) == (1, 2, 1)

    # A rolled-back transaction leaves neither an event nor a hole in the sequence.
    def failing_change() -> None:
        with transaction.atomic():
            event_record(
                topic="x", key="k", event_type="t.X", aggregate_type="a", aggregate_id="1", payload={}
            )
            raise RuntimeError("business change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    with transaction.atomic():
        a3 = event_record(
            topic="x", key="k", event_type="t.X", aggregate_type="a", aggregate_id="1", payload={}
        )
    assert a3.sequence == 3
    assert list(
        StoredEvent.objects.filter(aggregate_id="1").values_list("sequence", flat=True).order_by("id")
    ) == [
        1,
        2,
        3,
    ]
    stored = StoredEvent.objects.get(event_id=a3.event_id)
    assert events.decode(bytes(stored.body)) == a3
    assert stored.published_at is None
    assert stored.occurred_at.tzinfo is not None
    assert stored.occurred_at <= datetime.now(UTC)
