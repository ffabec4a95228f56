"""Micro-benchmark of the engine core: seeded mixed limit/market/cancel/replace workload.

Usage: .venv/bin/python bench/engine_core.py [--ops N] [--seed S]
Prints ops/s and p50/p99/p99.9 per-op latency for a thick book (~30K resting orders) and a thin book, and writes
bench/results/engine_core.json. Commands are generated before timing; only ``Engine.apply`` is timed.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine import CancelOrder, Engine, NewOrder, ReplaceOrder
from engine.commands import Command

SYM = "BENCH"
MID = 100_0000  # $100.0000 in price_e4
TICK = 100  # $0.01
SHARE = 1_000_000_000


def _limit(oid: str, acct: str, buy: bool, qty: int, px: int, tif: str = "gtc") -> NewOrder:
    return NewOrder(
        order_id=oid,
        account_id=acct,
        symbol=SYM,
        side="buy" if buy else "sell",
        type="limit",
        tif=tif,  # type: ignore[arg-type]
        qty_e9=qty,
        limit_price_e4=px,
    )


def build(
    rng: random.Random, resting: int, n_ops: int, spread_levels: int, passive: float = 0.40
) -> tuple[list[Command], list[Command]]:
    """(setup commands that build the book, timed mixed workload)."""
    setup: list[Command] = []
    live: list[tuple[str, bool]] = []  # ids that are (probably) resting, for cancels/replaces
    n = 0
    for _ in range(resting):
        n += 1
        buy = rng.random() < 0.5
        off = rng.randint(1, spread_levels) * TICK
        oid = f"s{n}"
        setup.append(
            _limit(
                oid,
                f"acct{rng.randint(0, 999)}",
                buy,
                rng.randint(1, 100) * SHARE,
                MID - off if buy else MID + off,
            )
        )
        live.append((oid, buy))
    ops: list[Command] = []
    for _ in range(n_ops):
        n += 1
        oid = f"o{n}"
        acct = f"acct{rng.randint(0, 999)}"
        buy = rng.random() < 0.5
        r = rng.random()
        if r < passive:  # passive limit, away from the touch
            off = rng.randint(1, spread_levels) * TICK
            ops.append(_limit(oid, acct, buy, rng.randint(1, 100) * SHARE, MID - off if buy else MID + off))
            live.append((oid, buy))
        elif r < 0.55:  # marketable limit (crosses a few levels)
            off = rng.randint(0, 3) * TICK
            ops.append(
                _limit(oid, acct, buy, rng.randint(1, 150) * SHARE, MID + off if buy else MID - off, "ioc")
            )
        elif r < 0.60:
            ops.append(
                NewOrder(order_id=oid, account_id=acct, symbol=SYM, side="buy" if buy else "sell", type="market",
                         tif="day", qty_e9=rng.randint(1, 100) * SHARE)
            )  # fmt: skip
        elif r < 0.90 and live:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            ops.append(CancelOrder(order_id=live.pop()[0]))
        elif live:
            i = rng.randrange(len(live))
            old, obuy = live[i]
            off = rng.randint(1, spread_levels) * TICK
            ops.append(
                ReplaceOrder(order_id=old, new_order_id=oid, qty_e9=rng.randint(1, 100) * SHARE,
                             limit_price_e4=MID - off if obuy else MID + off)
            )  # fmt: skip
            live[i] = (oid, obuy)
    return setup, ops


def pct(sorted_ns: list[int], p: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(p * len(sorted_ns)))] / 1000.0


def run(
    name: str, resting: int, n_ops: int, spread_levels: int, seed: int, passive: float
) -> dict[str, object]:
    rng = random.Random(seed)
    setup, ops = build(rng, resting, n_ops, spread_levels, passive)
    eng = Engine()
    seq = 0
    for cmd in setup:
        seq += 1
        eng.apply(seq, cmd)
    book = eng.book(SYM)
    assert book is not None
    depth_before = sum(c for _, _, c in book.depth(True)) + sum(c for _, _, c in book.depth(False))
    gc.collect()
    gc.freeze()
    lat: list[int] = []
    events = 0
    clock = time.perf_counter_ns
    apply = eng.apply
    t0 = clock()
    for cmd in ops:
        seq += 1
        a = clock()
        events += len(apply(seq, cmd))
        lat.append(clock() - a)
    total = clock() - t0
    gc.unfreeze()
    # Throughput without per-op timer overhead, on a fresh engine with the same input.
    eng2 = Engine()
    s2 = 0
    for cmd in setup:
        s2 += 1
        eng2.apply(s2, cmd)
    t1 = clock()
    apply2 = eng2.apply
    for cmd in ops:
        s2 += 1
        apply2(s2, cmd)
    total2 = clock() - t1
    assert eng2.state_hash() == eng.state_hash()
    lat.sort()
    depth_after = sum(c for _, _, c in book.depth(True)) + sum(c for _, _, c in book.depth(False))
    res: dict[str, object] = {
        "book": name,
        "resting_orders_before": depth_before,
        "resting_orders_after": depth_after,
        "ops": n_ops,
        "events": events,
        "ops_per_s": round(n_ops / (total2 / 1e9)),
        "ops_per_s_with_timers": round(n_ops / (total / 1e9)),
        "p50_us": pct(lat, 0.50),
        "p99_us": pct(lat, 0.99),
        "p999_us": pct(lat, 0.999),
        "max_us": lat[-1] / 1000.0,
    }
    print(
        f"{name:>5}: {res['ops_per_s']:>8} ops/s  p50 {res['p50_us']:.2f} us  p99 {res['p99_us']:.2f} us  "
        f"p99.9 {res['p999_us']:.2f} us  (resting {depth_before} -> {depth_after}, {events} events)"
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    results = [
        run("thick", 30_000, args.ops, 500, args.seed, 0.40),
        run("thin", 200, args.ops, 10, args.seed + 1, 0.25),
    ]
    out = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seed": args.seed,
        "workload": "thick: 40% passive limit (thin: 25%), then up to 55% marketable IOC limit, 5% market, "
        "30% cancel, 10% replace",
        "results": results,
    }
    path = Path(__file__).resolve().parent / "results" / "engine_core.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
