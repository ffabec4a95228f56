"""The container health check (``deploy/healthcheck.py``) picks its test from PID 1's command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

from tests.deploy.healthcheck_module import healthcheck
from tests.procs import free_port

NOW = 1_800_000_000.0


def _file(tmp_path: Path, age_s: float) -> Path:
    path = tmp_path / "worker.alive"
    path.touch()
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


@pytest.mark.parametrize(
    ("age_s", "max_age", "expected"),
    [(10.0, "360", 0), (359.0, "", 0), (361.0, "", 1), (5.0, "4", 1)],
)
def test_a_worker_is_healthy_while_its_liveness_file_is_younger_than_the_bound(
    tmp_path: Path, age_s: float, max_age: str, expected: int
) -> None:
    env = {
        "CELERY_WORKER_LIVENESS_FILE": str(_file(tmp_path, age_s)),
        "CELERY_WORKER_LIVENESS_MAX_AGE_S": max_age,
    }
    assert (
        healthcheck.check("celery -A brokerage worker --loglevel INFO --concurrency 2", env, NOW) == expected
    )


def test_a_worker_that_has_not_started_consuming_is_in_its_start_period(tmp_path: Path) -> None:
    env = {"CELERY_WORKER_LIVENESS_FILE": str(tmp_path / "missing")}
    assert healthcheck.check("/opt/venv/bin/celery -A brokerage worker", env, NOW) == 0


def test_processes_without_a_port_or_a_heartbeat_are_judged_by_their_exit(tmp_path: Path) -> None:
    env = {
        "CELERY_WORKER_LIVENESS_FILE": str(_file(tmp_path, 10_000.0)),
        "PROCESS_HEARTBEAT_DIR": str(tmp_path),
    }
    for cmdline in ("python manage.py run_engine --partitions 0,1", "python manage.py migrate"):
        assert healthcheck.check(cmdline, env, NOW) == 0, cmdline


@pytest.mark.parametrize(
    ("cmdline", "process"),
    [
        ("python manage.py run_outbox_relay", "relay"),
        ("python manage.py run_consumer orders.projection", "consumer-orders.projection"),
        ("python manage.py run_session_clock", "clock"),
        ("python manage.py run_marketdata_feed", "feed"),
        (
            "/opt/venv/bin/celery -A brokerage beat --loglevel INFO --schedule /tmp/celerybeat-schedule",
            "beat",
        ),
    ],
)
@pytest.mark.parametrize(
    ("age_s", "max_age", "expected"), [(10.0, "", 0), (119.0, "", 0), (121.0, "", 1), (5.0, "4", 1)]
)
def test_heartbeat_processes_are_healthy_while_their_heartbeat_is_younger_than_the_bound(
    tmp_path: Path, cmdline: str, process: str, age_s: float, max_age: str, expected: int
) -> None:
    path = tmp_path / f"brokerage-{process}.alive"
    path.touch()
    os.utime(path, (NOW - age_s, NOW - age_s))
    env = {"PROCESS_HEARTBEAT_DIR": str(tmp_path), "PROCESS_HEARTBEAT_MAX_AGE_S": max_age}
    assert healthcheck.check(cmdline, env, NOW) == expected
    # Another consumer's stale file is not this one's.
    assert healthcheck.check("python manage.py run_consumer kyc.aml", env, NOW) == 0
    # Heartbeats off: judged by their exit.
    assert healthcheck.check(cmdline, {**env, "PROCESS_HEARTBEAT_DIR": ""}, NOW) == 0


def test_web_and_ws_are_asked_over_http(tmp_path: Path) -> None:
    env = {"PORT": str(free_port()), "WS_PORT": str(free_port())}
    # Nothing listens on either port, so both fail: the HTTP check is the one that ran.
    assert healthcheck.check("gunicorn brokerage.wsgi --config deploy/gunicorn.conf.py", env, NOW) == 1
    assert healthcheck.check("python deploy/ws_server.py --bind 0.0.0.0 --port 8001", env, NOW) == 1


def test_the_default_liveness_file_is_the_one_the_settings_give_the_worker() -> None:
    assert healthcheck.LIVENESS_FILE_DEFAULT == settings.CELERY_WORKER_LIVENESS_FILE
    assert healthcheck.LIVENESS_MAX_AGE_S_DEFAULT > settings.CELERY_TASK_TIME_LIMIT


def test_the_heartbeat_defaults_are_the_settings_and_outlast_an_iterations_bounded_waits() -> None:
    from brokerage.settings import base  # the deployed default (the test settings turn heartbeats off)

    assert healthcheck.HEARTBEAT_DIR_DEFAULT == base.PROCESS_HEARTBEAT_DIR
    # The relay's flush (30 s) plus its longest backoff (5 s) and a database connect stay well inside it.
    assert healthcheck.HEARTBEAT_MAX_AGE_S_DEFAULT >= 3 * (30 + 5)
    # Beat passes at least this often, so several passes fit in the bound.
    assert healthcheck.HEARTBEAT_MAX_AGE_S_DEFAULT >= 3 * base.CELERY_BEAT_MAX_LOOP_INTERVAL
