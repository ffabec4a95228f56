"""Ports, paths and the environment of every process the scale checks start (one frozen dataclass).

Invariants: every port differs from the shared services' (55432/56379/19092-19093) and every piece of state
lives under ``run_dir``, so the checks never touch the shared PostgreSQL, Redis or Kafka.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class ScaleConfig:
    run_dir: Path = ROOT / ".run" / "scale"
    kafka_libs: Path = ROOT / ".run" / "kafka" / "libs"  # the shared install's jars, read only
    kafka_nodes: tuple[int, ...] = (1, 2, 3)
    kafka_broker_base: int = 19700  # node i: broker 19700+i, controller 19703+i (19701..19706)
    kafka_heap: str = "-Xms384m -Xmx384m"
    pg_port: int = 55700
    redis_port: int = 56700
    web_ports: tuple[int, int] = (19707, 19708)
    proxy_port: int = 19709
    database: str = "brokerage_scale"
    topic_prefix: str = field(default="scale.")

    def broker_port(self, node: int) -> int:
        return self.kafka_broker_base + node

    def controller_port(self, node: int) -> int:
        return self.kafka_broker_base + len(self.kafka_nodes) + node

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{self.broker_port(n)}" for n in self.kafka_nodes)

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def database_url(self) -> str:
        return f"postgres://brokerage:brokerage@127.0.0.1:{self.pg_port}/{self.database}"

    def services_env(self) -> dict[str, str]:
        """``scripts/services.sh`` for OUR PostgreSQL and Redis (never the shared ones)."""
        return {
            **os.environ,
            "RUN_DIR": str(self.run_dir),
            "PG_PORT": str(self.pg_port),
            "REDIS_PORT": str(self.redis_port),
        }

    def django_env(self) -> dict[str, str]:
        """The environment of every Django process (and of this one before ``django.setup()``)."""
        return {
            "DJANGO_SETTINGS_MODULE": "brokerage.settings.local",
            "DJANGO_DEBUG": "False",
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/1",
            "CHANNELS_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/2",
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": self.topic_prefix,
            "PYTHONUNBUFFERED": "1",
            "LOG_LEVEL": "INFO",
        }
