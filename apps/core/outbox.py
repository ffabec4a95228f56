"""Write events in the business transaction (the outbox half of the event backbone).

``event_record`` must be called inside the ``transaction.atomic`` block that makes the business change; it
refuses to run outside one, so an event can never be committed without its change or the other way round.
Publishing is the relay's job (``apps.core.relay``); nothing here talks to Kafka.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from apps.core import events
from apps.core.copy import copy_insert
from apps.core.models import StoredEvent
from apps.core.sql import hot_cursor


class NotInTransaction(RuntimeError):
    pass


def aggregate_next_sequence(*, aggregate_type: str, aggregate_id: str) -> int:
    """Allocate the next per-aggregate sequence number; the row stays locked until the caller commits."""
    with hot_cursor() as cursor:
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


@functools.cache
def _first_event_sql(aggregate_insert: str | None = None) -> str:
    """The sequence row and the first event in one statement, after the aggregate's own INSERT when given."""
    lead = "" if aggregate_insert is None else f"aggregate AS ({aggregate_insert}), "
    return f"""
    WITH {lead}seq AS (
        INSERT INTO core_aggregatesequence (aggregate_type, aggregate_id, last_sequence) VALUES (%s, %s, 1)
    )
    INSERT INTO core_storedevent
        (event_id, event_type, event_version, aggregate_type, aggregate_id, sequence, occurred_at,
         correlation_id, causation_id, topic, key, body, published_at, publish_attempts)
    VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, NULL, 0)
"""  # noqa: S608 (``aggregate_insert`` is built from model meta: apps.core.sql.insert_statement)


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
    first_of_aggregate: bool = False,
    aggregate_insert: tuple[str, Sequence[Any]] | None = None,
) -> events.EventEnvelope:
    """Append an event to the store/outbox within the caller's transaction and return its envelope.

    ``first_of_aggregate=True`` (the aggregate was created in this transaction, e.g. a new order): its sequence
    is 1, and the sequence row and the event are written in ONE statement. Should the aggregate exist after all,
    the sequence row's primary key refuses the insert (IntegrityError), so a wrong claim cannot fork a sequence.
    ``aggregate_insert`` (with ``first_of_aggregate``): the aggregate's own ``INSERT`` (statement, values;
    ``apps.core.sql.insert_statement``), run in that same statement, so a new aggregate and its first event
    cost one round trip; a constraint of either raises the statement's ``IntegrityError``.
    """
    if not transaction.get_connection().in_atomic_block:
        raise NotInTransaction("event_record must run inside the business transaction")
    if first_of_aggregate:
        sequence = 1
    else:
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
    if aggregate_insert is not None and not first_of_aggregate:
        raise ValueError("aggregate_insert is for the first event of a new aggregate")
    if first_of_aggregate:
        with hot_cursor() as cursor:
            cursor.execute(
                _first_event_sql(None if aggregate_insert is None else aggregate_insert[0]),
                [
                    *(aggregate_insert[1] if aggregate_insert is not None else ()),
                    aggregate_type,
                    aggregate_id,
                    envelope.event_id,
                    envelope.event_type,
                    envelope.event_version,
                    aggregate_type,
                    aggregate_id,
                    envelope.occurred_at,
                    correlation_id,
                    causation_id,
                    topic,
                    key,
                    events.encode(envelope),
                ],
            )
        return envelope
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


# ------------------------------------------------------------------------------------------------ bulk
# Added for the batch order endpoint (apps.orders.batch). ``event_record`` above is unchanged.


def aggregate_sequences_allocate(*, aggregates: Sequence[tuple[str, str, int]]) -> dict[tuple[str, str], int]:
    """Reserve ``count`` sequence numbers for each ``(aggregate_type, aggregate_id, count)`` in ONE statement.

    Returns the FIRST allocated number per aggregate (the block is ``first .. first + count - 1``). Rows are
    upserted in ``(aggregate_type, aggregate_id)`` order, so two concurrent bulk allocations lock their common
    aggregates in the same order (no deadlock); each row stays locked until the caller commits.
    """
    if not aggregates:
        return {}
    ordered = sorted(aggregates)
    with hot_cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO core_aggregatesequence (aggregate_type, aggregate_id, last_sequence)
            SELECT t, i, c FROM unnest(%s::text[], %s::text[], %s::bigint[]) WITH ORDINALITY AS u(t, i, c, n)
            ORDER BY n
            ON CONFLICT (aggregate_type, aggregate_id)
            DO UPDATE SET last_sequence = core_aggregatesequence.last_sequence + EXCLUDED.last_sequence
            RETURNING aggregate_type, aggregate_id, last_sequence
            """,
            [[a[0] for a in ordered], [a[1] for a in ordered], [a[2] for a in ordered]],
        )
        last = {(str(t), str(i)): int(s) for t, i, s in cursor.fetchall()}
    counts = {(a[0], a[1]): a[2] for a in ordered}
    return {k: last[k] - counts[k] + 1 for k in counts}


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event for ``events_record_bulk`` (the same fields as ``event_record``'s arguments)."""

    topic: str
    key: str
    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    event_version: int = 1
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    occurred_at: datetime | None = None
    event_id: uuid.UUID | None = None


def events_record_bulk(specs: Sequence[EventSpec]) -> list[events.EventEnvelope]:
    """``event_record`` for many events: one sequence UPSERT for all aggregates, one multi-row INSERT.

    Same guarantees as ``event_record`` (inside the business transaction, per-aggregate sequences gapless and
    in list order); returns the envelopes in input order. Outbox rows get increasing ids in input order, so the
    relay publishes them in that order.
    """
    if not specs:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise NotInTransaction("events_record_bulk must run inside the business transaction")
    counts: dict[tuple[str, str], int] = {}
    for s in specs:
        counts[(s.aggregate_type, s.aggregate_id)] = counts.get((s.aggregate_type, s.aggregate_id), 0) + 1
    first = aggregate_sequences_allocate(aggregates=[(t, i, c) for (t, i), c in counts.items()])
    envelopes: list[events.EventEnvelope] = []
    rows: list[StoredEvent] = []
    for s in specs:
        agg = (s.aggregate_type, s.aggregate_id)
        sequence = first[agg]
        first[agg] = sequence + 1
        envelope = events.new_envelope(
            event_type=s.event_type,
            aggregate_type=s.aggregate_type,
            aggregate_id=s.aggregate_id,
            sequence=sequence,
            payload=s.payload,
            event_version=s.event_version,
            correlation_id=s.correlation_id,
            causation_id=s.causation_id,
            occurred_at=s.occurred_at,
            event_id=s.event_id,
        )
        envelopes.append(envelope)
        rows.append(
            StoredEvent(
                event_id=envelope.event_id,
                event_type=envelope.event_type,
                event_version=envelope.event_version,
                aggregate_type=s.aggregate_type,
                aggregate_id=s.aggregate_id,
                sequence=sequence,
                occurred_at=envelope.occurred_at,
                correlation_id=s.correlation_id,
                causation_id=s.causation_id,
                topic=s.topic,
                key=s.key,
                body=events.encode(envelope),
            )
        )
    # COPY: the ids come from the sequence in row order (the relay's order), and nothing reads them back here.
    copy_insert(StoredEvent, rows)
    return envelopes
