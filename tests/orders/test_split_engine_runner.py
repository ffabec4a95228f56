"""``SplitApply`` through the engine process over real Kafka: applied once, in the snapshot, across a restart."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from apps.core import events
from apps.orders.engine_runner import EngineRunner, snapshot_decode
from engine import Engine, NewOrder, SplitApply
from engine.commands import Command
from tests.orders.engine_kafka_helpers import SHARE, envelope_bytes, make_topics, produce, read_all, twin

pytestmark = [pytest.mark.kafka]


def _limit(oid: str, acct: str, side: str, qty_e9: int, px: int) -> NewOrder:
    return NewOrder(
        order_id=oid,
        account_id=acct,
        symbol="AAPL",
        side=side,  # type: ignore[arg-type]
        type="limit",
        tif="gtc",
        qty_e9=qty_e9,
        limit_price_e4=px,
    )


SPLIT = SplitApply(symbol="AAPL", split_id="corporate_action:7", numerator=3, denominator=2, tick_e4=100)


def test_split_in_the_engine_process_survives_a_restart_and_is_applied_once(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=1)
    group = f"engine-test-{uuid.uuid4().hex[:10]}"
    first: list[Command] = [
        _limit("s1", "mm", "sell", 10 * SHARE, 60_0100),  # 60.01 -> 40.0067 -> sell rounds up: 40.01
        _limit("b1", "cust", "buy", 5 * SHARE // 2, 59_0000),  # 2.5 (fractional) -> 3.75 @ 39.3333 -> 39.33
        SPLIT,
    ]
    delivered = produce(topics.commands, [(0, "AAPL", envelope_bytes(c, i)) for i, c in enumerate(first)])
    stats = EngineRunner(partitions=[0], topics=topics, group=group).run(until_caught_up=True)
    assert stats.processed == 3
    snaps = read_all(topics.snapshots)
    assert len(snaps) == 1  # written on exit: version 2, with the applied split id
    restored = Engine.restore(snapshot_decode(snaps[0][2]).engine)
    assert (restored.splits, restored.last_seq) == (["corporate_action:7"], 2)

    second: list[Command] = [
        SPLIT,  # redelivered (e.g. the outbox relay retried): nothing happens
        _limit("b2", "cust2", "buy", 15 * SHARE, 40_0100),  # crosses the adjusted sell exactly
        SplitApply(symbol="AAPL", split_id="bad", numerator=1, denominator=1, tick_e4=100),
    ]
    delivered += produce(
        topics.commands, [(0, "AAPL", envelope_bytes(c, 10 + i)) for i, c in enumerate(second)]
    )
    bad = events.new_envelope(
        event_type="orders.SplitRequested",
        aggregate_type="corporate_action",
        aggregate_id="zero",
        sequence=1,
        payload={"command": {**msgspec.to_builtins(SPLIT), "split_id": "zero", "numerator": 0}},
    )
    produce(topics.commands, [(0, "AAPL", events.encode(bad))])  # refused by decoding: dead-lettered
    stats = EngineRunner(partitions=[0], topics=topics, group=group).run(until_caught_up=True)
    assert stats.recoveries == {0: 2}  # restored from the version-2 snapshot
    assert (stats.processed, stats.dead_lettered) == (3, 1)

    raw = [v for _p, _k, v in read_all(topics.events)]
    out = [events.decode(v) for v in raw]
    by_offset: dict[int, list[events.EventEnvelope]] = {}
    for env in out:
        by_offset.setdefault(env.payload["seq"], []).append(env)
    adjusted = {
        e.payload["order_id"]: (e.payload["qty"], e.payload["limit_price"])
        for e in by_offset[2]
        if e.event_type == "engine.OrderAdjusted"
    }
    assert adjusted == {"s1": ("15", "40.01"), "b1": ("3.75", "39.33")}
    assert 3 not in by_offset  # the redelivered split
    fills = [
        (e.payload["order_id"], e.payload["price"], e.payload["qty"], e.payload["leaves_qty"])
        for e in by_offset[4]
        if e.event_type == "engine.OrderFilled"
    ]
    assert fills == [("s1", "40.01", "15", "0"), ("b2", "40.01", "15", "0")]
    # A 1-for-1 "split" passes decoding (positive terms) and is applied as a no-op adjustment.
    assert [e.event_type for e in by_offset[5]][:2] == ["engine.SplitApplied", "engine.OrderAdjusted"]

    # Exactly what one uncrashed engine fed the same offsets produces.
    assert raw == twin(delivered, topics).events_by_key["AAPL"]
