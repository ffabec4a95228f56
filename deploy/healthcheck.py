"""Container HEALTHCHECK: liveness of the process in this container, without any dependency.

The image serves every process type. The check reads PID 1's command line (the entrypoint execs the process, so
PID 1 *is* it):

- web (gunicorn) and ws (daphne): GET /healthz on the local port;
- a Celery worker: its liveness file (``apps/core/celery_liveness.py``), touched by a pool child each time the
  worker consumes its own ping from its own queue, must be younger than ``CELERY_WORKER_LIVENESS_MAX_AGE_S``
  (default 360 s: above the 300 s hard time limit, since a ping may wait for a child busy with the longest task).
  A worker that stays up but consumes nothing is replaced. No file yet means the worker has not started
  consuming (the container's start period covers it);
- the outbox relay, the session clock, the market-data feed (``HEARTBEAT_COMMANDS``), a Kafka consumer
  (``manage.py run_consumer <name>``) and Celery beat (``apps/core/celery_beat.py``, a pass at least every
  ``CELERY_BEAT_MAX_LOOP_INTERVAL``): the heartbeat file their loop touches (``apps.core.runtime.Heartbeat``,
  ``<PROCESS_HEARTBEAT_DIR>/brokerage-<process>.alive``, ``brokerage-consumer-<name>.alive``) must be younger
  than ``PROCESS_HEARTBEAT_MAX_AGE_S`` (default 120 s, above the longest bounded wait of an iteration: a 30 s
  flush, a 10 s connect, 5 s backoffs). No file yet: not started (the start period covers it);
  ``PROCESS_HEARTBEAT_DIR`` empty: not checked;
- other processes are healthy while they run: ECS replaces a task whose essential container exits.

Standard library only, so it costs a few milliseconds and needs no Django import.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

# Keep in step with brokerage.settings.base (tests/deploy/test_healthcheck.py checks they agree).
LIVENESS_FILE_DEFAULT = str(Path(tempfile.gettempdir()) / "brokerage-celery-worker.alive")
LIVENESS_MAX_AGE_S_DEFAULT = 360.0
HEARTBEAT_DIR_DEFAULT = tempfile.gettempdir()
HEARTBEAT_MAX_AGE_S_DEFAULT = 120.0
# Management command -> its heartbeat's process name (``apps.core.runtime.heartbeat_path``); consumers below.
HEARTBEAT_COMMANDS = {
    "run_outbox_relay": "relay",
    "run_session_clock": "clock",
    "run_marketdata_feed": "feed",
}


def _pid1_cmdline() -> str:
    try:
        return Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _http_ok(port: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError:
        return 1


def _fresh(path: Path, max_age: float, now: float, what: str) -> int:
    """0 while ``path`` was touched within ``max_age`` s (or does not exist yet), else 1 with the reason."""
    try:
        touched = path.stat().st_mtime
    except FileNotFoundError:
        return 0
    except OSError:
        return 1
    if now - touched <= max_age:
        return 0
    print(f"{what} for {now - touched:.0f} s (bound {max_age:.0f} s)", file=sys.stderr)
    return 1


def worker_alive(env: Mapping[str, str], now: float) -> int:
    """0 while the worker's liveness file is fresh (or not yet written), 1 once it is older than the bound."""
    path = Path(env.get("CELERY_WORKER_LIVENESS_FILE") or LIVENESS_FILE_DEFAULT)
    max_age = float(env.get("CELERY_WORKER_LIVENESS_MAX_AGE_S") or LIVENESS_MAX_AGE_S_DEFAULT)
    return _fresh(path, max_age, now, "celery worker: no ping consumed")


def heartbeat_alive(process: str, env: Mapping[str, str], now: float) -> int:
    """0 while the process's heartbeat file is fresh (or not yet written, or heartbeats are off), else 1."""
    directory = env.get("PROCESS_HEARTBEAT_DIR", HEARTBEAT_DIR_DEFAULT)
    if not directory:
        return 0
    max_age = float(env.get("PROCESS_HEARTBEAT_MAX_AGE_S") or HEARTBEAT_MAX_AGE_S_DEFAULT)
    path = Path(directory) / f"brokerage-{process}.alive"
    return _fresh(path, max_age, now, f"{process}: no heartbeat")


def check(cmdline: str, env: Mapping[str, str], now: float) -> int:
    words = cmdline.split()
    if any("gunicorn" in w for w in words):
        return _http_ok(env.get("PORT", "8000"))
    if any("daphne" in w or w.endswith("ws_server.py") for w in words):
        return _http_ok(env.get("WS_PORT", "8001"))
    if any(w.endswith("celery") for w in words):
        if "worker" in words:
            return worker_alive(env, now)
        if "beat" in words:
            return heartbeat_alive("beat", env, now)
    for command, process in HEARTBEAT_COMMANDS.items():
        if command in words:
            return heartbeat_alive(process, env, now)
    if "run_consumer" in words[:-1]:
        return heartbeat_alive(f"consumer-{words[words.index('run_consumer') + 1]}", env, now)
    return 0


def main() -> int:
    return check(_pid1_cmdline(), os.environ, time.time())


if __name__ == "__main__":
    sys.exit(main())
