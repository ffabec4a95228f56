"""A private single-node Kafka broker that a test may kill -9 and restart (the shared broker serves every test).

It runs from ``scripts/services.sh`` like the shared one, with its own ``RUN_DIR`` and free ports, and reuses the
shared instance's jars (``<RUN_DIR>/kafka/libs``, installed by ``make test``) so it starts in seconds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from chaos.services import kill9_and_wait
from tests.procs import ROOT, free_port

SERVICES = ROOT / "scripts" / "services.sh"


class PrivateKafka:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.port = free_port()
        self.controller_port = free_port()
        shared_libs = Path(os.environ.get("RUN_DIR", ROOT / ".run")) / "kafka" / "libs"
        (run_dir / "kafka").mkdir(parents=True, exist_ok=True)
        if shared_libs.is_dir():
            (run_dir / "kafka" / "libs").symlink_to(shared_libs.resolve())

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _services(self, action: str) -> None:
        env = {
            **os.environ,
            "RUN_DIR": str(self.run_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "KAFKA_ADVERTISED_PORT": str(self.port),
        }
        done = subprocess.run(
            [str(SERVICES), "kafka", action], env=env, capture_output=True, check=False, timeout=180
        )
        assert done.returncode == 0, f"services.sh kafka {action}: {done.stderr.decode()[-2000:]}"

    def start(self) -> None:
        """Start (or, after ``kill9``, restart with log recovery) and return once it answers."""
        self._services("start")

    def stop(self) -> None:
        self._services("stop")

    def kill9(self) -> None:
        kill9_and_wait(int((self.run_dir / "kafka" / "kafka.pid").read_text().split()[0]))
