"""The fault thread: at seeded random intervals, kill one thing by PID and bring it back.

Faults: PostgreSQL (kill -9 of the postmaster, then ``services.sh start`` runs crash recovery), Redis (kill -9,
AOF replay), Kafka (kill -9, log recovery), one Celery pool child (the master forks a replacement), the outbox
relay, the engine, the web server, a Kafka consumer (the supervisor restarts platform processes), a wedged Celery
worker (up, consuming nothing: the state kombu's Redis transport can leave it in; only its health check, run by
the supervisor as ECS would, finds it). With network
faults on, also a degraded link to one service for a few seconds: latency with jitter, a partition, connection
resets, a starved or a lossy link (``chaos/netfaults.py``).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from chaos.config import ChaosConfig
from chaos.netfaults import NET_FAULTS, NetworkFaults
from chaos.services import service_kill9, service_restart_after_kill
from chaos.supervisor import Supervisor

FAULTS = ("postgres", "redis", "kafka", "worker_child", "relay", "engine", "web", "consumer", "worker_wedge")
WEIGHTS = (2, 1, 1, 2, 2, 2, 2, 2, 1)
NET_WEIGHTS = (2, 1, 1, 1, 1)


@dataclass
class FaultThread:
    cfg: ChaosConfig
    supervisor: Supervisor
    rng: random.Random
    network: NetworkFaults | None = None
    injected: Counter[str] = field(default_factory=Counter)
    log: list[dict[str, Any]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.rng.uniform(*self.cfg.fault_interval_s)):
            kinds: tuple[str, ...] = FAULTS
            weights: tuple[int, ...] = WEIGHTS
            if self.network is not None:
                kinds, weights = kinds + NET_FAULTS, weights + NET_WEIGHTS
            fault = self.rng.choices(kinds, weights=weights)[0]
            started = time.time()
            detail: dict[str, Any] = {}
            try:
                if fault in NET_FAULTS:
                    assert self.network is not None  # only drawn when configured
                    detail = self.network.inject(fault, self.rng)
                    pid = None
                else:
                    pid = self.inject(fault)
                error = None
            except Exception as exc:
                pid, error = None, repr(exc)
            entry = {"fault": fault, "pid": pid, "t": started, "recovered_s": round(time.time() - started, 2)}
            entry.update(detail)
            if error:
                entry["error"] = error
            self.log.append(entry)
            if pid is not None or (detail and not error):
                self.injected[fault] += 1
            with (self.cfg.log_dir / "faults.jsonl").open("a") as fh:
                fh.write(json.dumps(entry) + "\n")

    def inject(self, fault: str) -> int | None:
        if fault in ("postgres", "redis", "kafka"):
            pid = service_kill9(self.cfg, fault)
            # A short outage with the platform running against it, then recovery.
            time.sleep(self.rng.uniform(0.5, 3.0))
            service_restart_after_kill(self.cfg, fault)
            return pid
        if fault == "worker_child":
            return self.supervisor.kill_child("worker")
        if fault == "worker_wedge":
            return self._worker_wedge()
        if fault == "consumer":
            names = sorted(n for n in self.supervisor.procs if n.startswith("consumer:"))
            return self.supervisor.kill(self.rng.choice(names))
        return self.supervisor.kill(fault)

    def _worker_wedge(self) -> int | None:
        """The worker stops consuming every queue it consumes (remote control ``cancel_consumer``); its process and
        its pool stay up."""
        from brokerage.celery import app

        pid = self.supervisor.pid("worker")
        active = app.control.inspect(timeout=3).active_queues() or {}
        for node, queues in active.items():
            for queue in queues:
                app.control.cancel_consumer(queue["name"], destination=[node], reply=True, timeout=3)
        return pid if active else None
