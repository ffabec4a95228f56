"""A Celery worker proves it still consumes: it pings itself through its own queue (``apps.core.celery_liveness``).

A real ``celery -A brokerage worker`` (prefork, one child) runs with a short ping interval. Its liveness file is
touched by each ping it consumes; when the worker stops consuming its queue (the remote-control
``cancel_consumer``, the state kombu's wedged consumer leaves it in) the file ages while the process stays up, the
container health check (``deploy/healthcheck.py``) reports it unhealthy, and only one ping waits in the queue. When
it consumes again, the waiting ping runs and the check passes.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from apps.core.celery_liveness import RESEND_AFTER_S, TASK_NAME, LivenessPing, liveness_reset
from brokerage.celery import app
from tests.deploy.healthcheck_module import healthcheck
from tests.procs import celery_worker, process_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

INTERVAL_S = 0.3


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    nodename = f"liveness-{uuid.uuid4().hex[:8]}@test"
    alive = tmp_path / "worker.alive"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    env = process_env(
        CELERY_WORKER_LIVENESS_FILE=str(alive), CELERY_WORKER_LIVENESS_INTERVAL_S=str(INTERVAL_S)
    )
    # A queue nobody else sends to: the worker's direct queue carries all its traffic.
    with celery_worker(f"liveness-test-{nodename}", "-n", nodename, env=env) as proc:
        yield proc, nodename, alive
    broker.delete(f"{nodename}.dq2", f"liveness-test-{nodename}")
    broker.close()


def _health(alive: Path, max_age_s: float) -> int:
    env = {"CELERY_WORKER_LIVENESS_FILE": str(alive), "CELERY_WORKER_LIVENESS_MAX_AGE_S": str(max_age_s)}
    return int(healthcheck.worker_alive(env, time.time()))


def _control_ok(replies: list[dict[str, dict[str, str]]], nodename: str) -> None:
    assert [list(r) for r in replies] == [[nodename]], replies
    assert "ok" in replies[0][nodename], replies


def test_a_worker_that_stops_consuming_goes_unhealthy_and_recovers_when_it_consumes_again(
    worker: tuple[subprocess.Popen[bytes], str, Path],
) -> None:
    proc, nodename, alive = worker
    direct_queue = f"{nodename}.dq2"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    # Pings consumed: the file keeps moving, the health check passes.
    wait_until(lambda: alive.exists(), "the consumer's start", proc)
    first = _mtime(alive)
    wait_until(lambda: (_mtime(alive) or 0) > (first or 0), "a consumed ping", proc)
    seen = _mtime(alive)
    wait_until(lambda: (_mtime(alive) or 0) > (seen or 0), "the next consumed ping", proc)
    assert _health(alive, max_age_s=2.0) == 0

    # The worker stops consuming its own queue: the process stays up, the file ages, one ping waits.
    _control_ok(
        app.control.cancel_consumer(direct_queue, destination=[nodename], reply=True, timeout=5), nodename
    )
    time.sleep(1.0)
    stopped_at = _mtime(alive)
    time.sleep(2.5)
    assert proc.poll() is None, "the worker process is still up"
    assert _mtime(alive) == stopped_at, "no ping ran while the worker consumed nothing"
    assert _health(alive, max_age_s=2.0) == 1
    assert _health(alive, max_age_s=60.0) == 0, "within the bound, the same file is healthy"
    assert broker.llen(direct_queue) == 1, "one ping waits: no new one while it is outstanding"

    # It consumes again: the waiting ping runs, the file is fresh, the queue drains.
    _control_ok(
        app.control.add_consumer(
            direct_queue,
            exchange="C.dq2",
            exchange_type="direct",
            routing_key=nodename,
            destination=[nodename],
            reply=True,
            timeout=5,
        ),
        nodename,
    )
    wait_until(lambda: (_mtime(alive) or 0) > (stopped_at or 0), "the waiting ping to run", proc)
    assert _health(alive, max_age_s=2.0) == 0
    wait_until(lambda: broker.llen(direct_queue) == 0, "the direct queue to drain", proc)
    broker.close()


class _Recorder:
    """Stands in for the worker's consumer: the app's ``send_task`` is recorded, not published."""

    hostname = "w1@host"

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.app = self

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append({"name": name, **options})


def test_a_ping_is_sent_only_when_the_last_one_ran_or_is_old(tmp_path: Path) -> None:
    step = LivenessPing.__new__(LivenessPing)  # the rule alone, without a worker blueprint
    step.path = tmp_path / "alive"
    step.sent_at = step.sent_mtime_ns = None
    c = _Recorder()

    step.ping(c)
    [sent] = c.sent
    assert sent["name"] == TASK_NAME
    assert sent["args"] == [str(step.path)]
    assert sent["queue"].name == "w1@host.dq2"
    assert sent["expires"] == RESEND_AFTER_S

    step.ping(c)
    assert len(c.sent) == 1, "outstanding (never ran): no second ping"

    step.path.write_text("")  # a child ran it (the file changed since the ping was sent)
    step.ping(c)
    assert len(c.sent) == 2

    assert step.sent_at is not None
    step.sent_at -= RESEND_AFTER_S + 1  # outstanding, but lost long ago
    step.ping(c)
    assert len(c.sent) == 3


def test_a_new_worker_process_starts_without_the_last_ones_file(tmp_path: Path, settings: Any) -> None:
    settings.CELERY_WORKER_LIVENESS_FILE = str(tmp_path / "alive")
    (tmp_path / "alive").touch()
    liveness_reset()
    assert not (tmp_path / "alive").exists()
    liveness_reset()  # none there: nothing to do
