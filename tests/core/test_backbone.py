"""The event backbone against the real broker: outbox → relay → Kafka → consumer/bridge → effect exactly once.

Faults are real: a relay process killed (exit 137) after Kafka has the batch but before it is stamped, a
consumer that dies after its effect but before its offset commit, a Celery worker fed duplicates, and the
outbox commit-order gap forced with two connections.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from confluent_kafka import TopicPartition
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.core import events, kafka
from apps.core.consumers import (
    ConsumerRunner,
    ConsumerSpec,
    MessageMeta,
    consumer_register,
    consumer_unregister,
)
from apps.core.models import InboxRecord, StoredEvent
from apps.core.outbox import event_record
from apps.core.relay import _PENDING_SQL, relay_drain, relay_publish_batch
from tests.netlink import TcpLink
from tests.procs import process_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]


def _echo_handler(echo_topic: str) -> Callable[[events.EventEnvelope, MessageMeta], None]:
    """A consumer whose effect is itself an event (a process manager), caused by the one consumed."""

    def handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        event_record(
            topic=echo_topic,
            key=envelope.aggregate_id,
            event_type="test.EchoRecorded",
            aggregate_type="echo",
            aggregate_id=envelope.aggregate_id,
            payload={"of": str(envelope.event_id), "amount": envelope.payload["amount"]},
            causation_id=envelope.event_id,
            correlation_id=envelope.correlation_id,
        )

    return handle


def _record(topic: str, n: int, aggregate: str = "acct-1") -> list[events.EventEnvelope]:
    with transaction.atomic():
        return [
            event_record(
                topic=topic,
                key=aggregate,
                event_type="test.MoneyMoved",
                aggregate_type="test",
                aggregate_id=aggregate,
                payload={"amount": f"{i}.01"},
                correlation_id=uuid.uuid4(),
            )
            for i in range(n)
        ]


def _echo_causes() -> list[uuid.UUID]:
    return list(
        StoredEvent.objects.filter(event_type="test.EchoRecorded", causation_id__isnull=False)
        .order_by("id")
        .values_list("causation_id", flat=True)  # type: ignore[arg-type]
    )


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


def test_publish_consume_effect_exactly_once(fresh_topic: Any, spec_factory: Any) -> None:
    source, echo = fresh_topic(partitions=3), fresh_topic()
    spec = spec_factory(topics=(source,), handler=_echo_handler(echo))
    sent = _record(source, 5)

    assert relay_drain() == 5
    assert StoredEvent.objects.filter(published_at__isnull=True).count() == 0
    assert ConsumerRunner(spec).run(max_messages=5, idle_timeout=20) == 5

    assert sorted(_echo_causes()) == sorted(e.event_id for e in sent)
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 5
    # Once more from the committed offsets: nothing new arrives, nothing changes.
    assert ConsumerRunner(spec).run(idle_timeout=3) == 0
    assert len(_echo_causes()) == 5


class _CrashBeforeCommit(Exception):
    pass


class _RunnerThatDiesBeforeCommit(ConsumerRunner):
    """A consumer process that dies after its effects committed but before its offsets did."""

    def _commit(self, consumer: Any, offsets: Any) -> None:
        raise _CrashBeforeCommit


def test_redelivery_after_consumer_dies_before_offset_commit(fresh_topic: Any, spec_factory: Any) -> None:
    source, echo = fresh_topic(), fresh_topic()
    spec = spec_factory(topics=(source,), handler=_echo_handler(echo))
    sent = _record(source, 3)
    relay_drain()

    # First run: every effect commits, then the process "dies" before committing offsets.
    with pytest.raises(_CrashBeforeCommit):
        _RunnerThatDiesBeforeCommit(spec).run(max_messages=3, idle_timeout=20)
    assert len(_echo_causes()) == 3

    # Kafka redelivers all three to the next member of the group; the inbox makes them no-ops.
    assert ConsumerRunner(spec).run(max_messages=3, idle_timeout=20) == 3
    assert sorted(_echo_causes()) == sorted(e.event_id for e in sent)
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 3


def test_relay_crash_between_publish_and_stamp_republishes_and_consumers_apply_once(
    fresh_topic: Any, spec_factory: Any
) -> None:
    source, echo = fresh_topic(), fresh_topic()
    spec = spec_factory(topics=(source,), handler=_echo_handler(echo))
    sent = _record(source, 4)

    # A real relay process publishes the batch to Kafka, then dies before stamping published_at.
    proc = subprocess.run(
        [sys.executable, "manage.py", "run_outbox_relay", "--max-batches", "1"],
        cwd=ROOT,
        env={**process_env(), "OUTBOX_RELAY_CRASH_AFTER_PUBLISH": "1"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 137, proc.stderr.decode()[-2000:]
    assert StoredEvent.objects.filter(topic=source, published_at__isnull=True).count() == 4

    # The restarted relay publishes the same four again: Kafka now holds each event twice.
    assert relay_drain() == 4
    assert ConsumerRunner(spec).run(max_messages=8, idle_timeout=20) == 8
    assert sorted(_echo_causes()) == sorted(e.event_id for e in sent)
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 4


def test_outbox_commit_order_gap_is_not_skipped(fresh_topic: Any) -> None:
    """A row whose id was taken first but committed last is still published (no id watermark)."""
    topic = fresh_topic()
    first_allocated = threading.Event()
    release_first = threading.Event()
    ids: dict[str, int] = {}

    def slow_writer() -> None:
        try:
            with transaction.atomic():
                env = event_record(
                    topic=topic,
                    key="a",
                    event_type="t.Slow",
                    aggregate_type="gap",
                    aggregate_id="slow",
                    payload={},
                )
                ids["slow"] = StoredEvent.objects.get(event_id=env.event_id).id
                first_allocated.set()
                assert release_first.wait(30)
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert first_allocated.wait(30)
    fast = _record(topic, 1, aggregate="fast")[0]
    ids["fast"] = StoredEvent.objects.get(event_id=fast.event_id).id
    assert ids["slow"] < ids["fast"]

    producer = kafka.producer_create()
    assert relay_publish_batch(producer, batch_size=100) == 1  # only the committed, later id
    release_first.set()
    thread.join(30)
    assert relay_publish_batch(producer, batch_size=100) == 1  # the earlier id, committed later
    assert StoredEvent.objects.filter(topic=topic, published_at__isnull=True).count() == 0

    seen: list[str] = []
    consumer = kafka.consumer_create(group_id=f"gap-{uuid.uuid4().hex}")
    consumer.subscribe([kafka.topic_name(topic)])
    try:
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                seen.append(events.decode(msg.value() or b"").aggregate_id)
            if len(seen) == 2:
                break
    finally:
        consumer.close()
    assert sorted(seen) == ["fast", "slow"]


def test_an_idle_relay_poll_is_one_statement_and_a_pending_event_is_still_published(fresh_topic: Any) -> None:
    """The relay polls every 10 ms: with nothing pending a poll is one indexed read, no transaction or lock."""
    topic = fresh_topic()
    producer = kafka.producer_create()
    relay_drain()  # nothing pending from here on

    with CaptureQueriesContext(connection) as idle:
        assert relay_publish_batch(producer, batch_size=100) == 0
    assert [q["sql"] for q in idle.captured_queries] == [_PENDING_SQL]

    sent = _record(topic, 2)
    assert relay_publish_batch(producer, batch_size=100) == 2
    assert (
        StoredEvent.objects.filter(event_id__in=[e.event_id for e in sent], published_at__isnull=True).count()
        == 0
    )


def test_a_consumer_beats_while_it_waits_out_an_outage(
    fresh_topic: Any, spec_factory: Any, tmp_path: Path, settings: Any
) -> None:
    # Waiting for the database to come back is the loop working: its heartbeat must not go stale meanwhile, or
    # the health check would replace every consumer during a long database outage.
    settings.PROCESS_HEARTBEAT_DIR = str(tmp_path)
    source = fresh_topic()
    seen: list[int] = []  # the heartbeat file's mtime at each attempt

    def handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        seen.append((tmp_path / f"brokerage-consumer-{spec.name}.alive").stat().st_mtime_ns)
        if len(seen) <= 5:  # 0.2 + 0.4 + 0.6 + 0.8 + 1.0 s of backoff: past the 1 s between beats
            raise OperationalError("the database is restarting")

    spec = spec_factory(topics=(source,), handler=handle)
    _record(source, 1)
    assert relay_drain() == 1
    assert ConsumerRunner(spec).run(max_messages=1, idle_timeout=20) == 1
    assert len(seen) == 6
    assert seen[-1] > seen[0], "no heartbeat while the handler's outage was retried"
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 1


def test_a_consumer_commits_its_offsets_once_the_restarted_broker_answers(
    spec_factory: Any, private_kafka: Any
) -> None:
    # Seen under chaos: every consumer exited with "Commit failed: Local: Waiting for coordinator" when its broker
    # restarted under it, and was restarted, its group rebalancing twice. The broker goes down here right after
    # the first effect commits and before its offset does; the consumer must wait and commit the same offset.
    source = "test.commit-outage"
    kafka.topics_ensure([kafka.TopicSpec(name=source, partitions=1, config={})])
    effects: list[uuid.UUID] = []
    restarted = threading.Event()
    restarters: list[threading.Thread] = []

    def restart() -> None:
        private_kafka.start()
        restarted.set()

    def handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        effects.append(envelope.event_id)
        if len(effects) == 1:
            private_kafka.kill9()
            restarters.append(threading.Thread(target=restart, daemon=True))
            restarters[0].start()

    spec = spec_factory(topics=(source,), handler=handle)
    sent = _record(source, 2)
    assert relay_drain() == 2
    # Before: KafkaException "Waiting for coordinator" out of run(), the process's exit.
    assert ConsumerRunner(spec).run(max_messages=2, idle_timeout=60) == 2
    # The consumer may be done before services.sh has seen the broker answer (CI once): wait for the restart, which
    # must have succeeded (a failed start leaves the event unset).
    restarters[0].join(timeout=200)
    assert restarted.is_set()
    # The restarted broker may have dropped the member, leaving the batch uncommitted: the next run reads it again
    # and applies nothing twice; either way the group's offset ends at the topic's end.
    if _committed_offset(spec.group, source) != 2:
        assert ConsumerRunner(spec).run(max_messages=2, idle_timeout=60) == 2
    assert effects == [e.event_id for e in sent]
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 2
    assert _committed_offset(spec.group, source) == 2


def _committed_offset(group: str, topic: str) -> int:
    consumer = kafka.consumer_create(group_id=group)
    try:
        return int(consumer.committed([TopicPartition(kafka.topic_name(topic), 0)], timeout=10)[0].offset)
    finally:
        consumer.close()


def test_undecodable_message_goes_to_the_dead_letter_topic(fresh_topic: Any, spec_factory: Any) -> None:
    source, echo = fresh_topic(), fresh_topic()
    spec = spec_factory(topics=(source,), handler=_echo_handler(echo))
    producer = kafka.producer_create()
    producer.produce(kafka.topic_name(source), key=b"k", value=b'{"not": "an envelope"}')
    producer.flush(10)

    assert ConsumerRunner(spec).run(max_messages=1, idle_timeout=20) == 1
    assert len(_echo_causes()) == 0
    consumer = kafka.consumer_create(group_id=f"dlq-{uuid.uuid4().hex}")
    consumer.subscribe([kafka.topic_name(spec.dlq)])
    try:
        msg = None
        for _ in range(40):
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                break
        assert msg is not None
        assert msg.value() == b'{"not": "an envelope"}'
        headers = dict(msg.headers() or [])
        assert headers["dlq_consumer"] == spec.name.encode()
        reason = headers["dlq_reason"]
        assert isinstance(reason, bytes)
        assert reason.startswith(b"undecodable")
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("transaction_batch", "tasks_per_run"),
    [pytest.param(1, 3, id="one-task-per-event"), pytest.param(2, 2, id="one-task-per-chunk")],
)
def test_kafka_to_celery_bridge_applies_once_despite_duplicate_enqueues(
    fresh_topic: Any, spec_factory: Any, transaction_batch: int, tasks_per_run: int
) -> None:
    from celery.contrib.testing.worker import start_worker

    from brokerage.celery import app

    source, echo = fresh_topic(), fresh_topic()
    spec = spec_factory(
        topics=(source,), handler=_echo_handler(echo), mode="celery", transaction_batch=transaction_batch
    )
    app.control.purge()  # leftovers of an earlier, interrupted run must not count
    sent = _record(source, 3)
    relay_drain()

    # The bridge enqueues all three, then dies before committing offsets ...
    with pytest.raises(_CrashBeforeCommit):
        _RunnerThatDiesBeforeCommit(spec).run(max_messages=3, idle_timeout=20)
    # ... so the restarted bridge enqueues the same three again.
    assert ConsumerRunner(spec).run(max_messages=3, idle_timeout=20) == 3

    # A real worker on the real Redis broker drains both runs' tasks; the effect happens three times, not six.
    import redis

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert broker.llen("default") == 2 * tasks_per_run
    with start_worker(app, perform_ping_check=False, queues=["default"], pool="solo", shutdown_timeout=30):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (broker.llen("default") or broker.hlen("unacked")):
            time.sleep(0.2)
    assert broker.llen("default") == 0
    assert sorted(_echo_causes()) == sorted(e.event_id for e in sent)
    assert InboxRecord.objects.filter(consumer=spec.name).count() == 3


def _broker_use(app: Any, url: str | None) -> None:
    """Point the in-process Celery app's publishing at ``url`` (None: back to the configured broker).

    Celery reads ``CELERY_BROKER_URL`` from the environment before its own setting (the Makefile sets it), so both
    change; the connection and producer pools are dropped, not closed (kombu keeps one pool per broker URL and
    hands the same one out again), and rebuilt on the next publish.
    """
    if url is None:
        os.environ.pop("CELERY_BROKER_URL", None)
    else:
        os.environ["CELERY_BROKER_URL"] = url
    app.conf.broker_url = url or settings.CELERY_BROKER_URL
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_link() -> Iterator[TcpLink]:
    """The Celery broker reached through a link the test cuts and restores (the real Redis behind it)."""
    from brokerage.celery import app

    real = urlsplit(settings.CELERY_BROKER_URL)
    link = TcpLink((real.hostname or "127.0.0.1", real.port or 6379))
    env_before = os.environ.get("CELERY_BROKER_URL")
    _broker_use(app, f"redis://127.0.0.1:{link.port}{real.path}")
    try:
        yield link
    finally:
        _broker_use(app, env_before)
        link.cut()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def consumer_log() -> Iterator[_Records]:
    """The consumer runner's own log records, read from its logger itself: an in-process Celery worker started by
    an earlier test reconfigures logging (root at ERROR, earlier loggers disabled)."""
    handler, log = _Records(), logging.getLogger("apps.core.consumers")
    disabled, level = log.disabled, log.level
    log.disabled = False
    log.setLevel(logging.DEBUG)
    log.addHandler(handler)
    yield handler
    log.removeHandler(handler)
    log.disabled = disabled
    log.setLevel(level)


def test_the_bridge_waits_out_a_broker_outage_and_dead_letters_nothing(
    fresh_topic: Any, spec_factory: Any, broker_link: TcpLink, consumer_log: _Records
) -> None:
    import redis

    source, echo = fresh_topic(), fresh_topic()
    spec = spec_factory(topics=(source,), handler=_echo_handler(echo), mode="celery")
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)  # the real broker, not through the link
    broker.delete("default")
    [sent] = _record(source, 1)
    relay_drain()

    # The broker is unreachable: the bridge retries past the attempts after which a failing handler is
    # dead-lettered, and goes on retrying.
    runner = ConsumerRunner(spec)
    processed: list[int] = []
    thread = threading.Thread(target=lambda: processed.append(runner.run(max_messages=1, idle_timeout=30)))
    thread.start()
    deadline = time.monotonic() + 90
    while sum("transient" in m for m in consumer_log.messages) <= spec.max_attempts:
        assert thread.is_alive(), (
            f"the bridge gave up on the event during the outage: processed {processed}, "
            f"queued {broker.llen('default')}, log {consumer_log.messages[-3:]}"
        )
        assert time.monotonic() < deadline, "the bridge never retried"
        time.sleep(0.1)
    assert thread.is_alive()

    # The broker is back: the event is enqueued once, under its own task id, and nothing was dead-lettered.
    broker_link.restore()
    thread.join(60)
    assert not thread.is_alive()
    assert processed == [1]
    queued = [json.loads(m)["headers"]["id"] for m in broker.lrange("default", 0, -1)]
    assert queued == [f"{spec.name}:{sent.event_id}"]
    assert not any("dead-letter" in m for m in consumer_log.messages)
    broker.delete("default")
