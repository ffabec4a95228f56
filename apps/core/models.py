"""Event store + outbox, inbox (applied events per consumer), aggregate sequences and idempotency records.

- ``StoredEvent`` is both the event store and the outbox: a row is written in the same transaction as the
  business change; the relay publishes rows whose ``published_at`` is NULL (claimed with ``FOR UPDATE SKIP
  LOCKED``, never by an id watermark) and stamps them. Rows are never deleted by the application: they are the
  replayable history read models are rebuilt from. ``(aggregate_type, aggregate_id, sequence)`` is unique.
- ``AggregateSequence`` hands out gap-free per-aggregate sequence numbers (an UPSERT that row-locks until commit).
- ``InboxRecord`` records ``(consumer, event_id)`` in the same transaction as a consumer's effect, so a redelivered
  event changes nothing.
- ``IdempotencyRecord`` stores the response of a mutating request by ``(owner, key)``.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class StoredEvent(models.Model):
    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    event_type = models.CharField(max_length=100)
    event_version = models.PositiveSmallIntegerField(default=1)
    aggregate_type = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=100)
    sequence = models.PositiveBigIntegerField()
    occurred_at = models.DateTimeField()
    correlation_id = models.UUIDField(null=True, blank=True)
    causation_id = models.UUIDField(null=True, blank=True)
    # Where the relay publishes it. ``topic`` is the logical name (without any environment prefix).
    topic = models.CharField(max_length=200)
    key = models.CharField(max_length=200)
    body = models.BinaryField(help_text="msgspec-encoded EventEnvelope")
    published_at = models.DateTimeField(null=True, blank=True)
    publish_attempts = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["aggregate_type", "aggregate_id", "sequence"], name="core_event_aggregate_seq_uniq"
            ),
            models.CheckConstraint(condition=Q(sequence__gte=1), name="core_event_sequence_positive"),
        ]
        indexes = [
            # The relay's claim query: only unpublished rows, in id order.
            models.Index(
                fields=["id"], name="core_event_unpublished_idx", condition=Q(published_at__isnull=True)
            ),
            models.Index(fields=["topic", "id"], name="core_event_topic_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.aggregate_type}:{self.aggregate_id}#{self.sequence}"


class AggregateSequence(models.Model):
    aggregate_type = models.CharField(max_length=50)
    aggregate_id = models.CharField(max_length=100)
    last_sequence = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["aggregate_type", "aggregate_id"], name="core_aggseq_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.aggregate_type}:{self.aggregate_id}@{self.last_sequence}"


class InboxRecord(models.Model):
    consumer = models.CharField(max_length=100)
    event_id = models.UUIDField()
    topic = models.CharField(max_length=200)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    applied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="core_inbox_consumer_event_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}:{self.event_id}"


class IdempotencyRecord(models.Model):
    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    owner = models.CharField(max_length=100, help_text="who the key belongs to (user id)")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=500)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State.choices, default=State.IN_PROGRESS)
    locked_until = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="core_idem_owner_key_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.owner}:{self.key} ({self.state})"
