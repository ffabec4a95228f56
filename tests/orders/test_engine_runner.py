"""The engine process against the real broker: commands in, events out, exactly once across crashes.

Every test makes its own topics (``fresh_topic``) and consumer group, so runs never see each other's data.
Faults are real: a subprocess killed with SIGKILL mid-stream, a graceful SIGTERM, two processes splitting
partitions, and a restart from a snapshot older than the committed offset.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from apps.core import events, kafka
from apps.orders.engine_runner import (
    ENGINE_NAMESPACE,
    EngineRunner,
    EngineTopics,
    scaled_text,
    snapshot_load,
)
from engine import NewOrder
from engine.commands import Command
from tests.orders.engine_kafka_helpers import (
    BASE_TIME,
    SHARE,
    by_key,
    committed,
    envelope_bytes,
    fills,
    make_topics,
    produce,
    read_all,
    twin,
    workload,
)

pytestmark = [pytest.mark.kafka]

ROOT = Path(__file__).resolve().parents[2]


def _group() -> str:
    return f"engine-test-{uuid.uuid4().hex[:10]}"


def _limit(oid: str, acct: str, side: str, qty: int, px: int, sym: str = "AAPL") -> NewOrder:
    return NewOrder(
        order_id=oid,
        account_id=acct,
        symbol=sym,
        side=side,  # type: ignore[arg-type]
        type="limit",
        tif="gtc",
        qty_e9=qty * SHARE,
        limit_price_e4=px,
    )


def _records(
    cmds: list[tuple[str, Command]], partitions: int, start: int = 0
) -> list[tuple[int, str, bytes]]:
    symbols = sorted({s for s, _ in cmds})
    return [
        (symbols.index(sym) % partitions, sym, envelope_bytes(cmd, start + i))
        for i, (sym, cmd) in enumerate(cmds)
    ]


def _engine_argv(topics: EngineTopics, group: str, partitions: str, *extra: str) -> list[str]:
    argv = [sys.executable, "manage.py", "run_engine", "--partitions", partitions, "--group", group]
    for name in ("commands", "events", "trades", "book", "snapshots", "dead_letters"):
        argv += [f"--{name.replace('_', '-')}-topic", getattr(topics, name)]
    return [*argv, *extra]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "brokerage.settings.test",
        "KAFKA_TOPIC_PREFIX": settings.KAFKA["TOPIC_PREFIX"],
    }


def _wait_committed(topics: EngineTopics, group: str, target: dict[int, int], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = committed(topics.commands, group, sorted(target))
        if all(got[p] >= off for p, off in target.items()):
            return
        time.sleep(0.05)
    raise AssertionError(f"committed offsets never reached {target}")


def test_commands_in_events_out_with_exact_fills(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=1)
    cmds: list[Command] = [
        _limit("s1", "acct-a", "sell", 10, 100_5000),
        _limit("s2", "acct-a", "sell", 5, 100_7500),
        _limit("b1", "acct-b", "buy", 12, 101_0000),
    ]
    delivered = produce(topics.commands, [(0, "AAPL", envelope_bytes(c, i)) for i, c in enumerate(cmds)])
    produce(topics.commands, [(0, "AAPL", b'{"not": "a command"}')])

    stats = EngineRunner(partitions=[0], topics=topics, group=_group()).run(until_caught_up=True)

    assert (stats.processed, stats.dead_lettered, stats.suppressed) == (3, 1, 0)
    inc = kafka.topic_id(topics.commands)  # the command topic's incarnation qualifies every derived id
    assert len(inc) == 22
    out = [events.decode(v) for _p, _k, v in read_all(topics.events)]
    assert [e.event_type for e in out] == [
        "engine.OrderAccepted",
        "engine.BookLevelChanged",
        "engine.OrderAccepted",
        "engine.BookLevelChanged",
        "engine.OrderAccepted",
        "engine.TradeExecuted",
        "engine.OrderFilled",
        "engine.OrderFilled",
        "engine.TradeExecuted",
        "engine.OrderFilled",
        "engine.OrderFilled",
        "engine.BookLevelChanged",
        "engine.BookLevelChanged",
    ]
    assert [e.sequence for e in out] == list(range(1, 14))  # gap-free per-symbol book_seq
    assert {(e.aggregate_type, e.aggregate_id) for e in out} == {("book", "AAPL")}
    buy_cmd = events.decode(delivered[2].value)
    buy_fills = [e for e in out if e.event_type == "engine.OrderFilled" and e.payload["order_id"] == "b1"]
    assert [
        (
            f.payload["fill_id"],
            f.payload["price"],
            f.payload["qty"],
            f.payload["leaves_qty"],
            f.payload["cum_qty"],
        )
        for f in buy_fills
    ] == [(f"{inc}:p0:2:0:b", "100.5", "10", "2", "10"), (f"{inc}:p0:2:1:b", "100.75", "2", "0", "12")]
    first = buy_fills[0]
    assert (first.payload["price_e4"], first.payload["qty_e9"]) == (100_5000, 10 * SHARE)
    assert (first.payload["account_id"], first.payload["liquidity"]) == ("acct-b", "taker")
    assert first.payload["filled_at"] == "2025-03-03T15:00:00.002000Z"
    assert first.occurred_at == BASE_TIME.replace(microsecond=2000)
    assert (first.causation_id, first.correlation_id) == (buy_cmd.event_id, buy_cmd.correlation_id)
    index = first.sequence - 5  # its position within the third command's events (book_seq 5 onwards)
    assert first.event_id == uuid.uuid5(ENGINE_NAMESPACE, f"{inc}:AAPL:{first.sequence}:{index}")
    maker = [e for e in out if e.event_type == "engine.OrderFilled" and e.payload["order_id"] == "s1"]
    assert [(m.payload["fill_id"], m.payload["leaves_qty"], m.payload["liquidity"]) for m in maker] == [
        (f"{inc}:p0:2:0:s", "0", "maker")
    ]
    accepted = out[0].payload
    assert (accepted["limit_price"], accepted["stop_price"], accepted["notional"]) == ("100.5", None, None)

    trades = [events.decode(v) for _p, _k, v in read_all(topics.trades)]
    assert [(t.payload["trade_id"], t.payload["price"], t.payload["qty"]) for t in trades] == [
        (f"{inc}:p0:2:0", "100.5", "10"),
        (f"{inc}:p0:2:1", "100.75", "2"),
    ]
    book = [events.decode(v).payload for _p, _k, v in read_all(topics.book)]
    assert [(b["side"], b["price"], b["qty"], b["order_count"]) for b in book] == [
        ("sell", "100.5", "10", 1),
        ("sell", "100.75", "5", 1),
        ("sell", "100.5", "0", 0),
        ("sell", "100.75", "3", 1),
    ]
    dead = read_all(topics.dead_letters)
    assert [(k, v) for _p, k, v in dead] == [("AAPL", b'{"not": "a command"}')]


def _recreate(topic: str) -> None:
    """Delete the topic and create it again under the same name (a new incarnation: a new topic id)."""
    physical, before = kafka.topic_name(topic), kafka.topic_id(topic)
    kafka.topics_delete([physical])
    deadline = time.monotonic() + 60
    while physical in kafka.admin_client().list_topics(timeout=10).topics:
        assert time.monotonic() < deadline, "the topic was never deleted"
        time.sleep(0.2)
    kafka.topics_ensure([kafka.TopicSpec(name=topic, partitions=1, config={})])
    assert kafka.topic_id(topic) != before


def test_recreated_command_topic_is_a_new_incarnation_whose_ids_never_repeat(fresh_topic: Any) -> None:
    """Topics created again over stored fills: offsets restart at 0, the ids must not (nor the old snapshot apply)."""
    topics = make_topics(fresh_topic, partitions=1)
    pair = [_limit("s1", "acct-a", "sell", 1, 100_0000), _limit("b1", "acct-b", "buy", 1, 100_0000)]
    records = [(0, "AAPL", envelope_bytes(c, i)) for i, c in enumerate(pair)]
    group = _group()

    def fill_and_event_ids() -> tuple[set[str], set[uuid.UUID]]:
        out = [events.decode(v) for _p, _k, v in read_all(topics.events)]
        return {e.payload["fill_id"] for e in out if e.event_type == "engine.OrderFilled"}, {
            e.event_id for e in out
        }

    produce(topics.commands, records)
    first = EngineRunner(partitions=[0], topics=topics, group=group).run(until_caught_up=True)
    old_fills, old_events = fill_and_event_ids()
    old = snapshot_load(topic=topics.snapshots, partition=0)
    assert old is not None
    assert (old.seq, old.incarnation) == (1, kafka.topic_id(topics.commands))
    assert (first.processed, len(old_fills)) == (2, 2)

    _recreate(topics.commands)  # the events and snapshot topics are kept, as a database would be
    produce(topics.commands, records)  # the same commands at the same offsets 0 and 1
    second = EngineRunner(partitions=[0], topics=topics, group=group).run(until_caught_up=True)

    assert second.recoveries == {0: None}  # the old incarnation's snapshot is ignored, not restored
    assert (second.processed, second.suppressed) == (2, 0)
    all_fills, all_events = fill_and_event_ids()
    new_fills, new_events = all_fills - old_fills, all_events - old_events
    assert (len(new_fills), len(new_events)) == (2, len(old_events))
    incarnation = kafka.topic_id(topics.commands)
    assert all(f.startswith(f"{incarnation}:p0:") for f in new_fills)
    assert {f.split(":", 1)[1] for f in new_fills} == {f.split(":", 1)[1] for f in old_fills}


@pytest.mark.parametrize(
    ("value", "places", "text"),
    [
        pytest.param(100_5000, 4, "100.5", id="price-trailing-zeros"),
        pytest.param(1, 9, "0.000000001", id="smallest-qty"),
        pytest.param(0, 4, "0", id="zero"),
        pytest.param(-25, 4, "-0.0025", id="negative"),
        pytest.param(10**40, 9, "1" + "0" * 31, id="huge-no-context-rounding"),
    ],
)
def test_scaled_text_is_exact(value: int, places: int, text: str) -> None:
    assert scaled_text(value, places) == text


def test_restart_from_snapshot_older_than_committed_offset_replays_silently(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=1)
    group = _group()
    cmds = workload(seed=7, n=25, symbols=["AAPL"])
    records = _records(cmds, 1)

    # Phase 1: a snapshot after every batch (the last one covers offset 9).
    delivered = produce(topics.commands, records[:10])
    EngineRunner(partitions=[0], topics=topics, group=group, snapshot_every=1, snapshot_on_exit=False).run(
        until_caught_up=True
    )
    # Phase 2: ten more commands committed with their output, no new snapshot (as if killed after commit).
    delivered += produce(topics.commands, records[10:20])
    EngineRunner(partitions=[0], topics=topics, group=group, snapshot_every=1000, snapshot_on_exit=False).run(
        until_caught_up=True
    )
    snap = snapshot_load(topic=topics.snapshots, partition=0)
    assert snap is not None
    assert snap.seq == 9
    assert committed(topics.commands, group, [0]) == {0: 20}
    output_before = read_all(topics.events)

    # Phase 3: restart. Offsets 10..19 are re-applied without output; 20..24 are new.
    delivered += produce(topics.commands, records[20:])
    runner = EngineRunner(partitions=[0], topics=topics, group=group)
    stats = runner.run(until_caught_up=True)
    assert stats.recoveries == {0: 9}
    assert (stats.processed, stats.suppressed) == (15, 10)

    reference = twin(delivered, topics)
    output = read_all(topics.events)
    assert output[: len(output_before)] == output_before
    assert by_key(output) == reference.events_by_key
    assert len(fills(output)) == len(set(fills(output))) > 0
    assert runner.states[0].engine.state_hash() == reference.engines[0].state_hash()
    final = snapshot_load(topic=topics.snapshots, partition=0)
    assert final is not None
    assert final.seq == 24
    assert final.state_hash == reference.engines[0].state_hash()


@pytest.mark.parametrize(("before", "after"), [("python", "native"), ("native", "python")])
def test_a_snapshot_written_by_one_implementation_restores_into_the_other(
    fresh_topic: Any, before: str, after: str
) -> None:
    # ENGINE_IMPLEMENTATION can change between two runs of a partition (a deploy, a rollback): the restarted
    # engine restores the other implementation's snapshot and replays past it with the same output.
    topics = make_topics(fresh_topic, partitions=1)
    group = _group()
    cmds = workload(seed=23, n=120, symbols=["AAPL", "MSFT"])
    records = _records(cmds, 1)
    # The first implementation snapshots at offset 29, then applies and commits 30..59 without a snapshot.
    delivered = produce(topics.commands, records[:30])
    EngineRunner(
        partitions=[0],
        topics=topics,
        group=group,
        snapshot_every=1,
        snapshot_on_exit=False,
        implementation=before,
    ).run(until_caught_up=True)
    delivered += produce(topics.commands, records[30:60])
    first = EngineRunner(
        partitions=[0],
        topics=topics,
        group=group,
        snapshot_every=1000,
        snapshot_on_exit=False,
        implementation=before,
    )
    first.run(until_caught_up=True)
    snap = snapshot_load(topic=topics.snapshots, partition=0)
    assert snap is not None
    assert snap.seq == 29

    # The other restores it, replays 30..59 without output and applies 60..119.
    delivered += produce(topics.commands, records[60:])
    second = EngineRunner(partitions=[0], topics=topics, group=group, implementation=after)
    stats = second.run(until_caught_up=True)
    assert stats.recoveries == {0: 29}
    assert (stats.processed, stats.suppressed) == (90, 30)
    assert type(first.states[0].engine).__module__ != type(second.states[0].engine).__module__

    reference = twin(delivered, topics)
    output = read_all(topics.events)
    assert by_key(output) == reference.events_by_key
    assert len(fills(output)) == len(set(fills(output))) > 0
    assert second.states[0].engine.state_hash() == reference.engines[0].state_hash()


def test_sigkill_mid_stream_then_restart_matches_uncrashed_twin(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=2)
    group = _group()
    cmds = workload(seed=11, n=400, symbols=["AAPL", "MSFT", "IBM", "GOOG"])
    records = _records(cmds, 2)
    delivered = produce(topics.commands, records[:200])

    argv = _engine_argv(topics, group, "0,1", "--batch-size", "3", "--snapshot-every", "25")
    proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_committed(topics, group, {0: 30})
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    # The second half arrives while the engine is dead: the kill was mid-stream by construction.
    delivered += produce(topics.commands, records[200:])
    delivered.sort(key=lambda d: (d.partition, d.offset))
    ends = {p: max(d.offset for d in delivered if d.partition == p) + 1 for p in (0, 1)}
    # (The dead producer's open transaction keeps the group's offsets "unstable" until the restarted engine's
    # init_transactions aborts it, so they are only read after the restart.)

    restarted = subprocess.run(
        _engine_argv(topics, group, "0,1", "--until-caught-up"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        timeout=180,
        check=False,
    )
    assert restarted.returncode == 0, restarted.stderr.decode()[-3000:]
    assert b"engine ready" in restarted.stderr

    reference = twin(delivered, topics)
    output = read_all(topics.events)
    assert by_key(output) == reference.events_by_key
    assert by_key(read_all(topics.trades)) == reference.trades_by_key
    fill_ids = fills(output)
    assert len(fill_ids) == len(set(fill_ids)) > 0
    for p in (0, 1):
        snap = snapshot_load(topic=topics.snapshots, partition=p)
        assert snap is not None
        assert snap.seq == ends[p] - 1
        assert snap.state_hash == reference.engines[p].state_hash()
    assert committed(topics.commands, group, [0, 1]) == ends


def test_two_processes_split_partitions_and_sigterm_leaves_snapshots(fresh_topic: Any) -> None:
    topics = make_topics(fresh_topic, partitions=4)
    group = _group()
    cmds = workload(seed=3, n=160, symbols=["AAPL", "MSFT", "IBM", "GOOG"])
    delivered = produce(topics.commands, _records(cmds, 4))
    ends = {p: max(d.offset for d in delivered if d.partition == p) + 1 for p in range(4)}

    procs = [
        subprocess.Popen(
            _engine_argv(topics, group, parts, "--snapshot-every", "100000"),
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for parts in ("0,1", "2,3")
    ]
    try:
        _wait_committed(topics, group, ends)
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        outs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0, 0], [err.decode()[-2000:] for _o, err in outs]
    assert all(b"engine stopping" in err for _o, err in outs)

    reference = twin(delivered, topics)
    assert by_key(read_all(topics.events)) == reference.events_by_key
    for p in range(4):
        snap = snapshot_load(topic=topics.snapshots, partition=p)
        assert snap is not None
        assert (snap.partition, snap.seq) == (p, ends[p] - 1)
        assert snap.state_hash == reference.engines[p].state_hash()
    assert committed(topics.commands, group, list(range(4))) == ends
    assert kafka.topic_name(topics.commands).startswith(settings.KAFKA["TOPIC_PREFIX"])


def test_a_snapshot_beyond_kafkas_default_message_size_is_written_and_restored(fresh_topic: Any) -> None:
    # About 165 bytes per live order: beyond about 6,000 resting orders a snapshot was over Kafka's 1 MB
    # default, which the producer refused and the engine then crashed on at every restart. The producer's limit
    # and the declared topic config carry it (the broker checks the compressed batch: 20,000 random ids make
    # it over 1 MB); declaring the config on the existing topic exercises the update of ``topics_ensure``.
    topics = make_topics(fresh_topic, partitions=1)
    declared = kafka.declared_topic("engine.snapshots").config
    assert kafka.topics_ensure([kafka.TopicSpec(name=topics.snapshots, partitions=1, config=declared)]) == {
        kafka.topic_name(topics.snapshots): "exists"
    }
    group = _group()
    n = 20_000
    cmds = [  # random ids as the platform's (UUIDs), so that even compressed the snapshot is over 1 MB
        ("AAPL", _limit(str(uuid.uuid4()), str(uuid.uuid4()), "buy", 1, 1_000_000 - (i % 500) * 100))
        for i in range(n)
    ]
    produce(topics.commands, _records(cmds, 1))  # type: ignore[arg-type]
    runner = EngineRunner(partitions=[0], topics=topics, group=group, snapshot_every=n * 2)
    runner.run(until_caught_up=True)  # the exit snapshot
    snap = snapshot_load(topic=topics.snapshots, partition=0)
    assert snap is not None
    assert len(snap.engine) > 3_000_000
    assert (snap.seq, snap.state_hash) == (n - 1, runner.states[0].engine.state_hash())
    stats = EngineRunner(partitions=[0], topics=topics, group=group).run(until_caught_up=True)
    assert stats.recoveries == {0: n - 1}


def test_a_snapshot_too_large_to_write_is_skipped_and_the_engine_goes_on(
    fresh_topic: Any, caplog: pytest.LogCaptureFixture
) -> None:
    topics = make_topics(fresh_topic, partitions=1)
    group = _group()
    cmds = workload(seed=11, n=30, symbols=["AAPL"])
    delivered = produce(topics.commands, _records(cmds, 1))
    runner = EngineRunner(
        partitions=[0], topics=topics, group=group, snapshot_every=5, snapshot_max_bytes=200
    )
    stats = runner.run(until_caught_up=True)
    assert stats.snapshots == 0
    assert committed(topics.commands, group, [0]) == {0: 30}
    assert snapshot_load(topic=topics.snapshots, partition=0) is None
    assert "engine snapshot too large to write" in caplog.text
    reference = twin(delivered, topics)
    assert by_key(read_all(topics.events)) == reference.events_by_key
    # A restart finds no snapshot: it rebuilds from the first command, publishing nothing twice.
    again = EngineRunner(partitions=[0], topics=topics, group=group, snapshot_on_exit=False)
    stats = again.run(until_caught_up=True)
    assert (stats.recoveries, stats.suppressed) == ({0: None}, 30)
    assert again.states[0].engine.state_hash() == reference.engines[0].state_hash()
    assert by_key(read_all(topics.events)) == reference.events_by_key


def test_a_republished_command_is_not_applied_again_even_after_a_restart(fresh_topic: Any) -> None:
    # The outbox relay publishes at least once: a relay that dies after producing and before stamping its rows
    # publishes them again. A copy of a filled order's NewOrder was executed a second time (chaos, session 10).
    topics = make_topics(fresh_topic, partitions=1)
    group = _group()
    sell = _limit("rp-sell", "rp-a", "sell", 5, 1_000_000)
    buy = _limit("rp-buy", "rp-b", "buy", 5, 1_000_000)
    records = _records([("AAPL", sell), ("AAPL", buy)], 1)
    delivered = produce(topics.commands, records)
    delivered += produce(topics.commands, [records[1], records[0]])  # both copies, after the fill
    runner = EngineRunner(partitions=[0], topics=topics, group=group, snapshot_every=1)
    stats = runner.run(until_caught_up=True)
    assert stats.duplicates == 2
    output = read_all(topics.events)
    assert len(fills(output)) == 2  # one trade: the maker's and the taker's fill, once
    assert not runner.states[0].engine.orders  # the copy of the sell did not rest again
    reference = twin(delivered, topics)
    assert by_key(output) == reference.events_by_key
    # A copy arriving after a restart. The last snapshot is at offset 1 (the copies changed nothing), so the
    # restart replays offsets 2-3 and then reads 4: the three copies are known only from the window read back
    # from Kafka (offsets 0-1).
    delivered += produce(topics.commands, [records[1]])
    stats = EngineRunner(partitions=[0], topics=topics, group=group).run(until_caught_up=True)
    assert (stats.recoveries, stats.suppressed, stats.duplicates) == ({0: 1}, 0, 3)
    assert len(fills(read_all(topics.events))) == 2
    assert by_key(read_all(topics.events)) == twin(delivered, topics).events_by_key
