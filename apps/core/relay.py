"""The outbox relay: publishes committed events to Kafka, at least once, in per-aggregate order.

How it avoids the outbox gap: it never tracks an ``id > last_seen`` watermark. Each batch claims the oldest
rows with ``published_at IS NULL`` using ``FOR UPDATE SKIP LOCKED`` inside a transaction, publishes them with an
idempotent ``acks=all`` producer, waits for every delivery report, stamps ``published_at`` and commits. A row
whose sequence value was taken before a later-committed row simply becomes visible to a later batch.

Ordering: one relay is active at a time (a transaction-level advisory lock); others stand by. Per aggregate, ids
are allocated in commit order (writers serialize on the aggregate's sequence row), so id order is event order.

A crash between publish and commit republishes the batch: consumers deduplicate by ``event_id`` (the inbox).

Waking: every statement that inserts outbox rows notifies channel ``outbox_relay`` at its commit (a trigger,
migration ``core 0002``). A caught-up relay LISTENs and waits for that notification, so it claims the rows as
soon as they commit instead of at its next timed poll; a notification that arrives while it publishes waits on its
connection and wakes the next wait at once. It still probes every ``LISTEN_POLL_INTERVAL_S`` without one (a
connection lost and made again; a pooler that cannot carry LISTEN), and with ``OUTBOX_RELAY_LISTEN=false`` it
polls every ``POLL_INTERVAL_S`` as before. The notification only wakes the relay: what it publishes is still
whatever the claim finds.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType

import psycopg
from confluent_kafka import KafkaError, Message, Producer
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.core import kafka
from apps.core.models import StoredEvent
from apps.core.runtime import Heartbeat, heartbeat_path
from apps.core.sql import hot_cursor, rows_from_sql

logger = logging.getLogger(__name__)

# Arbitrary but fixed: the advisory-lock key that elects the active relay.
RELAY_ADVISORY_LOCK_KEY = 0x0B0C_0001
# The channel the outbox's insert trigger notifies (migration core 0002).
NOTIFY_CHANNEL = "outbox_relay"
# Longest single wait for a notification: how soon a waiting relay sees SIGTERM.
_NOTIFY_WAIT_SLICE_S = 0.25


class PublishFailed(RuntimeError):
    pass


# One autocommitted statement on the partial index of unpublished rows: an idle poll costs this round trip, not a
# transaction, the advisory lock and an ORM query (about 1 ms of the relay's CPU and 0.22 ms of the database's).
_PENDING_SQL = "SELECT EXISTS (SELECT 1 FROM core_storedevent WHERE published_at IS NULL)"
# A batch's claim and its stamp: fixed statement texts (prepared once on the relay's connection), where the ORM
# built each one again per batch (at moderate rates a batch is one or two rows, so per batch is per order).
_CLAIM_SQL = (
    "SELECT id, event_id, event_type, topic, key, body FROM core_storedevent WHERE published_at IS NULL "
    "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"
)
_STAMP_SQL = "UPDATE core_storedevent SET published_at = %s WHERE id = ANY(%s::bigint[])"


def relay_publish_batch(producer: Producer, *, batch_size: int, flush_timeout: float = 30.0) -> int:
    """Publish one batch of unpublished events. Returns how many rows were published (0: idle or standby)."""
    with hot_cursor() as cursor:
        cursor.execute(_PENDING_SQL)
        pending = cursor.fetchone()
    if not pending or not pending[0]:
        return 0  # a row committed after this read is seen by the next poll
    with transaction.atomic(durable=True):
        with hot_cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [RELAY_ADVISORY_LOCK_KEY])
            row = cursor.fetchone()
        if not row or not row[0]:
            return 0
        rows = rows_from_sql(_CLAIM_SQL, [batch_size])
        if not rows:
            return 0
        errors: list[KafkaError] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        for _id, event_id, event_type, topic, key, body in rows:
            producer.produce(
                kafka.topic_name(topic),
                key=key.encode(),
                value=bytes(body),
                headers=[("event_id", str(event_id).encode()), ("event_type", event_type.encode())],
                on_delivery=on_delivery,
            )
            producer.poll(0)
        remaining = producer.flush(flush_timeout)
        if remaining or errors:
            raise PublishFailed(f"{remaining} undelivered, errors: {errors[:3]}")
        if os.environ.get("OUTBOX_RELAY_CRASH_AFTER_PUBLISH") == "1":
            # Fault injection for the crash test: die after Kafka has the events, before they are stamped.
            os._exit(137)
        with hot_cursor() as cursor:
            cursor.execute(_STAMP_SQL, [timezone.now(), [r[0] for r in rows]])
        return len(rows)


class Relay:
    """The relay process loop, with graceful SIGTERM handling (finish the batch, flush, exit)."""

    def __init__(
        self,
        *,
        batch_size: int,
        poll_interval: float,
        listen: bool = False,
        listen_poll_interval: float = 1.0,
    ) -> None:
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.listen = listen
        self.listen_poll_interval = listen_poll_interval
        self.stopping = threading.Event()
        self._listening_on: object | None = None  # the psycopg connection that holds our LISTEN

    def _wait_for_commit(self, seconds: float) -> None:
        """Until an outbox insert commits (its notification), stop is asked, or ``seconds`` pass.

        On a connection that does not LISTEN yet (the first wait, or Django made a new one after an error) it
        LISTENs and returns at once: a commit before the LISTEN notified no one, so the caller probes again.
        """
        raw = connection.connection
        try:
            if raw is None or raw is not self._listening_on:
                connection.ensure_connection()
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self._listening_on = connection.connection
                pid = getattr(getattr(self._listening_on, "info", None), "backend_pid", None)
                logger.info("relay listening", extra={"channel": NOTIFY_CHANNEL, "backend_pid": pid})
                return
            assert isinstance(raw, psycopg.Connection)
            deadline = time.monotonic() + seconds
            while not self.stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                # Every notification already received is yielded at once (one per committed transaction).
                if any(True for _ in raw.notifies(timeout=min(left, _NOTIFY_WAIT_SLICE_S), stop_after=1)):
                    return
        except (psycopg.Error, DatabaseError):
            # The connection broke while waiting: the next batch reconnects (or fails and backs off).
            logger.warning("relay lost its notification connection", exc_info=True)
            connection.close()
            self._listening_on = None

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        logger.info("relay stopping", extra={"signal": signum})
        self.stopping.set()

    def run(self, *, max_batches: int | None = None) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        producer = kafka.producer_create()
        published = 0
        batches = 0
        backoff = self.poll_interval
        heartbeat = Heartbeat(heartbeat_path("relay"))
        while not self.stopping.is_set():
            heartbeat.beat()
            try:
                count = relay_publish_batch(producer, batch_size=self.batch_size)
                backoff = self.poll_interval
                failed = False
            except Exception:
                # Kafka or PostgreSQL trouble: nothing was stamped, so nothing is lost. Back off and retry.
                logger.exception("relay batch failed")
                connection.close()
                count = 0
                backoff = min(max(backoff * 2, 0.1), 5.0)
                failed = True
            published += count
            batches += 1
            if max_batches is not None and batches >= max_batches:
                break
            if count < self.batch_size:
                if self.listen and not failed:  # caught up
                    self._wait_for_commit(self.listen_poll_interval)
                else:
                    self.stopping.wait(backoff)
        producer.flush(10)
        return published


def relay_drain(*, timeout: float = 30.0, batch_size: int = 500) -> int:
    """Publish everything pending now (tests, management commands). Returns the number published."""
    producer = kafka.producer_create()
    deadline = time.monotonic() + timeout
    total = 0
    while time.monotonic() < deadline:
        count = relay_publish_batch(producer, batch_size=batch_size)
        total += count
        if count == 0 and not StoredEvent.objects.filter(published_at__isnull=True).exists():
            return total
        if count == 0:
            time.sleep(0.05)
    raise TimeoutError("outbox not drained in time")
