"""Our own PostgreSQL, Redis and Kafka (``ChaosConfig.run_dir`` and ports): start, stop, and kill -9 by PID.

Only the instance under ``run_dir`` is ever signalled: PIDs come from that instance's own pid files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from chaos.config import ROOT, ChaosConfig

SERVICES = ("postgres", "redis", "kafka")


def services_sh(cfg: ChaosConfig, service: str, action: str, *, check: bool = True) -> int:
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    with (cfg.log_dir / "services.log").open("ab") as log:
        proc = subprocess.run(  # noqa: S603
            [str(ROOT / "scripts" / "services.sh"), service, action],
            cwd=ROOT,
            env=cfg.services_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if check and proc.returncode != 0:
        raise RuntimeError(f"services.sh {service} {action} exited {proc.returncode}; see {cfg.log_dir}")
    return proc.returncode


def _pid_file(cfg: ChaosConfig, service: str) -> Path:
    return {
        # The postmaster writes its pid on the first line of postmaster.pid.
        "postgres": cfg.run_dir / "postgres" / "data" / "postmaster.pid",
        "redis": cfg.run_dir / "redis" / "redis.pid",
        "kafka": cfg.run_dir / "kafka" / "kafka.pid",
    }[service]


def service_pid(cfg: ChaosConfig, service: str) -> int | None:
    try:
        first = _pid_file(cfg, service).read_text().splitlines()[0].strip()
        pid = int(first)
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by the postgres user
    return pid


def service_kill9(cfg: ChaosConfig, service: str) -> int | None:
    """SIGKILL the service's main process; returns the pid killed (None if it was not running)."""
    pid = service_pid(cfg, service)
    if pid is None:
        return None
    kill9_and_wait(pid)
    if service == "postgres":
        # The backends notice the postmaster's death and exit; wait for them so the port and shared memory free up.
        time.sleep(1.0)
    return pid


def kill9_and_wait(pid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL ``pid`` and wait (up to ``timeout_s``) until it is gone."""
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def service_restart_after_kill(cfg: ChaosConfig, service: str) -> None:
    """``services.sh start`` after a kill -9: PostgreSQL runs crash recovery, Kafka log recovery, Redis the AOF."""
    for attempt in range(10):
        if services_sh(cfg, service, "start", check=False) == 0:
            return
        time.sleep(1.0 + attempt)
    raise RuntimeError(f"{service} did not come back after kill -9; see {cfg.log_dir}/services.log")
