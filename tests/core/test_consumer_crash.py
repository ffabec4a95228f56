"""A Kafka consumer process killed between its effect's commit and its offset commit loses and doubles nothing.

Real processes, real broker and database: ``manage.py run_consumer`` runs in a subprocess with the test hook
``CONSUMER_CRASH_AFTER_COMMIT=1`` (apps/core/consumers.py), so it exits 137 right after its first effect
transaction committed and before any offset commit. The restarted consumer gets the same records again from the
group's (absent) committed offset; the inbox turns the already-applied ones into no-ops, so every event has
exactly one effect and one inbox row, and the group's committed offset reaches the end of the partition.

The consumer is a test-only one (the registry is per process, so a small driver registers it in the subprocess,
then calls the real command): its effect, recording an event caused by the one consumed, is NOT idempotent by
itself, so a count of one per event proves the inbox did the deduplication.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from django.conf import settings
from django.db import transaction

from apps.core import events, kafka
from apps.core.consumers import MessageMeta
from apps.core.models import InboxRecord, StoredEvent
from apps.core.outbox import event_record
from apps.core.relay import relay_drain

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 4
ECHO_TYPE = "test.CrashEchoRecorded"

# Registers the test consumer in the subprocess, then runs the real management command.
_DRIVER = """
import sys
import django
django.setup()
from django.core.management import call_command
from apps.core.consumers import ConsumerSpec, consumer_register
from tests.core.test_consumer_crash import echo_handler
name, source, echo, batch, *args = sys.argv[1:]
consumer_register(ConsumerSpec(
    name=name, topics=(source,), handler=echo_handler(echo), transaction_batch=int(batch),
    options={"session.timeout.ms": 6000},  # the killed member leaves the group after 6 s, not 10
))
call_command("run_consumer", name, *args)
"""


def echo_handler(echo_topic: str) -> Callable[[events.EventEnvelope, MessageMeta], None]:
    """An effect that is not idempotent by itself: every call records one more event."""

    def handle(envelope: events.EventEnvelope, meta: MessageMeta) -> None:
        event_record(
            topic=echo_topic,
            key=envelope.aggregate_id,
            event_type=ECHO_TYPE,
            aggregate_type="echo",
            aggregate_id=envelope.aggregate_id,
            payload={"of": str(envelope.event_id)},
            causation_id=envelope.event_id,
        )

    return handle


def _run_consumer(name: str, source: str, echo: str, batch: int, *args: str, crash_after: int | None) -> Any:
    db = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "brokerage.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "KAFKA_TOPIC_PREFIX": settings.KAFKA["TOPIC_PREFIX"],
    }
    env.pop("CONSUMER_CRASH_AFTER_COMMIT", None)
    if crash_after is not None:
        env["CONSUMER_CRASH_AFTER_COMMIT"] = str(crash_after)
    return subprocess.run(
        [sys.executable, "-c", _DRIVER, name, source, echo, str(batch), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


def _echo_causes(echo: str) -> list[uuid.UUID]:
    return sorted(
        StoredEvent.objects.filter(topic=echo, event_type=ECHO_TYPE).values_list("causation_id", flat=True)  # type: ignore[arg-type]
    )


def _inbox_offsets(name: str) -> list[int]:
    return sorted(InboxRecord.objects.filter(consumer=name).values_list("offset", flat=True))


def _committed_offset(name: str, source: str) -> int:
    consumer = kafka.consumer_create(group_id=name)
    try:
        [tp] = consumer.committed([TopicPartition(kafka.topic_name(source), 0)], timeout=20)
        return int(tp.offset)
    finally:
        consumer.close()


@pytest.mark.parametrize(
    "transaction_batch",
    [pytest.param(1, id="one-transaction-per-message"), pytest.param(100, id="chunked-transactions")],
)
def test_consumer_killed_between_effect_and_offset_commit_redelivers_and_applies_once(
    fresh_topic: Any, transaction_batch: int
) -> None:
    source, echo = fresh_topic(), fresh_topic()
    name = f"test-crash-{uuid.uuid4().hex[:8]}"
    with transaction.atomic():
        sent = [
            event_record(
                topic=source,
                key="acct-1",
                event_type="test.MoneyMoved",
                aggregate_type="test",
                aggregate_id="acct-1",
                payload={"n": i},
            )
            for i in range(EVENTS)
        ]
    assert relay_drain() == EVENTS

    # The first process commits its first effect transaction, then dies before committing any offset.
    crashed = _run_consumer(name, source, echo, transaction_batch, "--idle-timeout", "20", crash_after=1)
    assert crashed.returncode == 137, crashed.stderr.decode()[-2000:]
    applied = _inbox_offsets(name)
    assert applied == list(range(len(applied)))  # a prefix of the partition, in one transaction
    if transaction_batch == 1:
        assert applied == [0]
    assert 1 <= len(applied) <= EVENTS
    assert _echo_causes(echo) == sorted(e.event_id for e in sent[: len(applied)])
    assert _committed_offset(name, source) < 0  # nothing committed (OFFSET_INVALID)

    # The restarted process is handed every record again; the applied ones are no-ops.
    restarted = _run_consumer(
        name,
        source,
        echo,
        transaction_batch,
        "--max-messages",
        str(EVENTS),
        "--idle-timeout",
        "20",
        crash_after=None,
    )
    assert restarted.returncode == 0, restarted.stderr.decode()[-2000:]
    stopped = re.search(rb"stopped after (\d+) messages", restarted.stdout)
    assert stopped is not None, restarted.stdout.decode()
    assert int(stopped.group(1)) == EVENTS  # the crashed run's records are redelivered too
    assert _echo_causes(echo) == sorted(e.event_id for e in sent)  # one effect per event, none twice
    assert _inbox_offsets(name) == list(range(EVENTS))
    assert _committed_offset(name, source) == EVENTS
