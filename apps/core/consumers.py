"""One Kafka consumer registry and the one loop that runs any registered consumer.

A ``ConsumerSpec`` names the topics, the handler, the dead-letter topic and how the effect is applied:
- ``inline``: the consumer process applies the handler itself;
- ``celery``: the Kafka -> Celery bridge. The consumer enqueues a Celery task (id ``<consumer>:<event_id>``) and the
  worker applies the handler. Celery workers are fed only this way, never by the web tier.

Either way the effect runs through ``inbox_apply``: one transaction that inserts ``(consumer, event_id)`` into the
inbox and runs the handler, so a redelivered event (Kafka rebalance, relay republish, Celery redelivery after a
worker loss) changes nothing. Throughput options (both keep that guarantee):
- ``event_types``: the only event types the handler has an effect for. Other messages are acknowledged without a
  transaction, an inbox row or a Celery task (the handler would have done nothing with them).
- ``transaction_batch``: up to that many consecutive messages of one consume batch are applied in ONE durable
  transaction (``inbox_apply_many``; in ``celery`` mode the bridge enqueues ONE task per chunk,
  ``apps.core.tasks.consumer_events_apply``, so the per-task cost of Celery is paid once per chunk): one bulk inbox
  insert (``ON CONFLICT DO NOTHING RETURNING``) decides which events are new, the handler runs for each new one in
  message order, and inbox rows and effects commit together. If anything in the chunk fails, the whole chunk rolls
  back and is applied again one message at a time (``inbox_apply``, with the usual retries and dead-lettering), so a
  batch never half-applies.
  ``chunk_handler`` (optional, with ``transaction_batch``): called ONCE per chunk, inside that transaction, with
  the chunk's new events in message order, instead of ``handler`` on each; it must have exactly the effect of
  ``handler`` called on each in turn (so set-based handlers can load and write a chunk's rows at once). The
  per-message fallback keeps using ``handler``.
Offsets are committed only after the effect's transaction (inline) or after the
task is safely enqueued (celery). Undecodable messages, and handlers that keep failing on a message, go to the
dead-letter topic with the error in a header; transient database errors are retried, never dead-lettered.

Test hook (fault injection, tests/core/test_consumer_crash.py): ``CONSUMER_CRASH_AFTER_COMMIT=<n>``, read once when
the runner is created, makes an inline runner ``os._exit(137)`` (as a SIGKILL would) right after its n-th effect
transaction committed and BEFORE that batch's offsets are committed. Unset (production), it costs one ``None``
check per transaction.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal

import msgspec
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from django.db import IntegrityError, OperationalError, connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from apps.core import events, kafka
from apps.core.models import InboxRecord
from apps.core.runtime import Heartbeat, heartbeat_path
from apps.core.sql import hot_cursor

logger = logging.getLogger(__name__)
# Outages, not poison: the database (Django's error) or the Celery broker (kombu's, raised by ``apply_async`` once
# its publish retries are spent) is down or restarting. Retried until it is back; never dead-lettered.
TRANSIENT_ERRORS = (OperationalError, BrokerOperationalError)
# Offset-commit errors that mean "the coordinator cannot be reached just now": the commit is tried again. (A
# consumer's commit reports a bare error code, without librdkafka's retriable flag.)
COMMIT_RETRY_CODES = frozenset(
    {
        KafkaError._WAIT_COORD,
        KafkaError._TRANSPORT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
    }
)
# Offset-commit errors after which this member must rejoin its group before it can commit anything.
COMMIT_MEMBERSHIP_LOST_CODES = frozenset(
    {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS}
)


@dataclass(frozen=True, slots=True)
class MessageMeta:
    topic: str
    partition: int
    offset: int
    key: str | None


Handler = Callable[[events.EventEnvelope, MessageMeta], None]
ChunkHandler = Callable[[Sequence[tuple[events.EventEnvelope, MessageMeta]]], None]


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    name: str
    topics: tuple[str, ...]
    handler: Handler
    mode: Literal["inline", "celery"] = "inline"
    group_id: str | None = None
    dead_letter_topic: str | None = None
    max_attempts: int = 5
    batch_size: int = 200
    options: dict[str, Any] = field(default_factory=dict)
    event_types: frozenset[str] | None = None
    transaction_batch: int = 1
    chunk_handler: ChunkHandler | None = None

    @property
    def group(self) -> str:
        return self.group_id or self.name

    @property
    def dlq(self) -> str:
        return self.dead_letter_topic or f"{self.topics[0]}.dlq"


_REGISTRY: dict[str, ConsumerSpec] = {}


def consumer_register(spec: ConsumerSpec) -> ConsumerSpec:
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"consumer {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def consumer_unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def consumer_get(name: str) -> ConsumerSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no consumer named {name!r}; registered: {sorted(_REGISTRY)}") from None


def consumers_all() -> dict[str, ConsumerSpec]:
    return dict(_REGISTRY)


def inbox_apply(spec: ConsumerSpec, envelope: events.EventEnvelope, meta: MessageMeta) -> bool:
    """Apply the handler exactly once per (consumer, event_id). Returns False when it was already applied."""
    with transaction.atomic(durable=True):
        try:
            with transaction.atomic():
                InboxRecord.objects.create(
                    consumer=spec.name,
                    event_id=envelope.event_id,
                    topic=meta.topic,
                    partition=meta.partition,
                    offset=meta.offset,
                )
        except IntegrityError:
            return False
        spec.handler(envelope, meta)
    return True


def inbox_apply_many(spec: ConsumerSpec, items: Sequence[tuple[events.EventEnvelope, MessageMeta]]) -> int:
    """Apply a chunk of events in ONE transaction, each exactly once per (consumer, event_id).

    Returns how many were applied (new). A duplicate, stored or earlier in the chunk, is skipped. The new events
    go to ``spec.chunk_handler`` at once when the spec has one, else to ``spec.handler`` one by one. Any
    exception rolls back the whole chunk (inbox rows included) and propagates.
    """
    if not items:
        return 0
    with transaction.atomic(durable=True):
        with hot_cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {InboxRecord._meta.db_table} "  # noqa: S608 - table name from the model, not input
                '(consumer, event_id, topic, partition, "offset", applied_at) '
                "SELECT %s, u.e, u.t, u.p, u.o, %s "
                "FROM unnest(%s::uuid[], %s::text[], %s::int[], %s::bigint[]) WITH ORDINALITY AS u(e, t, p, o, n) "
                "ORDER BY u.n "
                "ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id",
                [
                    spec.name,
                    timezone.now(),
                    [env.event_id for env, _ in items],
                    [meta.topic for _, meta in items],
                    [meta.partition for _, meta in items],
                    [meta.offset for _, meta in items],
                ],
            )
            fresh = {row[0] for row in cursor.fetchall()}
        new: list[tuple[events.EventEnvelope, MessageMeta]] = []
        for envelope, meta in items:
            if envelope.event_id in fresh:
                fresh.discard(envelope.event_id)  # the same event twice in one chunk applies once
                new.append((envelope, meta))
        if spec.chunk_handler is not None:
            if new:
                spec.chunk_handler(new)
        else:
            for envelope, meta in new:
                spec.handler(envelope, meta)
    return len(new)


def _text(raw: str | bytes | None) -> str | None:
    if raw is None:
        return None
    return raw.decode(errors="replace") if isinstance(raw, bytes) else raw


class ConsumerRunner:
    """Runs one registered consumer until SIGTERM/SIGINT (or ``max_messages`` for tests)."""

    def __init__(self, spec: ConsumerSpec) -> None:
        self.spec = spec
        self.stopping = threading.Event()
        self._dlq_producer: Producer | None = None
        crash_after = os.environ.get("CONSUMER_CRASH_AFTER_COMMIT")  # test hook, see the module docstring
        self._crash_after_commit: int | None = int(crash_after) if crash_after else None
        self._effects_committed = 0
        self._heartbeat = Heartbeat(heartbeat_path(f"consumer-{spec.name}"))

    def _effect_committed(self) -> None:
        """Counts committed effect transactions for the crash test hook; does nothing when it is unset."""
        if self._crash_after_commit is None:
            return
        self._effects_committed += 1
        if self._effects_committed >= self._crash_after_commit:
            logger.error("CONSUMER_CRASH_AFTER_COMMIT: exiting before the offset commit")
            os._exit(137)  # no cleanup, no offset commit, no group leave: a killed process

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        logger.info("consumer stopping", extra={"consumer": self.spec.name, "signal": signum})
        self.stopping.set()

    def _dead_letter(self, msg: Message, reason: str) -> None:
        if self._dlq_producer is None:
            self._dlq_producer = kafka.producer_create()
        headers: list[tuple[str, str | bytes | None]] = list(msg.headers() or [])  # type: ignore[arg-type]
        headers += [
            ("dlq_reason", reason[:1000].encode()),
            ("dlq_source", f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()),
            ("dlq_consumer", self.spec.name.encode()),
        ]
        self._dlq_producer.produce(
            kafka.topic_name(self.spec.dlq), key=msg.key(), value=msg.value(), headers=headers
        )
        if self._dlq_producer.flush(30):
            raise RuntimeError("dead-letter publish did not complete")
        logger.error("message dead-lettered", extra={"consumer": self.spec.name, "reason": reason[:200]})

    def _apply(self, envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        if self.spec.mode == "celery":
            from apps.core.tasks import consumer_event_apply

            consumer_event_apply.apply_async(
                args=[
                    self.spec.name,
                    events.encode(envelope).decode(),
                    meta.topic,
                    meta.partition,
                    meta.offset,
                ],
                task_id=f"{self.spec.name}:{envelope.event_id}",
            )
        else:
            inbox_apply(self.spec, envelope, meta)
            self._effect_committed()

    def _decode(self, msg: Message) -> tuple[events.EventEnvelope, MessageMeta] | None:
        """The message's envelope and metadata; None when it was dead-lettered or is not for this handler."""
        meta = MessageMeta(
            topic=kafka.logical_topic_name(msg.topic() or ""),
            partition=msg.partition() or 0,
            offset=msg.offset() or 0,
            key=_text(msg.key()),
        )
        try:
            envelope = events.decode(msg.value() or b"")
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
            self._dead_letter(msg, f"undecodable: {exc}")
            return None
        if self.spec.event_types is not None and envelope.event_type not in self.spec.event_types:
            return None  # the handler has no effect for it: no transaction, inbox row or task
        return envelope, meta

    def _process(self, msg: Message) -> None:
        item = self._decode(msg)
        if item is not None:
            self._apply_with_retry(msg, *item)

    def _apply_with_retry(self, msg: Message, envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        attempt = 0
        while True:
            attempt += 1
            self._heartbeat.beat()  # waiting out an outage is the loop working, not stuck
            try:
                self._apply(envelope, meta)
                return
            except TRANSIENT_ERRORS:
                # The database or the Celery broker is down or restarting: never dead-letter for that, wait and
                # retry (a bridge that dead-lettered on a broker outage lost every event of it from the books).
                logger.warning("transient infrastructure error; retrying", extra={"consumer": self.spec.name})
                connection.close()
                if self.stopping.wait(min(0.2 * attempt, 5.0)):
                    raise
            except Exception as exc:
                if attempt >= self.spec.max_attempts:
                    self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
                    return
                logger.warning("handler failed; retrying", exc_info=True, extra={"consumer": self.spec.name})
                time.sleep(min(0.05 * 2**attempt, 2.0))

    def _apply_chunk(self, chunk: list[tuple[Message, events.EventEnvelope, MessageMeta]]) -> None:
        """One transaction (celery: one task) for the chunk; on any failure, the chunk again message by message."""
        try:
            if self.spec.mode == "celery":
                from apps.core.tasks import consumer_events_apply

                first = chunk[0][1]
                consumer_events_apply.apply_async(
                    args=[
                        self.spec.name,
                        [
                            [events.encode(envelope).decode(), meta.topic, meta.partition, meta.offset]
                            for _msg, envelope, meta in chunk
                        ],
                    ],
                    task_id=f"{self.spec.name}:{first.event_id}+{len(chunk) - 1}",
                )
                return
            inbox_apply_many(self.spec, [(envelope, meta) for _msg, envelope, meta in chunk])
            self._effect_committed()
            return
        except TRANSIENT_ERRORS:
            connection.close()
        except Exception:
            logger.warning("chunk failed; applying it one message at a time", exc_info=True)
        for msg, envelope, meta in chunk:
            self._apply_with_retry(msg, envelope, meta)

    def _commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        """Commit only after every effect of the batch has committed (synchronously, so a crash re-reads).

        While the group coordinator is unreachable (a broker restarting: ``_WAIT_COORD``, seen under chaos) the
        same offsets are committed again after a pause, as the relay and the engine wait out an outage: before,
        the process exited with a traceback on every broker restart and its group rebalanced twice. A stop
        request ends the wait without the commit: the batch is read again by the next owner, and the inbox makes
        that a no-op.
        """
        attempt = 0
        while True:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                error = kafka.kafka_error(exc)
                if error is not None and error.code() in COMMIT_MEMBERSHIP_LOST_CODES:
                    # The coordinator no longer knows this member (a restarted broker can drop the group's
                    # members): the commit cannot succeed until the consumer rejoins, which its next poll does.
                    # The batch's effects are committed; whoever owns the partition next reads it again from
                    # the last committed offset, and the inbox makes that a no-op.
                    logger.warning(
                        "offsets left uncommitted: group membership lost; the batch will be read again",
                        extra={"consumer": self.spec.name, "error": str(error)},
                    )
                    return
                if error is None or not (error.retriable() or error.code() in COMMIT_RETRY_CODES):
                    raise
                if self.stopping.is_set():
                    logger.warning("offsets left uncommitted at stop", extra={"consumer": self.spec.name})
                    return
                attempt += 1
                logger.warning(
                    "offset commit failed, retrying", extra={"consumer": self.spec.name, "error": str(error)}
                )
            self._heartbeat.beat()
            self.stopping.wait(min(0.1 * 2**attempt, 2.0))

    def run(self, *, max_messages: int | None = None, idle_timeout: float | None = None) -> int:
        """Consume until stopped. Returns the number of messages processed."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._stop)
            signal.signal(signal.SIGINT, self._stop)
        consumer: Consumer = kafka.consumer_create(group_id=self.spec.group, **self.spec.options)
        consumer.subscribe([kafka.topic_name(t) for t in self.spec.topics])
        processed = 0
        chunked = self.spec.transaction_batch > 1
        idle_since = time.monotonic()
        try:
            while not self.stopping.is_set():
                self._heartbeat.beat()
                batch = kafka.consume_ready(consumer, self.spec.batch_size, 0.5)
                if not batch:
                    if idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                        break
                    continue
                idle_since = time.monotonic()
                offsets: dict[tuple[str, int], int] = {}
                chunk: list[tuple[Message, events.EventEnvelope, MessageMeta]] = []
                for msg in batch:
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            logger.error("consume error", extra={"error": str(err)})
                        continue
                    offsets[(msg.topic() or "", msg.partition() or 0)] = (msg.offset() or 0) + 1
                    processed += 1
                    item = self._decode(msg)
                    if item is None:
                        continue
                    if not chunked:
                        self._apply_with_retry(msg, *item)
                        continue
                    chunk.append((msg, *item))
                    if len(chunk) >= self.spec.transaction_batch:
                        self._apply_chunk(chunk)
                        chunk = []
                if chunk:
                    self._apply_chunk(chunk)
                if offsets:
                    self._commit(consumer, [TopicPartition(t, p, o) for (t, p), o in offsets.items()])
                if max_messages is not None and processed >= max_messages:
                    break
        finally:
            consumer.close()
            if self._dlq_producer is not None:
                self._dlq_producer.flush(10)
        return processed
