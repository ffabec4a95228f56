"""The chaos auditor's engine-vs-twin comparison (``apps.orders.engine_twin``) against a real engine run.

A real ``EngineRunner`` processes a seeded command stream on fresh topics in two runs (the first stops
without its exit snapshot, so the second recovers from an older snapshot and replays silently), with one
undecodable command in the middle. The twin then agrees with it exactly; a forged extra event, a duplicated
event and a forged snapshot are each caught, and nothing else is reported.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from apps.orders.engine_runner import EngineRunner, EngineTopics, SnapshotRecord, snapshot_key, snapshot_load
from apps.orders.engine_twin import engine_twin_compare
from tests.orders.engine_kafka_helpers import envelope_bytes, make_topics, produce, read_all, workload

pytestmark = [pytest.mark.kafka]

SYMBOLS = ["AAPL", "IBM", "MSFT"]


def _run(topics: EngineTopics, group: str, **options: Any) -> None:
    EngineRunner(partitions=[0, 1], topics=topics, group=group, **options).run(
        until_caught_up=True, install_signals=False
    )


def test_twin_equals_recovered_engine_and_forgeries_are_caught(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=2)
    group = f"engine-twin-test-{uuid.uuid4().hex[:10]}"
    records = [
        (SYMBOLS.index(sym) % 2, sym, envelope_bytes(cmd, i))
        for i, (sym, cmd) in enumerate(workload(seed=7, n=120, symbols=SYMBOLS))
    ]
    produce(topics.commands, [*records[:60], (0, "AAPL", b"not a command envelope")])
    _run(topics, group, snapshot_every=7, snapshot_on_exit=False)
    delivered = produce(topics.commands, records[60:])
    _run(topics, group)  # recovers from the last periodic snapshot, then writes the exit snapshot
    ends = {p: max(d.offset for d in delivered if d.partition == p) for p in (0, 1)}

    clean = engine_twin_compare(topics=topics, timeout=60)
    assert (clean.events_ok, clean.state_ok) == (True, True), (clean.events_detail(), clean.state_detail())
    assert (clean.commands, clean.undecodable) == (121, 1)
    assert clean.live_events == clean.twin_events > 100
    assert clean.snapshots == ends

    # A forged extra event: a committed record with a new event id.
    partition, key, value = read_all(topics.events)[0]
    old_id = msgspec.json.decode(value)["event_id"]
    forged_id = str(uuid.uuid4())
    produce(topics.events, [(partition, key, value.replace(old_id.encode(), forged_id.encode()))])
    forged = engine_twin_compare(topics=topics, timeout=60)
    assert (forged.events_ok, forged.state_ok) == (False, True)
    assert (forged.extra, forged.missing, forged.duplicated, forged.differing) == ([forged_id], [], [], [])
    assert forged.live_events == clean.live_events + 1
    assert forged_id in forged.events_detail()

    # The same event committed twice, and a snapshot whose state hash is not the engine's.
    produce(topics.events, [(partition, key, value)])
    snap = snapshot_load(topic=topics.snapshots, partition=1)
    assert snap is not None
    bad = SnapshotRecord(snap.partition, snap.seq, "0" * len(snap.state_hash), snap.engine, snap.incarnation)
    produce(topics.snapshots, [(1, snapshot_key(1), msgspec.msgpack.encode(bad))])
    both = engine_twin_compare(topics=topics, timeout=60)
    assert (both.events_ok, both.state_ok) == (False, False)
    assert (both.extra, both.duplicated, both.missing, both.differing) == ([forged_id], [old_id], [], [])
    assert (both.snapshot_mismatch, both.snapshot_missing) == ([f"p1@{ends[1]}"], [])
