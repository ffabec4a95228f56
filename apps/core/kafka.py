"""Kafka plumbing: topic names, the topic declaration, producer/consumer factories and topic creation.

- Topics are declared once, in ``config/kafka/topics.toml``; ``topics_ensure`` creates missing ones
  idempotently with the declared partition counts.
- Logical topic names (``orders.commands``) get the environment's ``KAFKA_TOPIC_PREFIX`` here, nowhere else.
- Producers: ``acks=all`` and idempotence on, so a retried send is never duplicated by the broker.
- Consumers: auto-commit off; offsets are committed by the caller only after its effect's transaction.
- ``topic_read_to_end`` is the one way to read a topic from its beginning to its end with a throwaway consumer
  (snapshot load, reconciliation, read-model rebuild): it never commits and never joins a real group.
"""

from __future__ import annotations

import base64
import time
import tomllib
import uuid
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)
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


def keys_per_partition(partitions: int, candidates: Iterable[str]) -> list[str]:
    """For each partition, the first of ``candidates`` that a producer's default partitioner (librdkafka's
    ``consistent_random``: CRC-32 of the key modulo the partition count) sends there."""
    found: dict[int, str] = {}
    for key in candidates:
        found.setdefault(zlib.crc32(key.encode()) % partitions, key)
        if len(found) == partitions:
            return [found[p] for p in range(partitions)]
    raise ValueError(f"the candidates cover only {len(found)} of {partitions} partitions")


def kafka_error(exc: KafkaException) -> KafkaError | None:
    """The ``KafkaError`` a ``KafkaException`` carries (its code and flags), or None."""
    error = exc.args[0] if exc.args else None
    return error if isinstance(error, KafkaError) else None


