"""Every knob of a chaos run in one frozen dataclass; the environment of every process it starts derives from it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ChaosConfig:
    seed: int = 1
    accounts: int = 200
    ops: int = 3000
    duration_s: float = 120.0
    clients: int = 16
    drain_s: float = 180.0
    fault_interval_s: tuple[float, float] = (4.0, 10.0)
    faults: bool = True
    keep_services: bool = False  # leave our PostgreSQL/Redis/Kafka running after the audit (to inspect them)
    # Network faults: the platform reaches its services through toxiproxy on these ports (chaos/netfaults.py).
    network_faults: bool = True
    toxiproxy_port: int = 18674
    pg_proxy_port: int = 55610
    redis_proxy_port: int = 56610
    kafka_proxy_port: int = 19610
    run_dir: Path = ROOT / ".run" / "chaos"
    pg_port: int = 55600
    redis_port: int = 56600
    kafka_port: int = 19600
    kafka_controller_port: int = 19601
    web_port: int = 18600
    topic_prefix: str = field(default="chaos.")
    symbols: tuple[str, ...] = ("AAPL", "MSFT", "IBM", "GOOG", "FB")
    # The worker's liveness (apps/core/celery_liveness.py), judged by the supervisor as ECS would: a self-ping every
    # second, unhealthy when none ran for this long (chaos tasks are short).
    worker_liveness_max_age_s: float = 20.0
    # The heartbeats of the relay, the consumers and beat (apps.core.runtime.Heartbeat): above the longest Kafka
    # outage a run makes, since a consumer's synchronous offset commit blocks for as long as the broker is away
    # (46 s seen, seed 111, the broker back after 43 s; a 45 s bound then failed one check).
    heartbeat_max_age_s: float = 90.0

    @property
    def worker_liveness_file(self) -> Path:
        return self.run_dir / "worker.alive"

    @property
    def heartbeat_dir(self) -> Path:
        return self.run_dir / "heartbeats"

    @property
    def database_url(self) -> str:
        return f"postgres://brokerage:brokerage@127.0.0.1:{self.platform_port('postgres')}/brokerage"

    def platform_port(self, link: str) -> int:
        """The port the platform dials for a service: the fault proxy's when network faults are on."""
        direct = {"postgres": self.pg_port, "redis": self.redis_port, "kafka": self.kafka_port}[link]
        proxied = {
            "postgres": self.pg_proxy_port,
            "redis": self.redis_proxy_port,
            "kafka": self.kafka_proxy_port,
        }
        return proxied[link] if self.network_faults else direct

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def history_path(self) -> Path:
        return self.run_dir / f"history-seed{self.seed}.jsonl"

    def services_env(self) -> dict[str, str]:
        """The environment of ``scripts/services.sh`` for OUR instance (never the shared one)."""
        return {
            **os.environ,
            "RUN_DIR": str(self.run_dir),
            "PG_PORT": str(self.pg_port),
            "REDIS_PORT": str(self.redis_port),
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "KAFKA_HEAP_OPTS": "-Xms256m -Xmx512m",
            # Clients learn the broker's address from metadata: it must be the proxy's, or they bypass it.
            "KAFKA_ADVERTISED_PORT": str(self.platform_port("kafka")),
        }

    def django_env(self) -> dict[str, str]:
        """The environment of every platform process (and of this process before ``django.setup()``)."""
        return {
            "DJANGO_SETTINGS_MODULE": "brokerage.settings.local",
            "DJANGO_DEBUG": "False",
            "DATABASE_URL": self.database_url,
            # Short-lived connections: a PostgreSQL crash then costs one request, not a pool of dead sockets.
            "DATABASE_CONN_MAX_AGE": "0",
            "REDIS_URL": f"redis://127.0.0.1:{self.platform_port('redis')}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.platform_port('redis')}/1",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.platform_port('kafka')}",
            "KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "MARKET_CALENDAR": "always_open",
            "TRANSFER_SIMULATION_STEP_SECONDS": "1",
            "CELERY_WORKER_LIVENESS_FILE": str(self.worker_liveness_file),
            "CELERY_WORKER_LIVENESS_INTERVAL_S": "1",
            "CELERY_WORKER_LIVENESS_MAX_AGE_S": str(self.worker_liveness_max_age_s),
            "PROCESS_HEARTBEAT_DIR": str(self.heartbeat_dir),
            "PROCESS_HEARTBEAT_MAX_AGE_S": str(self.heartbeat_max_age_s),
            # Every client is one account; keep the per-account rate limit out of the way of the storm.
            "ORDERS_RATE_LIMIT_COUNT": "100000",
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "WARNING",
        }
