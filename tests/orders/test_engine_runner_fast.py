"""The engine runner's hot path equals its specification, and transaction windows keep exactly-once.

- ``command_decode_fast`` decodes what ``command_decode`` decodes (same command, same envelope fields) and
  refuses what it refuses; ``command_records`` produces bytes identical to
  ``events.encode(event_envelope(...))`` for every command and event type the engine has (the seeded stream of
  ``tests/engine/test_native.py``: every order type, class and tif, sessions, halts, splits) and for the
  bench's mix.
- Against the real broker: a transaction never holds more than ``batch_size`` commands, windows span several
  polls, and every snapshot written at a window's end is the engine state exactly at its ``seq`` (later commands
  are applied while that window's commit is in flight).
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from apps.core import events
from apps.orders.engine_runner import (
    ENGINE_NAMESPACE,
    EngineRunner,
    EngineTopics,
    Origin,
    UndecodableCommand,
    _uuid5_text,
    command_decode,
    command_decode_fast,
    command_envelope,
    command_outputs,
    command_records,
    event_envelope,
    snapshot_decode,
)
from engine import Engine
from engine.commands import Command, SessionOpen
from tests.engine.test_native import _with_splits, stream
from tests.orders.engine_kafka_helpers import (
    by_key,
    committed,
    envelope_bytes,
    make_topics,
    produce,
    read_all,
    twin,
    workload,
)

TOPICS = EngineTopics()


def _raw_commands(commands: list[Command]) -> list[bytes]:
    base = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
    out: list[bytes] = []
    for i, command in enumerate(commands):
        env = command_envelope(
            command,
            aggregate_id=f"agg-{i % 7}",
            sequence=1 + i,
            occurred_at=base + timedelta(microseconds=7 * i),
            correlation_id=None if i % 3 == 0 else uuid.UUID(int=i + 1),
        )
        out.append(events.encode(env))
    return out


@pytest.mark.parametrize(
    ("commands", "partition"),
    [
        pytest.param(stream(seed=7, n=3000), 0, id="native-stream-every-command-p0"),
        pytest.param(_with_splits(stream(seed=5, n=1500)), 3, id="native-stream-with-splits-p3"),
        pytest.param(
            [c for _s, c in workload(seed=1, n=1500, symbols=["AAPL", "MSFT"])], 11, id="runner-mix"
        ),
    ],
)
def test_fast_path_is_byte_identical_to_the_specification(commands: list[Command], partition: int) -> None:
    engine_spec, engine_fast = Engine(), Engine()
    origin = Origin("qaSw_rRMQhyASwWtkjpjmg", partition)
    kinds: set[str] = set()
    records = 0
    for offset, raw in enumerate(_raw_commands(commands)):
        spec_env, spec_cmd = command_decode(raw)
        fast_env, fast_cmd = command_decode_fast(raw)
        assert fast_cmd == spec_cmd
        assert (fast_env.event_id, fast_env.occurred_at, fast_env.correlation_id) == (
            spec_env.event_id,
            spec_env.occurred_at,
            spec_env.correlation_id,
        )
        produced = engine_spec.apply(offset, spec_cmd)
        assert engine_fast.apply(offset, fast_cmd) == produced
        expected = [
            events.encode(event_envelope(ev, i, origin=origin, command=spec_env))
            for i, ev in enumerate(produced)
        ]
        fast = command_records(produced, origin=origin, command=fast_env, key="fallback-key")
        assert [value for _k, value, _m in fast] == expected
        assert [k for k, _v, _m in fast] == [ev.symbol or "fallback-key" for ev in produced]
        outputs = command_outputs(
            produced, origin=origin, command=spec_env, key="fallback-key", topics=TOPICS
        )
        assert [o.value for o in outputs if o.topic == TOPICS.events] == expected
        assert [o.topic for o in outputs if o.topic != TOPICS.events] == [
            TOPICS.trades if type(ev).__name__ == "TradeExecuted" else TOPICS.book
            for ev in produced
            if type(ev).__name__ in ("TradeExecuted", "BookLevelChanged")
        ]
        kinds.update(type(ev).__name__ for ev in produced)
        records += len(fast)
    assert records > len(commands)
    assert engine_fast.state_hash() == engine_spec.state_hash()
    if len(commands) >= 3000:  # the native stream reaches every event type but the split ones
        assert kinds >= {
            "OrderAccepted", "OrderRejected", "OrderFilled", "TradeExecuted", "OrderCanceled", "OrderExpired",
            "OrderReplaced", "OrderTriggered", "OrderActivated", "BookLevelChanged", "SessionChanged",
        }  # fmt: skip


def _envelope_json(**changes: Any) -> bytes:
    env = command_envelope(
        SessionOpen(), aggregate_id="s", sequence=1, occurred_at=datetime(2025, 1, 2, tzinfo=UTC)
    )
    data = msgspec.to_builtins(env)
    data.update(changes)
    return msgspec.json.encode(data)


@pytest.mark.parametrize(
    ("raw", "decodes"),
    [
        pytest.param(None, False, id="none"),
        pytest.param(b"", False, id="empty"),
        pytest.param(b"not json", False, id="not-json"),
        pytest.param(b"{}", False, id="empty-object"),
        pytest.param(_envelope_json(event_type="orders.OrderAccepted"), False, id="not-a-command-type"),
        pytest.param(_envelope_json(occurred_at="2025-01-02T00:00:00"), False, id="naive-time"),
        pytest.param(_envelope_json(occurred_at="2025-01-02T01:00:00+01:00"), False, id="not-utc"),
        pytest.param(_envelope_json(sequence=0), False, id="sequence-0"),
        pytest.param(_envelope_json(event_version=0), False, id="version-0"),
        pytest.param(_envelope_json(extra=1), False, id="unknown-envelope-field"),
        pytest.param(_envelope_json(payload={}), False, id="no-command"),
        pytest.param(_envelope_json(payload={"command": {"command": "Nope"}}), False, id="unknown-command"),
        pytest.param(
            _envelope_json(payload={"command": {"command": "Halt", "symbol": "A", "x": 1}}),
            False,
            id="unknown-command-field",
        ),
        pytest.param(
            _envelope_json(
                payload={
                    "command": {
                        "command": "SplitApply",
                        "symbol": "A",
                        "split_id": "s",
                        "numerator": 0,
                        "denominator": 1,
                        "tick_e4": 1,
                    }
                }
            ),
            False,
            id="split-non-positive",
        ),
        pytest.param(
            _envelope_json(payload={"command": {"command": "SessionOpen"}, "session_date": "2025-01-02"}),
            True,
            id="session-extra-payload-keys",
        ),
        pytest.param(_envelope_json(correlation_id=str(uuid.UUID(int=5))), True, id="with-correlation"),
    ],
)
def test_fast_decode_accepts_and_refuses_exactly_what_the_specification_does(
    raw: bytes | None, decodes: bool
) -> None:
    if decodes:
        spec_env, spec_cmd = command_decode(raw)
        fast_env, fast_cmd = command_decode_fast(raw)
        assert fast_cmd == spec_cmd
        assert (fast_env.event_id, fast_env.correlation_id) == (spec_env.event_id, spec_env.correlation_id)
    else:
        with pytest.raises(UndecodableCommand):
            command_decode(raw)
        with pytest.raises(UndecodableCommand):
            command_decode_fast(raw)


def test_uuid5_text_equals_uuid5() -> None:
    rng = random.Random(3)
    names = [f"SYM{rng.randint(0, 99)}:{rng.randint(1, 10**9)}:{rng.randint(0, 40)}" for _ in range(2000)]
    names += ["", "p0:-1:0", "ÄÖÜ:1:2"]
    assert [_uuid5_text(n) for n in names] == [str(uuid.uuid5(ENGINE_NAMESPACE, n)) for n in names]


# ------------------------------------------------------------------------------------ against the broker


@pytest.mark.kafka
def test_transactions_are_bounded_by_batch_size_and_snapshots_sit_at_window_ends(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=1)
    group = f"engine-fast-{uuid.uuid4().hex[:10]}"
    cmds = workload(seed=21, n=120, symbols=["AAPL", "MSFT"])
    delivered = produce(
        topics.commands, [(0, sym, envelope_bytes(cmd, i)) for i, (sym, cmd) in enumerate(cmds)]
    )

    runner = EngineRunner(
        partitions=[0], topics=topics, group=group, batch_size=7, batch_ms=60_000, snapshot_every=10
    )
    stats = runner.run(until_caught_up=True, install_signals=False)

    assert stats.processed == 120
    assert stats.largest_transaction == 7
    assert stats.transactions >= 120 // 7 + 1  # 18 windows at most 7 each, plus the exit snapshot
    reference = twin(delivered, topics)
    assert by_key(read_all(topics.events)) == reference.events_by_key
    assert by_key(read_all(topics.trades)) == reference.trades_by_key
    assert committed(topics.commands, group, [0]) == {0: 120}

    snapshots = [snapshot_decode(v) for _p, _k, v in read_all(topics.snapshots)]
    assert len(snapshots) == stats.snapshots >= 120 // 14
    assert snapshots[-1].seq == 119
    engine, applied = Engine(), 0
    for snap in snapshots:  # each is the state exactly after its seq, though later input was already applied
        while applied <= snap.seq:
            engine.apply(applied, command_decode(delivered[applied].value)[1])
            applied += 1
        assert snap.state_hash == engine.state_hash()
    seqs = [s.seq for s in snapshots]
    assert seqs == sorted(set(seqs))


@pytest.mark.kafka
def test_one_window_spans_several_polls_and_restart_resumes_exactly_once(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=2)
    group = f"engine-fast-{uuid.uuid4().hex[:10]}"
    cmds = workload(seed=4, n=300, symbols=["AAPL", "MSFT"])
    records = [(0 if sym == "AAPL" else 1, sym, envelope_bytes(cmd, i)) for i, (sym, cmd) in enumerate(cmds)]
    delivered = produce(topics.commands, records[:200])
    first = EngineRunner(partitions=[0, 1], topics=topics, group=group, snapshot_every=10_000).run(
        until_caught_up=True, install_signals=False
    )
    delivered += produce(topics.commands, records[200:])
    second = EngineRunner(partitions=[0, 1], topics=topics, group=group, snapshot_every=10_000).run(
        until_caught_up=True, install_signals=False
    )

    assert (first.processed, second.processed, second.suppressed) == (200, 100, 0)
    delivered.sort(key=lambda d: (d.partition, d.offset))
    reference = twin(delivered, topics)
    output = read_all(topics.events)
    assert by_key(output) == reference.events_by_key
    ends = {p: max(d.offset for d in delivered if d.partition == p) + 1 for p in (0, 1)}
    assert committed(topics.commands, group, [0, 1]) == ends
