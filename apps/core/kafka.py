"""Kafka plumbing: topic names, the topic declaration, producer/consumer factories and topic creation.

- Topics are declared once, in ``config/kafka/topics.toml``; ``topics_ensure`` creates missing ones
  idempotently with the declared partition counts.
- Logical topic names (``orders.commands``) get the environment's ``KAFKA_TOPIC_PREFIX`` here, nowhere else.
- Producers: ``acks=all`` and idempotence on, so a retried send is never duplicated by the broker.
- Consumers: auto-commit off; offsets are committed by the caller only after its effect's transaction.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from django.conf import settings


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]
    description: str = ""


def kafka_settings() -> dict[str, Any]:
    return dict(settings.KAFKA)


def topic_name(logical: str) -> str:
    """The physical topic name for a logical one in this environment."""
    return f"{kafka_settings()['TOPIC_PREFIX']}{logical}"


def logical_topic_name(physical: str) -> str:
    prefix = kafka_settings()["TOPIC_PREFIX"]
    return physical[len(prefix) :] if prefix and physical.startswith(prefix) else physical


def declared_topics(path: Path | None = None) -> list[TopicSpec]:
    path = path or Path(kafka_settings()["TOPICS_FILE"])
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    specs: list[TopicSpec] = []
    for item in data.get("topic", []):
        config: dict[str, str] = {}
        if "retention_ms" in item:
            config["retention.ms"] = str(item["retention_ms"])
        if "cleanup_policy" in item:
            config["cleanup.policy"] = str(item["cleanup_policy"])
        for key, value in item.get("config", {}).items():
            config[str(key)] = str(value)
        specs.append(
            TopicSpec(
                name=str(item["name"]),
                partitions=int(item["partitions"]),
                config=config,
                description=str(item.get("description", "")),
            )
        )
    return specs


def declared_topic(logical: str) -> TopicSpec:
    for spec in declared_topics():
        if spec.name == logical:
            return spec
    raise KeyError(f"topic {logical!r} is not declared in {kafka_settings()['TOPICS_FILE']}")


def _base_config() -> dict[str, Any]:
    conf = kafka_settings()
    return {
        "bootstrap.servers": conf["BOOTSTRAP_SERVERS"],
        "client.id": conf["CLIENT_ID"],
        "security.protocol": conf.get("SECURITY_PROTOCOL", "PLAINTEXT"),
    }


def admin_client() -> AdminClient:
    return AdminClient({**_base_config(), "socket.timeout.ms": 5000})


def producer_create(**overrides: Any) -> Producer:
    config: dict[str, Any] = {
        **_base_config(),
        "acks": "all",
        "enable.idempotence": True,
        "max.in.flight.requests.per.connection": 5,
        "compression.type": "lz4",
        "linger.ms": 2,
        "delivery.timeout.ms": 30000,
        "request.timeout.ms": kafka_settings()["REQUEST_TIMEOUT_MS"],
    }
    config.update(overrides)
    return Producer(config)


def consumer_create(*, group_id: str, **overrides: Any) -> Consumer:
    config: dict[str, Any] = {
        **_base_config(),
        "group.id": f"{kafka_settings()['TOPIC_PREFIX']}{group_id}",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "session.timeout.ms": 10000,
        "max.poll.interval.ms": 300000,
    }
    config.update(overrides)
    return Consumer(config)


def topics_ensure(specs: list[TopicSpec] | None = None, *, timeout: float = 30.0) -> dict[str, str]:
    """Create every declared topic that does not exist yet. Returns {physical name: "created"|"exists"}."""
    specs = declared_topics() if specs is None else specs
    admin = admin_client()
    existing = set(admin.list_topics(timeout=timeout).topics)
    result: dict[str, str] = {}
    to_create: list[NewTopic] = []
    for spec in specs:
        physical = topic_name(spec.name)
        if physical in existing:
            result[physical] = "exists"
            continue
        to_create.append(
            NewTopic(physical, num_partitions=spec.partitions, replication_factor=-1, config=spec.config)
        )
    if to_create:
        futures = admin.create_topics(to_create, operation_timeout=timeout, request_timeout=timeout)
        for name, future in futures.items():
            try:
                future.result()
                result[name] = "created"
            except KafkaException as exc:
                if exc.args and exc.args[0].code() == 36:  # TOPIC_ALREADY_EXISTS: a concurrent creator won
                    result[name] = "exists"
                else:
                    raise
    return result


def topics_delete(physical_names: list[str], *, timeout: float = 30.0) -> None:
    if not physical_names:
        return
    admin = admin_client()
    for future in admin.delete_topics(physical_names, operation_timeout=timeout).values():
        try:
            future.result()
        except KafkaException:
            continue
