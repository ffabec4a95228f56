"""Heartbeats of the outbox relay, the Kafka consumers, the session clock, the market-data feed and Celery beat
(``apps.core.runtime.Heartbeat``), as the container health check (``deploy/healthcheck.py``) reads them: a loop
that stops going round is found, not only one that exits."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from apps.core.runtime import Heartbeat
from tests.deploy.healthcheck_module import healthcheck
from tests.procs import ROOT, process_env, wait_until


def test_a_beat_touches_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "brokerage-relay.alive"
    beat = Heartbeat(path, every_s=0.3)
    beat.beat()
    assert path.exists()
    os.utime(path, (1_000_000, 1_000_000))
    beat.beat()  # within the interval: left alone
    assert path.stat().st_mtime == 1_000_000
    time.sleep(0.35)
    beat.beat()
    assert path.stat().st_mtime > time.time() - 5


def test_a_heartbeat_that_cannot_write_logs_and_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Heartbeat(None).beat()  # off: nothing to do
    directory = tmp_path / "missing-dir"
    beat = Heartbeat(directory / "x.alive", every_s=0)
    with caplog.at_level(logging.WARNING, logger="apps.core.runtime"):
        beat.beat()
        beat.beat()
        assert caplog.text.count("cannot touch the heartbeat file") == 1  # once, not every second
        directory.mkdir()
        beat.beat()
        assert (directory / "x.alive").exists()
        directory.joinpath("x.alive").unlink()
        directory.rmdir()
        beat.beat()
    assert caplog.text.count("cannot touch the heartbeat file") == 2  # a new failing spell


def _check(cmdline: str, directory: Path) -> int:
    env = {"PROCESS_HEARTBEAT_DIR": str(directory), "PROCESS_HEARTBEAT_MAX_AGE_S": "2"}
    return int(healthcheck.check(cmdline, env, time.time()))


MANAGE = [sys.executable, "manage.py"]
CELERY = [sys.executable, "-m", "celery", "-A", "brokerage"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("argv", "process"),
    [
        ([*MANAGE, "run_outbox_relay"], "relay"),
        ([*MANAGE, "run_session_clock", "--interval", "0.2"], "clock"),
        ([*MANAGE, "run_marketdata_feed", "--interval", "0.2"], "feed"),
        # Its schedule's entries are first due a minute after start: it sends nothing here, it only ticks.
        (
            [*CELERY, "beat", "--loglevel", "WARNING", "--max-interval", "1", "--schedule", "{tmp}/schedule"],
            "beat",
        ),
    ],
    ids=["relay", "clock", "feed", "beat"],
)
def test_a_real_process_beats_from_its_loop_and_fails_the_check_once_the_loop_stops(
    tmp_path: Path,
    argv: list[str],
    process: str,
    md_redis: Any,  # the feed publishes reference prices to the test Redis: cleared after, not left to others
) -> None:
    path = tmp_path / f"brokerage-{process}.alive"
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    cmdline = " ".join(argv)
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=process_env(PROCESS_HEARTBEAT_DIR=str(tmp_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(path.exists, "the first heartbeat", proc, 60)
        os.utime(path, (1_000_000, 1_000_000))
        wait_until(lambda: path.stat().st_mtime > 1_000_000, "another heartbeat of the (idle) loop", proc, 10)
        assert _check(cmdline, tmp_path) == 0

        proc.send_signal(signal.SIGSTOP)  # the loop stops going round; the process stays up
        time.sleep(3)
        assert proc.poll() is None
        assert _check(cmdline, tmp_path) == 1

        proc.send_signal(signal.SIGCONT)
        wait_until(lambda: _check(cmdline, tmp_path) == 0, "the heartbeat after the loop resumed", proc, 10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(30)
