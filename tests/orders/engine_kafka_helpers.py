"""Helpers for the engine-process tests: produce command envelopes, read topics to their end, an in-process twin."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from apps.core import events, kafka
from apps.orders.engine_runner import (
    CommandWindow,
    EngineTopics,
    Origin,
    command_decode,
    command_envelope,
    command_event_id,
    command_outputs,
)
from engine import CancelOrder, Engine, NewOrder
from engine.commands import Command

BASE_TIME = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
SHARE = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Delivered:
    partition: int
    offset: int
    key: str
    value: bytes


def make_topics(fresh_topic: Any, partitions: int) -> EngineTopics:
    return EngineTopics(
        commands=fresh_topic(partitions=partitions, base="cmd"),
        events=fresh_topic(partitions=partitions, base="ev"),
        trades=fresh_topic(partitions=partitions, base="tr"),
        book=fresh_topic(partitions=partitions, base="bk"),
        snapshots=fresh_topic(partitions=partitions, base="snap"),
        dead_letters=fresh_topic(partitions=1, base="dlq"),
    )


def envelope_bytes(command: Command, n: int) -> bytes:
    env = command_envelope(
        command,
        aggregate_id=getattr(command, "order_id", "session"),
        sequence=1,
        occurred_at=BASE_TIME + timedelta(milliseconds=n),
        correlation_id=uuid.UUID(int=n + 1),
    )
    return events.encode(env)


def produce(topic: str, records: list[tuple[int, str, bytes]]) -> list[Delivered]:
    """Produce (partition, key, value) records; return them with their offsets, in offset order."""
    producer = kafka.producer_create()
    delivered: list[Delivered] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
            return
        delivered.append(
            Delivered(
                msg.partition() or 0, msg.offset() or 0, (msg.key() or b"").decode(), msg.value() or b""
            )
        )

    for partition, key, value in records:
        producer.produce(
            kafka.topic_name(topic),
            key=key.encode(),
            value=value,
            partition=partition,
            on_delivery=on_delivery,
        )
    assert producer.flush(30) == 0
    assert not errors, errors
    return sorted(delivered, key=lambda d: (d.partition, d.offset))


def read_all(topic: str, *, timeout: float = 30.0) -> list[tuple[int, str, bytes]]:
    """Every committed record of a topic as (partition, key, value), in partition/offset order."""
    import time

    physical = kafka.topic_name(topic)
    consumer = kafka.consumer_create(
        group_id=f"reader-{uuid.uuid4().hex[:10]}", **{"enable.partition.eof": True}
    )
    try:
        meta = consumer.list_topics(physical, timeout=10).topics[physical]
        parts = sorted(meta.partitions)
        consumer.assign([TopicPartition(physical, p, OFFSET_BEGINNING) for p in parts])
        pending = set(parts)
        out: list[tuple[int, int, str, bytes]] = []
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition() or 0)
                    continue
                raise KafkaException(err)
            out.append(
                (msg.partition() or 0, msg.offset() or 0, (msg.key() or b"").decode(), msg.value() or b"")
            )
    finally:
        consumer.close()
    return [(p, k, v) for p, _o, k, v in sorted(out, key=lambda r: (r[0], r[1]))]


def committed(topic: str, group: str, partitions: list[int]) -> dict[int, int]:
    consumer = kafka.consumer_create(group_id=group)
    try:
        tps = consumer.committed([TopicPartition(kafka.topic_name(topic), p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


@dataclass(slots=True)
class Twin:
    """The uncrashed reference: one in-process engine per partition fed the same (offset, command) pairs."""

    engines: dict[int, Engine]
    events_by_key: dict[str, list[bytes]]
    trades_by_key: dict[str, list[bytes]]


def twin(delivered: list[Delivered], topics: EngineTopics, *, incarnation: str | None = None) -> Twin:
    """The twin of ``delivered``; ``incarnation`` defaults to the command topic's current id."""
    engines: dict[int, Engine] = {}
    events_by_key: dict[str, list[bytes]] = {}
    trades_by_key: dict[str, list[bytes]] = {}
    incarnation = incarnation or kafka.topic_id(topics.commands)
    windows: dict[int, CommandWindow] = {}
    for d in delivered:
        engine = engines.setdefault(d.partition, Engine())
        if windows.setdefault(d.partition, CommandWindow()).repeats(d.offset, command_event_id(d.value)):
            continue  # a republished copy: the runner skips it
        envelope, command = command_decode(d.value)
        produced = engine.apply(d.offset, command)
        for out in command_outputs(
            produced, origin=Origin(incarnation, d.partition), command=envelope, key=d.key, topics=topics
        ):
            if out.topic == topics.events:
                events_by_key.setdefault(out.key, []).append(out.value)
            elif out.topic == topics.trades:
                trades_by_key.setdefault(out.key, []).append(out.value)
    return Twin(engines, events_by_key, trades_by_key)


def by_key(records: list[tuple[int, str, bytes]]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = {}
    for _p, key, value in records:
        grouped.setdefault(key, []).append(value)
    return grouped


def workload(seed: int, n: int, symbols: list[str], start: int = 0) -> list[tuple[str, Command]]:
    """A seeded mix of passive/crossing limits, IOC and market orders and cancels: (symbol, command)."""
    rng = random.Random(seed)
    out: list[tuple[str, Command]] = []
    live: dict[str, list[str]] = {s: [] for s in symbols}
    for i in range(start, start + n):
        sym = rng.choice(symbols)
        r = rng.random()
        if r < 0.15 and live[sym]:
            out.append((sym, CancelOrder(order_id=live[sym].pop(rng.randrange(len(live[sym]))))))
            continue
        oid = f"{sym}-o{i}"
        buy = rng.random() < 0.5
        qty = rng.randint(1, 20) * SHARE // rng.choice([1, 4])
        if r < 0.25:
            cmd = NewOrder(
                order_id=oid,
                account_id=f"a{rng.randint(0, 5)}",
                symbol=sym,
                side="buy" if buy else "sell",
                type="market",
                tif="day",
                qty_e9=qty,
            )
        else:
            px = 100_0000 + rng.randint(-5, 5) * 100
            tif: Literal["ioc", "gtc"] = "ioc" if r < 0.35 else "gtc"
            cmd = NewOrder(
                order_id=oid, account_id=f"a{rng.randint(0, 5)}", symbol=sym, side="buy" if buy else "sell",
                type="limit", tif=tif, qty_e9=qty, limit_price_e4=px,
            )  # fmt: skip
            if tif == "gtc":
                live[sym].append(oid)
        out.append((sym, cmd))
    return out


def fills(records: list[tuple[int, str, bytes]]) -> list[str]:
    ids: list[str] = []
    for _p, _k, value in records:
        env = events.decode(value)
        if env.event_type == "engine.OrderFilled":
            ids.append(env.payload["fill_id"])
    return ids
