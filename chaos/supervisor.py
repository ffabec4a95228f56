"""A small process supervisor for the platform: starts each process in its own session and restarts any that
dies (killed by the fault thread or crashed by a lost dependency), counting restarts.

Like ECS, it also runs the container health check (``deploy/healthcheck.py``) of the processes that have one
here (the Celery worker's liveness file, the heartbeat files of the relay, the consumers and beat): after
``HEALTH_RETRIES`` failed checks in a row, none in its first ``START_PERIOD_S``, the process is stopped (SIGTERM,
SIGKILL after ``STOP_GRACE_S``) and, once it exits, restarted like any other.

Invariant: the supervisor signals only the process groups it started.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaos.config import ROOT, ChaosConfig

RESTART_DELAY_S = 1.0
HEALTH_INTERVAL_S = 2.0
HEALTH_RETRIES = 3  # failed checks in a row before a replacement (ECS's retries)
# Failures right after a start do not count (ECS's startPeriod, deploy/ecs/stacks/platform.py).
START_PERIOD_S = 30.0
STOP_GRACE_S = 10.0
# web's check is its /healthz on PORT, which this supervisor passes on the command line instead.
# The worker's liveness file; the heartbeats of the relay, each consumer and beat (their ECS tasks have the check too).
HEALTH_CHECKED = ("worker", "relay", "consumer:", "beat")

# The image's own check, so the supervisor judges a process exactly as the container would.
_check = runpy.run_path(str(ROOT / "deploy" / "healthcheck.py"))["check"]


@dataclass
class Managed:
    name: str
    argv: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    health_failures: int = 0
    started_at: float = 0.0
    next_check: float = 0.0
    stopping_since: float | None = None  # an unhealthy process was told to stop
    replaced: int = 0  # stopped for failing its health check


def platform_commands(cfg: ChaosConfig, consumers: list[str]) -> dict[str, list[str]]:
    """Every process type of the Procfile, plus the engine and one ``run_consumer`` per registered consumer."""
    py = sys.executable
    venv_bin = Path(py).parent
    commands = {
        "web": [
            str(venv_bin / "gunicorn"), "brokerage.wsgi", "--bind", f"127.0.0.1:{cfg.web_port}",
            "--workers", "2", "--threads", "4", "--timeout", "30", "--graceful-timeout", "5",
        ],
        "relay": [py, "manage.py", "run_outbox_relay"],
        "engine": [py, "manage.py", "run_engine"],
        "worker": [
            py, "-m", "celery", "-A", "brokerage", "worker", "--loglevel", "WARNING", "--concurrency", "2",
            "--queues", "default,settlement,compliance", "--without-heartbeat", "--without-gossip",
            "--without-mingle",
        ],
        # Beat runs the transfers sweep that advances simulated transfers whose Celery chain a fault lost.
        "beat": [
            py, "-m", "celery", "-A", "brokerage", "beat", "--loglevel", "WARNING",
            "--schedule", str(cfg.run_dir / "celerybeat-schedule"),
        ],
    }  # fmt: skip
    for name in consumers:
        commands[f"consumer:{name}"] = [py, "manage.py", "run_consumer", name]
    return commands


def consumer_names(env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [sys.executable, "manage.py", "run_consumer", "--list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line.split("\t")[0] for line in out.splitlines() if line.strip()]


class Supervisor:
    def __init__(self, cfg: ChaosConfig, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        cfg.log_dir.mkdir(parents=True, exist_ok=True)
        cfg.heartbeat_dir.mkdir(parents=True, exist_ok=True)
        # A run's processes start without liveness files, as a new ECS task does: a file left by an earlier run
        # would read as hours without a heartbeat until the new process first writes its own.
        for stale in [*cfg.heartbeat_dir.glob("*.alive"), cfg.worker_liveness_file]:
            stale.unlink(missing_ok=True)
        self.env = env
        self.procs = {
            name: Managed(name, argv, cfg.log_dir / f"{name.replace(':', '_')}.log")
            for name, argv in commands.items()
        }
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def _spawn(self, m: Managed) -> None:
        with m.log.open("ab") as log:
            log.write(f"\n===== start #{m.starts + 1} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            m.proc = subprocess.Popen(  # noqa: S603
                m.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        m.starts += 1
        m.health_failures, m.stopping_since = 0, None
        m.started_at = time.monotonic()
        m.next_check = m.started_at + HEALTH_INTERVAL_S

    def start(self) -> None:
        for m in self.procs.values():
            self._spawn(m)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.is_set():
            for m in self.procs.values():
                with self._lock:
                    if self._stopping.is_set() or m.proc is None:
                        continue
                    rc = m.proc.poll()
                    if rc is None:
                        if m.name.startswith(HEALTH_CHECKED):
                            self._health(m)
                        continue
                    m.exits.append(rc)
                    self._killpg(
                        m.proc.pid, signal.SIGKILL
                    )  # children of a dead leader (celery pool, gunicorn)
                    time.sleep(RESTART_DELAY_S)
                    self._spawn(m)
            time.sleep(0.3)

    def _health(self, m: Managed) -> None:
        """Run the process's health check when due; stop it after ``HEALTH_RETRIES`` failures in a row."""
        assert m.proc is not None
        now = time.monotonic()
        if m.stopping_since is not None:
            if now - m.stopping_since > STOP_GRACE_S:
                self._killpg(m.proc.pid, signal.SIGKILL)
            return
        if now < m.next_check:
            return
        m.next_check = now + HEALTH_INTERVAL_S
        if _check(" ".join(m.argv), self.env, time.time()) == 0:
            m.health_failures = 0
        elif now - m.started_at >= START_PERIOD_S:
            m.health_failures += 1
        if m.health_failures < HEALTH_RETRIES:
            return
        with m.log.open("ab") as log:
            log.write(
                f"\n===== unhealthy at {time.strftime('%H:%M:%S')}: stopped for a replacement =====\n".encode()
            )
        m.replaced += 1
        m.stopping_since = now
        with contextlib.suppress(ProcessLookupError):
            os.kill(m.proc.pid, signal.SIGTERM)  # the leader alone, as ECS signals PID 1: a warm shutdown

    @staticmethod
    def _killpg(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    def pid(self, name: str) -> int | None:
        m = self.procs[name]
        return m.proc.pid if m.proc is not None and m.proc.poll() is None else None

    def kill(self, name: str) -> int | None:
        """SIGKILL the process (its leader only: children see their parent die, as in a real crash)."""
        pid = self.pid(name)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return None
        return pid

    def kill_child(self, name: str) -> int | None:
        """SIGKILL one child of the process (a Celery pool worker, a gunicorn worker)."""
        pid = self.pid(name)
        if pid is None:
            return None
        children = _children(pid)
        if not children:
            return None
        child = children[0]
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return child

    def restarts(self) -> dict[str, int]:
        return {name: m.starts - 1 for name, m in self.procs.items()}

    def replacements(self) -> dict[str, int]:
        """Processes stopped for failing their health check (each then restarted)."""
        return {name: m.replaced for name, m in self.procs.items() if m.replaced}

    def dead(self) -> list[str]:
        return [n for n, m in self.procs.items() if m.proc is None or m.proc.poll() is not None]

    def stop(self, grace: float = 15.0) -> None:
        self._stopping.set()
        with self._lock:
            for m in self.procs.values():
                if m.proc is not None and m.proc.poll() is None:
                    self._killpg(m.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            for m in self.procs.values():
                if m.proc is None:
                    continue
                try:
                    m.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._killpg(m.proc.pid, signal.SIGKILL)
                    m.proc.wait(10)
                self._killpg(m.proc.pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return sorted(int(p) for p in text.split())
