"""Check 1: the 3-node cluster loses a partition leader to SIGKILL mid-stream and loses nothing acknowledged.

An idempotent ``acks=all`` producer writes ``messages`` numbered records (``key:seq``, seq increasing per key)
to an RF 3 / min ISR 2 topic. When a third is acknowledged, the leader of partition 0 is killed with SIGKILL;
writes continue on the two survivors (2 >= min ISR); when two thirds are acknowledged it is restarted on its
old data dir (log recovery) and rejoins the ISR. A ``read_committed`` consumer then reads the topic to its end.

Pass conditions: every acknowledged record is read exactly once; per key the sequence numbers read are strictly
increasing (order per key); no record is read twice (idempotence across the retries of the failover); every
partition's ISR is back to 3 replicas.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from .config import ScaleConfig
from .kafka_cluster import KafkaCluster
from .report import Result

rdkafka_log = logging.getLogger("deploy.scale.rdkafka")
PARTITIONS = 3
KEYS = 24


@dataclass
class _Acks:
    acked: dict[str, set[int]] = field(default_factory=dict)
    count: int = 0
    failed: int = 0

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            return
        key, seq = (msg.value() or b"").decode().split(":")
        self.acked.setdefault(key, set()).add(int(seq))
        self.count += 1


def partition_state(admin: AdminClient, topic: str) -> dict[int, tuple[int, list[int]]]:
    """{partition: (leader, isr)} from the cluster's metadata (-1: no leader)."""
    meta = admin.list_topics(topic, timeout=10).topics.get(topic)
    if meta is None or meta.error is not None:
        return {}  # a fresh topic's metadata may not have reached the broker asked yet
    return {p: (pm.leader, sorted(pm.isrs)) for p, pm in meta.partitions.items()}


def _leaders_avoid(admin: AdminClient, topic: str, node: int) -> bool:
    state = partition_state(admin, topic)
    return len(state) == PARTITIONS and all(leader not in (node, -1) for leader, _isr in state.values())


def _fully_replicated(admin: AdminClient, topic: str) -> bool:
    state = partition_state(admin, topic)
    return len(state) == PARTITIONS and all(len(isr) == 3 and leader >= 0 for leader, isr in state.values())


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.2)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def run(cfg: ScaleConfig, cluster: KafkaCluster, *, messages: int = 30000, rate: int = 2500) -> list[Result]:
    common: dict[str, Any] = {"bootstrap.servers": cfg.bootstrap_servers, "logger": rdkafka_log}
    admin = AdminClient(common)
    topic = f"{cfg.topic_prefix}kafka-check-{uuid.uuid4().hex[:8]}"
    futures = admin.create_topics(
        [
            NewTopic(
                topic, num_partitions=PARTITIONS, replication_factor=3, config={"min.insync.replicas": "2"}
            )
        ]
    )
    futures[topic].result(30)
    _wait(lambda: _fully_replicated(admin, topic), 30, "ISR of 3")
    victim = partition_state(admin, topic)[0][0]

    acks = _Acks()
    producer = Producer(
        {**common, "acks": "all", "enable.idempotence": True, "linger.ms": 5, "delivery.timeout.ms": 120000}
    )
    next_seq = dict.fromkeys((f"k{i}" for i in range(KEYS)), 0)
    killed_at = restarted_at = failover_s = 0.0
    log_offset = acked_at_kill = acked_while_down = 0
    started = time.monotonic()
    for i in range(messages):
        key = f"k{i % KEYS}"
        value = f"{key}:{next_seq[key]}".encode()
        next_seq[key] += 1
        while True:
            try:
                producer.produce(topic, key=key.encode(), value=value, on_delivery=acks.on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 250 == 0:
            producer.poll(0)
            ahead = (i / rate) - (time.monotonic() - started)  # steady pace: the kill lands mid-stream
            if ahead > 0:
                time.sleep(ahead)
            if not killed_at and acks.count >= messages // 3:
                cluster.kill(victim)
                killed_at = time.monotonic()
                acked_at_kill = acks.count
            elif killed_at and not failover_s and _leaders_avoid(admin, topic, victim):
                failover_s = time.monotonic() - killed_at
            if failover_s and not restarted_at and acks.count >= 2 * messages // 3:
                log_offset = cluster.log_size(victim)
                cluster.start(victim)
                restarted_at = time.monotonic()
                acked_while_down = acks.count - acked_at_kill
    unflushed = producer.flush(120)
    produce_s = time.monotonic() - started
    if not restarted_at:  # the stream outran the failover: restart now so the rest still runs
        log_offset = cluster.log_size(victim)
        cluster.start(victim)
        restarted_at = time.monotonic()
        acked_while_down = acks.count - acked_at_kill
    cluster.wait_ready(victim, since=log_offset)
    rejoin_s = _wait(lambda: _fully_replicated(admin, topic), 90, "ISR back to 3") + (
        time.monotonic() - restarted_at
    )

    read: dict[str, list[int]] = {}
    consumer = Consumer(
        {**common, "group.id": f"scale-reader-{uuid.uuid4().hex[:8]}", "isolation.level": "read_committed",
         "enable.auto.commit": False, "enable.partition.eof": True, "auto.offset.reset": "earliest"}
    )  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        pending = set(range(PARTITIONS))
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                    continue
                raise KafkaException(err)
            key, seq = (msg.value() or b"").decode().split(":")
            read.setdefault(key, []).append(int(seq))
    finally:
        consumer.close()

    total_read = sum(len(v) for v in read.values())
    duplicates = sum(len(v) - len(set(v)) for v in read.values())
    missing = sum(len(acked - set(read.get(key, []))) for key, acked in acks.acked.items())
    out_of_order = [key for key, seqs in read.items() if any(a >= b for a, b in itertools.pairwise(seqs))]
    figures = (
        f"{messages} sent, {acks.count} acked, {acks.failed} failed, {unflushed} unflushed in {produce_s:.1f} s; "
        f"broker {victim} (leader of p0) SIGKILLed after {acked_at_kill} acks, leaders moved in {failover_s:.1f} s, "
        f"{acked_while_down} acked while it was down, "
        f"restarted and back in every ISR {rejoin_s:.1f} s after restart; {total_read} read"
    )
    return [
        Result("kafka: every acknowledged message read (nothing lost)", missing == 0 and acks.count > 0,
               f"{missing} acknowledged missing; {figures}"),
        Result("kafka: no message read twice (idempotent producer across failover)", duplicates == 0,
               f"{duplicates} duplicates"),
        Result("kafka: order per key", not out_of_order, f"{len(out_of_order)} keys out of order"),
        Result("kafka: all sent acknowledged (min ISR 2 held with one broker down)",
               acks.count == messages and acks.failed == 0, f"{acks.count}/{messages} acked"),
    ]  # fmt: skip
