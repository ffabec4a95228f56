"""Write events in the business transaction (the outbox half of the event backbone).

``event_record`` must be called inside the ``transaction.atomic`` block that makes the business change; it
refuses to run outside one, so an event can never be committed without its change or the other way round.
Publishing is the relay's job (``apps.core.relay``); nothing here talks to Kafka.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from apps.core import events
from apps.core.models import StoredEvent


class NotInTransaction(RuntimeError):
    pass


def aggregate_next_sequence(*, aggregate_type: str, aggregate_id: str) -> int:
    """Allocate the next per-aggregate sequence number; the row stays locked until the caller commits."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO core_aggregatesequence (aggregate_type, aggregate_id, last_sequence)
            VALUES (%s, %s, 1)
            ON CONFLICT (aggregate_type, aggregate_id)
            DO UPDATE SET last_sequence = core_aggregatesequence.last_sequence + 1
            RETURNING last_sequence
            """,
            [aggregate_type, aggregate_id],
        )
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def event_record(
    *,
    topic: str,
    key: str,
    event_type: str,
    aggregate_type: str,
    aggregate_id: str,
    payload: dict[str, Any],
    event_version: int = 1,
    correlation_id: uuid.UUID | None = None,
    causation_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> events.EventEnvelope:
    """Append an event to the store/outbox within the caller's transaction and return its envelope."""
    if not transaction.get_connection().in_atomic_block:
        raise NotInTransaction("event_record must run inside the business transaction")
    sequence = aggregate_next_sequence(aggregate_type=aggregate_type, aggregate_id=aggregate_id)
    envelope = events.new_envelope(
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        sequence=sequence,
        payload=payload,
        event_version=event_version,
        correlation_id=correlation_id,
        causation_id=causation_id,
        occurred_at=occurred_at,
        event_id=event_id,
    )
    StoredEvent.objects.create(
        event_id=envelope.event_id,
        event_type=envelope.event_type,
        event_version=envelope.event_version,
        aggregate_type=aggregate_type,
        aggregate_id=aggregate_id,
        sequence=sequence,
        occurred_at=envelope.occurred_at,
        correlation_id=correlation_id,
        causation_id=causation_id,
        topic=topic,
        key=key,
        body=events.encode(envelope),
    )
    return envelope
