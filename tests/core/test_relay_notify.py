"""The relay wakes at an outbox commit (LISTEN/NOTIFY), not at its next timed poll.

The outbox's statement-level insert trigger (migration core 0002) notifies ``outbox_relay`` when the inserting
transaction commits; a real relay process (``manage.py run_outbox_relay``) whose timed probe is 30 s away publishes
a row within seconds of its commit, LISTENs again on the connection Django makes after its own was terminated, and
with LISTEN off waits for its poll as before.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, transaction

from apps.core.models import StoredEvent
from apps.core.outbox import event_record
from apps.core.relay import NOTIFY_CHANNEL
from tests.procs import ROOT, process_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]

FAR = "30"  # s: the relay's timed probe, far beyond every wait below


def _append(topic: str, event_type: str = "test.Woken") -> Any:
    """One outbox row (inside the caller's transaction); its envelope."""
    return event_record(
        topic=topic,
        key="k",
        event_type=event_type,
        aggregate_type="test",
        aggregate_id=uuid.uuid4().hex,
        payload={},
    )


def _record(topic: str) -> StoredEvent:
    with transaction.atomic():
        envelope = _append(topic)
    return StoredEvent.objects.get(event_id=envelope.event_id)


def _published_within(event: StoredEvent, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        event.refresh_from_db(fields=["published_at"])
        if event.published_at is not None:
            return True
        time.sleep(0.05)
    return False


class _Relay:
    """A relay process and the backend pids it announced LISTENing on (its log, read as it runs)."""

    def __init__(self, **env: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_outbox_relay"],
            cwd=ROOT,
            env=process_env(OUTBOX_RELAY_LISTEN_POLL_INTERVAL_S=FAR, LOG_LEVEL="INFO", **env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.listening: list[int] = []
        self.log: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.log.append(line)
            if '"relay listening"' in line:
                self.listening.append(int(json.loads(line)["backend_pid"]))

    def waiting(self, count: int = 1, timeout: float = 60) -> int:
        """The backend pid of the ``count``-th LISTEN, once the relay has gone back to waiting after it."""
        deadline = time.monotonic() + timeout
        while len(self.listening) < count:
            assert time.monotonic() < deadline, "the relay never LISTENed:\n" + "".join(self.log[-20:])
            time.sleep(0.05)
        time.sleep(0.5)  # its one probe after the LISTEN takes milliseconds; then it waits
        return self.listening[count - 1]


@pytest.fixture
def relay() -> Iterator[Any]:
    started: list[_Relay] = []

    def start(**env: str) -> _Relay:
        started.append(_Relay(**env))
        return started[-1]

    yield start
    for r in started:
        r.proc.send_signal(signal.SIGTERM)
        r.proc.wait(timeout=30)
        assert r.proc.returncode == 0, "".join(r.log[-20:])


def test_a_committed_insert_notifies_and_a_rolled_back_one_does_not() -> None:
    with psycopg.connect(process_env()["DATABASE_URL"], autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with transaction.atomic():
            _append("t.x", "test.Gone")
            transaction.set_rollback(True)
        assert list(listener.notifies(timeout=0.5)) == []
        with transaction.atomic():  # two rows, two statements, one transaction: one notification
            for _ in range(2):
                _append("t.x", "test.Kept")
        got = list(listener.notifies(timeout=0.5))
    assert [n.channel for n in got] == [NOTIFY_CHANNEL]


def test_a_waiting_relay_publishes_at_the_commit(fresh_topic: Any, relay: Any) -> None:
    topic = fresh_topic()
    relay().waiting()
    started = time.monotonic()
    event = _record(topic)
    assert _published_within(event, 5), "published only by the timed probe (or not at all)"
    assert time.monotonic() - started < 5


def test_the_relay_listens_again_on_its_new_connection(fresh_topic: Any, relay: Any) -> None:
    topic = fresh_topic()
    r = relay()
    pid = r.waiting()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert r.waiting(2) != pid  # it noticed, reconnected and LISTENs on its new backend
    event = _record(topic)
    assert _published_within(event, 5)


def test_with_listen_off_the_relay_waits_for_its_poll(fresh_topic: Any, relay: Any) -> None:
    topic = fresh_topic()
    relay(OUTBOX_RELAY_LISTEN="false", OUTBOX_RELAY_POLL_INTERVAL_S=FAR)
    assert _published_within(_record(topic), 60)  # the relay is up; having published it, it sleeps its poll
    time.sleep(0.5)
    event = _record(topic)
    assert not _published_within(event, 3)