def _base_config() -> dict[str, Any]:
    conf = kafka_settings()
    return {
        "bootstrap.servers": conf["BOOTSTRAP_SERVERS"],
        "client.id": conf["CLIENT_ID"],
        "security.protocol": conf.get("SECURITY_PROTOCOL", "PLAINTEXT"),
        "reconnect.backoff.max.ms": conf["RECONNECT_BACKOFF_MAX_MS"],
        "metadata.recovery.strategy": conf["METADATA_RECOVERY_STRATEGY"],
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


def consume_ready(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """Up to ``max_messages`` fetched messages, returning as soon as one is there (or after ``timeout`` s).

    ``Consumer.consume(n, timeout)`` alone waits for all n messages or the whole timeout (librdkafka's batch
    consume): at a moderate rate every message would wait up to ``timeout`` in the local queue before anyone
    handles it. Here whatever is already fetched is taken at once; only an empty queue waits, for one message.
    """
    msgs = consumer.consume(max_messages, 0)
    if msgs or timeout <= 0:
        return msgs
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(max_messages - 1, 0)]


def topics_ensure(specs: list[TopicSpec] | None = None, *, timeout: float = 30.0) -> dict[str, str]:
    """Create every declared topic that does not exist yet, and set the declared configs of those that do (a
    config added to the declaration later, e.g. the snapshots' ``max.message.bytes``, reaches existing
    clusters). Returns {physical name: "created"|"exists"}."""
    specs = declared_topics() if specs is None else specs
    admin = admin_client()
    existing = set(admin.list_topics(timeout=timeout).topics)
    result: dict[str, str] = {}
    to_create: list[NewTopic] = []
    to_alter: list[ConfigResource] = []
    for spec in specs:
        physical = topic_name(spec.name)
        if physical in existing:
            result[physical] = "exists"
            if spec.config:
                entries = [
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in spec.config.items()
                ]
                to_alter.append(ConfigResource(ResourceType.TOPIC, physical, incremental_configs=entries))
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
    if to_alter:
        for future in admin.incremental_alter_configs(to_alter, request_timeout=timeout).values():
            future.result()
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


def _unknown_topic_pause(error: KafkaError | None, deadline: float) -> bool:
    """True, after a short pause, while ``error`` says the answering broker does not know the topic and ``deadline``
    (monotonic) has not passed: a topic created a moment ago may not be in its metadata yet, so ask again."""
    if error is None or error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() >= deadline:
        return False
    time.sleep(0.1)
    return True


def topic_id(logical: str, *, timeout: float = 30.0) -> str:
    """The topic's id as Kafka prints it (URL-safe base64 of its 128-bit UUID, 22 characters).

    Kafka gives every topic a new id when it is created, so the id names one incarnation of a topic name: a
    topic deleted and created again under the same name has another id.
    """
    admin = admin_client()  # kept referenced until the result: a collected client cancels its requests
    physical = topic_name(logical)
    deadline = time.monotonic() + timeout
    while True:
        try:
            uid = (
                admin.describe_topics(TopicCollection([physical]), request_timeout=timeout)[physical]
                .result()
                .topic_id
            )
            break
        except KafkaException as exc:
            # A topic created a moment ago (seen right after topics_ensure under load): asked again until the timeout.
            if not _unknown_topic_pause(kafka_error(exc), deadline):
                raise
    raw = b"".join(
        half.to_bytes(8, "big", signed=True)  # the client gives the two halves as signed 64-bit ints
        for half in (uid.get_most_significant_bits(), uid.get_least_significant_bits())
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ------------------------------------------------------------------------------------------ read to end


class TopicNotReadable(RuntimeError):
    """The topic does not exist (or its metadata carries an error)."""


class TopicReadTimeout(TimeoutError):
    """The read did not reach the end in time (overall ``timeout`` or ``idle_timeout`` without a record)."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def topic_read_to_end(
    topic: str,
    *,
    partitions: Iterable[int] | None = None,
    timeout: float | None = 30.0,
    idle_timeout: float | None = None,
    group_prefix: str = "read-to-end",
    start: dict[int, int] | None = None,
    stop: dict[int, int] | None = None,
) -> Iterator[TopicRecord]:
    """Every committed record of ``topic`` (logical name) from its beginning up to its end when the read starts.

    - ``partitions``: the partitions to read (default: all). Empty partitions are not assigned at all.
    - ``start``/``stop``: per partition, the first offset to read and the offset to stop before (instead of the
      beginning and the end); a partition whose range is empty is not read.
    - The end of a partition is its high watermark at the start or the consumer's end-of-partition (with
      ``read_committed`` that is the last stable offset), whichever comes first; records appended later are
      not yielded. Within a partition records come in offset order; partitions interleave as fetched.
    - ``timeout`` bounds the whole read, ``idle_timeout`` the wait for any record (None: unbounded); either
      raises ``TopicReadTimeout``. A missing topic raises ``TopicNotReadable``; a broker error ``KafkaException``.
    - The consumer is throwaway (a fresh group, never committed) and closed when the iterator finishes or is
      closed.
    """
    physical = topic_name(topic)
    consumer = consumer_create(
        group_id=f"{group_prefix}-{uuid.uuid4().hex[:12]}", **{"enable.partition.eof": True}
    )
    try:
        meta_timeout = 10.0 if timeout is None else min(10.0, timeout)
        meta_deadline = time.monotonic() + meta_timeout
        while True:
            info = consumer.list_topics(physical, timeout=meta_timeout).topics.get(physical)
            # Seen as a fresh-clone failure: the engine's first snapshot read right after its test created the
            # topic. A topic that stays unknown is not readable.
            if info is None or not _unknown_topic_pause(info.error, meta_deadline):
                break
        if info is None or info.error is not None:
            raise TopicNotReadable(
                f"topic {physical} is not readable: {None if info is None else info.error}"
            )
        wanted = sorted(info.partitions) if partitions is None else sorted(set(partitions))
        ends: dict[int, int] = {}
        for p in wanted:
            _low, high = consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=meta_timeout)
            high = min(high, (stop or {}).get(p, high))
            if high > (start or {}).get(p, 0):
                ends[p] = high
        consumer.assign(
            [TopicPartition(physical, p, (start or {}).get(p, OFFSET_BEGINNING)) for p in sorted(ends)]
        )
        pending = set(ends)
        deadline = None if timeout is None else time.monotonic() + timeout
        idle_since = time.monotonic()
        while pending:
            now = time.monotonic()
            if deadline is not None and now > deadline:
                raise TopicReadTimeout(
                    f"{physical} not read to its end in {timeout}s; left {sorted(pending)}"
                )
            if idle_timeout is not None and now - idle_since > idle_timeout:
                raise TopicReadTimeout(
                    f"no record from {physical} in {idle_timeout}s; left {sorted(pending)}"
                )
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            idle_since = time.monotonic()
            partition, offset = msg.partition() or 0, msg.offset() or 0
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(err)
                pending.discard(partition)
                continue
            if partition not in pending or offset >= ends[partition]:
                continue
            if offset >= ends[partition] - 1:
                pending.discard(partition)
            yield TopicRecord(partition, offset, msg.key(), msg.value())
    finally:
        consumer.close()
