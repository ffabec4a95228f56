"""Helpers for tests that start real platform processes (a Celery worker, a relay) as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


def process_env(**extra: str) -> dict[str, str]:
    """A child process's environment: the test settings on this run's database, Redis DBs and Kafka prefix."""
    db = settings.DATABASES["default"]
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "brokerage.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "KAFKA_TOPIC_PREFIX": settings.KAFKA["TOPIC_PREFIX"],
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "REDIS_URL": settings.REDIS_URL,
        **extra,
    }


@contextmanager
def celery_worker(
    queue: str, *options: str, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A real prefork worker with one child consuming ``queue``, stopped with SIGTERM (warm shutdown) after."""
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/celery"),
            "-A",
            "brokerage",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "1",
            "-Q",
            queue,
            *options,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=env if env is not None else process_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def free_port() -> int:
    """A TCP port nothing listens on now (the probe releases it again)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    predicate: Callable[[], bool],
    what: str,
    proc: subprocess.Popen[bytes],
    timeout_s: float = 90.0,
    poll_s: float = 0.01,
    log: Path | None = None,
) -> None:
    """Poll ``predicate`` until true; fail with the process's output (its stderr pipe, or ``log`` where it writes)
    if it exits first, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr is not None else ""
            raise AssertionError(f"process exited ({proc.returncode}): {(err or _tail(log))[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}: {_tail(log)[-2000:]}")
        time.sleep(poll_s)


def _tail(log: Path | None) -> str:
    """The process's own log lines (librdkafka's ``%N|...`` lines left out), or nothing without a log."""
    if log is None:
        return ""
    return "\n".join([line for line in log.read_text().splitlines() if not line.startswith("%")][-15:])
