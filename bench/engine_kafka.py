"""End-to-end engine benchmark through Kafka: command envelopes in -> engine process -> events out.

Usage (services running; uses its own throwaway topics and consumer group, deleted at the end):
    DJANGO_SETTINGS_MODULE=brokerage.settings.local .venv/bin/python bench/engine_kafka.py [--orders N]
        [--seed S] [--partitions P] [--rate R] [--batch-size B]

Two passes on the same seeded mixed workload (passive/marketable limits, market orders, cancels, replaces over
``P`` symbols, one per partition):
- burst: every command is in the topic before the engine starts; orders/s = commands / time to catch up
  (consume, match, produce, transactional commit).
- paced: commands are produced at ``R``/s while the engine runs; latency per command = time from the produce
  call to the first of its events read back by a ``read_committed`` consumer (percentiles in ms).
Figures go to bench/results/engine_kafka.json and are printed. No figure here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")

import django  # noqa: E402

django.setup()

from confluent_kafka import OFFSET_END, TopicPartition  # noqa: E402

from apps.core import events, kafka  # noqa: E402
from apps.orders.engine_runner import EngineRunner, EngineTopics, command_envelope  # noqa: E402
from engine import CancelOrder, NewOrder, ReplaceOrder  # noqa: E402
from engine.commands import Command  # noqa: E402

SHARE = 1_000_000_000
MID = 100_0000
TICK = 100
BASE = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def build(seed: int, n: int, symbols: list[str]) -> list[tuple[str, Command]]:
    """Seeded mix: 45% passive limit, 20% marketable IOC, 5% market, 20% cancel, 10% replace."""
    rng = random.Random(seed)
    live: dict[str, list[tuple[str, bool]]] = {s: [] for s in symbols}
    out: list[tuple[str, Command]] = []
    for i in range(n):
        sym = symbols[i % len(symbols)]
        buy = rng.random() < 0.5
        r = rng.random()
        oid = f"{sym}-{i}"
        acct = f"acct{rng.randint(0, 99)}"
        side: Literal["buy", "sell"] = "buy" if buy else "sell"
        book = live[sym]
        if r < 0.45 or (r >= 0.70 and not book):
            off = rng.randint(1, 20) * TICK
            px = MID - off if buy else MID + off
            cmd: Command = NewOrder(
                order_id=oid, account_id=acct, symbol=sym, side=side, type="limit", tif="gtc",
                qty_e9=rng.randint(1, 100) * SHARE, limit_price_e4=px,
            )  # fmt: skip
            book.append((oid, buy))
        elif r < 0.65:
            px = MID + rng.randint(0, 3) * TICK * (1 if buy else -1)
            cmd = NewOrder(
                order_id=oid, account_id=acct, symbol=sym, side=side, type="limit", tif="ioc",
                qty_e9=rng.randint(1, 150) * SHARE, limit_price_e4=px,
            )  # fmt: skip
        elif r < 0.70:
            cmd = NewOrder(
                order_id=oid, account_id=acct, symbol=sym, side=side, type="market", tif="day",
                qty_e9=rng.randint(1, 100) * SHARE,
            )  # fmt: skip
        elif r < 0.90:
            j = rng.randrange(len(book))
            book[j], book[-1] = book[-1], book[j]
            cmd = CancelOrder(order_id=book.pop()[0])
        else:
            j = rng.randrange(len(book))
            old, obuy = book[j]
            off = rng.randint(1, 20) * TICK
            cmd = ReplaceOrder(
                order_id=old, new_order_id=oid, qty_e9=rng.randint(1, 100) * SHARE,
                limit_price_e4=MID - off if obuy else MID + off,
            )  # fmt: skip
            book[j] = (oid, obuy)
        out.append((sym, cmd))
    return out


def encode_all(cmds: list[tuple[str, Command]]) -> list[tuple[int, str, bytes, uuid.UUID]]:
    symbols = sorted({s for s, _ in cmds})
    out = []
    for i, (sym, cmd) in enumerate(cmds):
        env = command_envelope(
            cmd, aggregate_id=sym, sequence=1, occurred_at=BASE + timedelta(microseconds=i)
        )
        out.append((symbols.index(sym), sym, events.encode(env), env.event_id))
    return out


def make_topics(partitions: int) -> tuple[EngineTopics, list[str]]:
    tag = uuid.uuid4().hex[:8]
    topics = EngineTopics(
        commands=f"bench.{tag}.commands",
        events=f"bench.{tag}.events",
        trades=f"bench.{tag}.trades",
        book=f"bench.{tag}.book",
        snapshots=f"bench.{tag}.snapshots",
        dead_letters=f"bench.{tag}.dlq",
    )
    names = [
        topics.commands,
        topics.events,
        topics.trades,
        topics.book,
        topics.snapshots,
        topics.dead_letters,
    ]
    kafka.topics_ensure(
        [kafka.TopicSpec(name=n, partitions=1 if n.endswith("dlq") else partitions, config={}) for n in names]
    )
    return topics, [kafka.topic_name(n) for n in names]


def pct(sorted_ms: list[float], p: float) -> float:
    return round(sorted_ms[min(len(sorted_ms) - 1, int(p * len(sorted_ms)))], 3)


def burst(args: argparse.Namespace, records: list[tuple[int, str, bytes, uuid.UUID]]) -> dict[str, Any]:
    topics, physical = make_topics(args.partitions)
    try:
        producer = kafka.producer_create(**{"linger.ms": 5})
        for partition, key, value, _ in records:
            producer.produce(
                kafka.topic_name(topics.commands), key=key.encode(), value=value, partition=partition
            )
            producer.poll(0)
        producer.flush(60)
        runner = EngineRunner(
            partitions=range(args.partitions),
            topics=topics,
            group=f"bench-{uuid.uuid4().hex[:8]}",
            batch_size=args.batch_size,
            snapshot_every=args.snapshot_every,
        )
        t0 = time.perf_counter()
        stats = runner.run(until_caught_up=True, install_signals=False)
        elapsed = time.perf_counter() - t0
        return {
            "commands": stats.processed,
            "outputs": stats.outputs,
            "transactions": stats.transactions,
            "snapshots": stats.snapshots,
            "seconds_incl_startup": round(elapsed, 3),
            "startup_seconds": round(stats.startup_seconds, 3),
            "orders_per_s": round(stats.processed / (elapsed - stats.startup_seconds), 1),
        }
    finally:
        kafka.topics_delete(physical)


def paced(args: argparse.Namespace, records: list[tuple[int, str, bytes, uuid.UUID]]) -> dict[str, Any]:
    topics, physical = make_topics(args.partitions)
    try:
        runner = EngineRunner(
            partitions=range(args.partitions),
            topics=topics,
            group=f"bench-{uuid.uuid4().hex[:8]}",
            batch_size=args.batch_size,
            snapshot_every=args.snapshot_every,
            poll_timeout=0.01,
        )
        engine_thread = threading.Thread(target=runner.run, kwargs={"install_signals": False}, daemon=True)
        engine_thread.start()
        reader = kafka.consumer_create(group_id=f"bench-reader-{uuid.uuid4().hex[:8]}")
        events_physical = kafka.topic_name(topics.events)
        reader.assign([TopicPartition(events_physical, p, OFFSET_END) for p in range(args.partitions)])
        time.sleep(3.0)  # the engine recovers and assigns; the reader joins at the end
        sent: dict[uuid.UUID, float] = {}
        seen: dict[uuid.UUID, float] = {}
        done = threading.Event()

        def read() -> None:
            while not done.is_set() or len(seen) < len(sent):
                for msg in reader.consume(500, 0.05):
                    if msg.error() is None:
                        cause = events.decode(msg.value() or b"").causation_id
                        if cause is not None and cause not in seen:
                            seen[cause] = time.perf_counter()
                if done.is_set() and time.perf_counter() - last_sent[0] > 30:
                    return

        last_sent = [time.perf_counter()]
        read_thread = threading.Thread(target=read, daemon=True)
        read_thread.start()
        producer = kafka.producer_create(**{"linger.ms": 0})
        interval = 1.0 / args.rate
        t0 = time.perf_counter()
        for i, (partition, key, value, event_id) in enumerate(records):
            target = t0 + i * interval
            while (now := time.perf_counter()) < target:
                time.sleep(min(target - now, 0.001))
            sent[event_id] = time.perf_counter()
            producer.produce(
                kafka.topic_name(topics.commands), key=key.encode(), value=value, partition=partition
            )
            producer.poll(0)
        producer.flush(60)
        last_sent[0] = time.perf_counter()
        done.set()
        read_thread.join(120)
        runner.stop()
        engine_thread.join(60)
        reader.close()
        lat = sorted((seen[e] - sent[e]) * 1000 for e in sent if e in seen)
        span = max(seen.values()) - t0 if seen else float("nan")
        return {
            "rate_target_per_s": args.rate,
            "commands": len(sent),
            "answered": len(lat),
            "orders_per_s": round(len(lat) / span, 1),
            "latency_ms": {
                "p50": pct(lat, 0.50),
                "p90": pct(lat, 0.90),
                "p99": pct(lat, 0.99),
                "p999": pct(lat, 0.999),
                "max": round(lat[-1], 3),
            },
        }
    finally:
        kafka.topics_delete(physical)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--snapshot-every", type=int, default=5000)
    args = parser.parse_args()
    symbols = [f"SYM{i}" for i in range(args.partitions)]
    records = encode_all(build(args.seed, args.orders, symbols))
    result = {
        "bench": "engine_kafka",
        "command": " ".join(["bench/engine_kafka.py", *sys.argv[1:]]),
        "config": vars(args),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "burst": burst(args, records),
        "paced": paced(args, records),
    }
    out = ROOT / "bench" / "results" / "engine_kafka.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    b: dict[str, Any] = result["burst"]  # type: ignore[assignment]
    p: dict[str, Any] = result["paced"]  # type: ignore[assignment]
    print(
        f"burst: {b['commands']} commands, startup {b['startup_seconds']} s,"
        f" then {b['orders_per_s']} orders/s ({b['transactions']} transactions)"
    )
    lat = p["latency_ms"]
    print(
        f"paced @ {p['rate_target_per_s']}/s: {p['answered']}/{p['commands']} answered, {p['orders_per_s']} orders/s,"
        f" latency ms p50 {lat['p50']} p90 {lat['p90']} p99 {lat['p99']} p99.9 {lat['p999']} max {lat['max']}"
    )
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
