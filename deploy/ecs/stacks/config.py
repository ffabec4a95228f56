"""Deployment configuration read from CDK context (cdk.json, ``-c key=value``): one typed object, no lookups.

Invariants: engine partition groups are disjoint ``"lo-hi"`` ranges (each group is exactly one engine task:
the single writer of those symbol partitions); consumer names are the names of the Kafka consumer registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import aws_cdk as cdk


@dataclass(frozen=True)
class ProcessSpec:
    """One ECS service: the entrypoint command and its size and scaling bounds."""

    name: str
    command: list[str]
    cpu: int = 512
    memory_mib: int = 1024
    min_tasks: int = 1
    max_tasks: int = 1
    port: int | None = None
    # Singletons (beat, engine groups) must never run two copies, not even during a deployment.
    singleton: bool = False
    stop_timeout_s: int = 60
    consumer: str | None = None  # a Kafka consumer service: its registry name (= consumer group id)
    # Judged by a liveness file (deploy/healthcheck.py: a Celery worker that stays up consuming nothing, or a
    # relay, consumer, session clock, feed or beat whose loop stopped going round, is replaced). A process with a port
    # is judged by /healthz; any other by its exit.
    liveness_file: bool = False


@dataclass(frozen=True)
class PlatformConfig:
    account: str
    region: str
    image_tag: str
    certificate_arn: str
    engine_partition_groups: list[str]
    consumers: dict[str, str] = field(default_factory=dict)
    # `-c first_deploy=true`: every service at desired count 0 and no scaling targets, so nothing starts before
    # the migrate task has created the runtime database role the services log in as (runbook, First deploy).
    first_deploy: bool = False
    # `-c migrate_image_tag=<new-sha>`: the migrate task definition's image (default image_tag), so a release
    # migrates with the new image while the services still run the old one (runbook, Rolling update).
    migrate_image_tag: str = ""

    @staticmethod
    def _ctx(app: cdk.App, key: str) -> Any:
        value = app.node.try_get_context(key)
        if value is None:
            raise ValueError(f"missing CDK context value {key!r} (cdk.json or -c {key}=...)")
        # `-c key=[...]` arrives as a string.
        if isinstance(value, str) and value[:1] in "[{":
            return json.loads(value)
        return value

    @classmethod
    def from_context(cls, app: cdk.App) -> PlatformConfig:
        groups = [str(g) for g in cls._ctx(app, "engine_partition_groups")]
        partitions_seen: set[int] = set()
        for group in groups:
            lo, hi = (int(x) for x in group.split("-"))
            span = set(range(lo, hi + 1))
            if lo > hi or span & partitions_seen:
                raise ValueError(f"engine partition groups must be disjoint ascending ranges: {groups}")
            partitions_seen |= span
        return cls(
            account=str(cls._ctx(app, "account")),
            region=str(cls._ctx(app, "region")),
            image_tag=str(cls._ctx(app, "image_tag")),
            certificate_arn=str(cls._ctx(app, "certificate_arn")),
            engine_partition_groups=groups,
            consumers={str(k): str(v) for k, v in cls._ctx(app, "consumers").items()},
            migrate_image_tag=str(app.node.try_get_context("migrate_image_tag") or ""),
            first_deploy=str(app.node.try_get_context("first_deploy") or "").lower() in ("1", "true", "yes"),
        )

    def processes(self) -> list[ProcessSpec]:
        specs = [
            ProcessSpec("web", ["web"], cpu=1024, memory_mib=2048, min_tasks=2, max_tasks=20, port=8000),
            ProcessSpec("ws", ["ws"], cpu=512, memory_mib=1024, min_tasks=2, max_tasks=10, port=8001),
            ProcessSpec("relay", ["relay"], min_tasks=1, max_tasks=4, liveness_file=True),
            ProcessSpec(
                "worker", ["worker"], cpu=1024, memory_mib=2048, min_tasks=2, max_tasks=20, liveness_file=True
            ),
            ProcessSpec("beat", ["beat"], cpu=256, memory_mib=512, singleton=True, liveness_file=True),
            ProcessSpec("marketdata", ["marketdata"], singleton=True, liveness_file=True),
            # Session transitions (open, close, day orders expiring): exactly one, like beat.
            ProcessSpec("clock", ["clock"], cpu=256, memory_mib=512, singleton=True, liveness_file=True),
        ]
        for group in self.engine_partition_groups:
            lo, hi = (int(x) for x in group.split("-"))
            partitions = ",".join(str(p) for p in range(lo, hi + 1))
            specs.append(
                ProcessSpec(
                    f"engine-{lo}-{hi}",
                    ["engine", "--partitions", partitions],
                    cpu=1024,
                    memory_mib=2048,
                    singleton=True,
                    stop_timeout_s=120,
                )
            )
        for name in sorted(self.consumers):
            # Registry names have dots and underscores, which ECS service names may not contain.
            service = "consumer-" + name.replace(".", "-").replace("_", "-")
            specs.append(
                ProcessSpec(
                    service, ["consumer", name], min_tasks=1, max_tasks=6, consumer=name, liveness_file=True
                )
            )
        return specs
