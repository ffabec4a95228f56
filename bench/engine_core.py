"""Stage 1: the engine core in process, against PyPI order books and a plain reference book.

Workloads (seeded, generated once in the parent before round 0 and inherited by every forked measurement):
- ``thick``: 30,000 resting orders over 500 price levels a side, then a mix of 40% passive limit, 15% marketable
  IOC limit (crossing up to 3 ticks), 5% market, 30% cancel and 10% replace;
- ``thin``: 200 resting orders over 10 levels a side, 25% passive, 30% marketable IOC, 5% market, 30% cancel,
  10% replace;
- ``depth=N`` (N = 1K, 10K, 50K): the thick mix on a book of N resting orders, for the scaling curve.
Passive prices lie strictly away from the mid on their own side, so the book never crosses at rest and every
implementation sees the same sequence of states.

Each measurement (one variant, one group, one round; in its own forked process): build the book from the setup
orders, ``gc.collect(); gc.freeze()``, time the whole op list with two ``perf_counter_ns`` reads (throughput
pass), then on a fresh book the same ops with ``perf_counter_ns`` around each op (latency pass; the filled
quantity is tallied outside the timed window). Checks: ``eq_filled_shares`` and ``eq_resting`` must be equal for
every implementation.
"""

from __future__ import annotations

import cProfile
import gc
import pstats
import random
import time
from collections.abc import Sequence
from typing import Any

from bench.books import (
    ADAPTERS,
    CANCEL,
    IOC,
    KIND_NAMES,
    LIMIT,
    MARKET,
    REPLACE,
    Adapter,
    Op,
    available,
)
from bench.harness import Case, Config, Curve, paired, percentile_us

TITLE = "Engine core, in process: engine (native) and engine-python vs PyPI order books vs SortedDict+deque reference"
BASELINE = "reference"
TABLE_METRICS = ("ops_per_s", "p50_us", "p99_us", "p999_us")
CURVES = (
    Curve(
        "Throughput vs book depth (thick mix)",
        "ops_per_s",
        "depth",
        "resting orders at start",
        "ops/s (median, min-max)",
        where={"mix": "thick"},
        exclude=("machine-floor",),
    ),
    Curve(
        "p99 latency vs book depth (thick mix)",
        "p99_us",
        "depth",
        "resting orders at start",
        "p99 per op, µs (median, min-max)",
        where={"mix": "thick"},
    ),
)
MID = 10_000  # ticks of $0.01: $100.00
SCALING_DEPTHS = (1_000, 10_000, 50_000)

# group -> (resting, spread_levels, passive share, marketable share)
GROUPS: dict[str, tuple[int, int, float, float]] = {
    "thick": (30_000, 500, 0.40, 0.15),
    "thin": (200, 10, 0.25, 0.30),
    **{f"depth={d}": (d, 500, 0.40, 0.15) for d in SCALING_DEPTHS},
}
_WORKLOADS: dict[str, tuple[list[Op], list[Op]]] = {}


def n_ops(config: Config, group: str = "thick") -> int:
    """Ops per measurement: sized so that 5 full rounds of this stage take about 5 minutes on the 2-core box."""
    if group.startswith("depth="):
        return 5_000 if config.quick else 25_000
    return 10_000 if config.quick else 50_000


def build(
    seed: int, resting: int, ops: int, levels: int, passive: float, marketable: float
) -> tuple[list[Op], list[Op]]:
    """(setup orders that build the book, the measured op list). Every order id is unique; ids start at 1."""
    rng = random.Random(seed)
    live: list[tuple[int, bool]] = []  # (id, is_buy) of orders that are probably resting
    setup: list[Op] = []
    n = 0
    for _ in range(resting):
        n += 1
        buy = rng.random() < 0.5
        off = rng.randint(1, levels)
        setup.append((LIMIT, n, buy, rng.randint(1, 100), MID - off if buy else MID + off, 0))
        live.append((n, buy))
    out: list[Op] = []
    for _ in range(ops):
        n += 1
        buy = rng.random() < 0.5
        r = rng.random()
        if r < passive:
            off = rng.randint(1, levels)
            out.append((LIMIT, n, buy, rng.randint(1, 100), MID - off if buy else MID + off, 0))
            live.append((n, buy))
        elif r < passive + marketable:
            off = rng.randint(0, 3)
            out.append((IOC, n, buy, rng.randint(1, 150), MID + off if buy else MID - off, 0))
        elif r < passive + marketable + 0.05:
            out.append((MARKET, n, buy, rng.randint(1, 100), 0, 0))
        elif r < passive + marketable + 0.35 and live:
            i = rng.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            out.append((CANCEL, live.pop()[0], buy, 0, 0, 0))
        elif live:
            i = rng.randrange(len(live))
            old, obuy = live[i]
            off = rng.randint(1, levels)
            out.append((REPLACE, n, obuy, rng.randint(1, 100), MID - off if obuy else MID + off, old))
            live[i] = (n, obuy)
    return setup, out


def workload(group: str, config: Config) -> tuple[list[Op], list[Op]]:
    if group not in _WORKLOADS:
        resting, levels, passive, marketable = GROUPS[group]
        seed = config.seed + sorted(GROUPS).index(group)
        _WORKLOADS[group] = build(seed, resting, n_ops(config, group), levels, passive, marketable)
    return _WORKLOADS[group]


def prepare(config: Config) -> None:
    for g in GROUPS:
        workload(g, config)


def cases(config: Config) -> list[Case]:
    skipped = {v: why for v, why in available().items() if why}
    for v, why in skipped.items():
        print(f"  engine_core: skipping {v}: {why}")
    return [
        Case(
            g,
            v,
            {
                "depth": spec[0],
                "spread_levels": spec[1],
                "ops": n_ops(config, g),
                "mix": "thin" if g == "thin" else "thick",
                # The depth groups are the scaling curve: 3 rounds; thick and thin are the headline (all rounds).
                **({"rounds": min(3, config.rounds)} if g.startswith("depth=") else {}),
            },
        )
        for g, spec in GROUPS.items()
        for v in ADAPTERS
        if v not in skipped
    ]


def _fresh(variant: str, setup: Sequence[Op]) -> Adapter:
    a = ADAPTERS[variant]()
    step = a.step
    for x in a.native(setup):
        step(x)
    return a


def run(round: int, case: Case, config: Config) -> dict[str, float]:
    setup, ops = workload(case.group, config)
    clock = time.perf_counter_ns
    # Throughput pass: no per-op work besides the op itself.
    a = _fresh(case.variant, setup)
    native = a.native(ops)
    step = a.step
    gc.collect()
    gc.freeze()
    t0 = clock()
    for x in native:
        step(x)
    total = clock() - t0
    gc.unfreeze()
    resting_tp = a.resting()
    del a, native, step
    # Latency pass on a fresh book.
    b = _fresh(case.variant, setup)
    native = b.native(ops)
    step, filled_of = b.step, b.filled
    lat: list[int] = []
    push = lat.append
    filled = 0
    gc.collect()
    gc.freeze()
    for x in native:
        t = clock()
        res = step(x)
        push(clock() - t)
        filled += filled_of(res)
    gc.unfreeze()
    resting = b.resting()
    metrics: dict[str, float] = {"ops_per_s": len(ops) / (total / 1e9)}
    by_kind: dict[int, list[int]] = {}
    for op, ns in zip(ops, lat, strict=True):
        by_kind.setdefault(op[0], []).append(ns)
    lat.sort()
    metrics.update(p50_us=percentile_us(lat, 0.50), p99_us=percentile_us(lat, 0.99))
    metrics.update(p999_us=percentile_us(lat, 0.999), max_us=lat[-1] / 1000)
    for kind, samples in sorted(by_kind.items()):
        samples.sort()
        metrics[f"p99_us_{KIND_NAMES[kind]}"] = percentile_us(samples, 0.99)
    if case.variant == "machine-floor":
        return metrics
    metrics["eq_filled_shares"] = filled
    metrics["eq_resting"] = resting
    metrics["eq_resting_throughput_pass"] = resting_tp
    return metrics


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 9, stage 1: ahead of every library on both workloads; thick p99 <= 20 us, p99.9 <= 100 us."""
    out: list[dict[str, Any]] = []
    libs = ("orderly-chaos", "liquibook", "pyorderbook", "reference")
    for g in ("thick", "thin"):
        variants = result["groups"].get(g, {}).get("variants", {})
        eng = variants.get("engine", {}).get("metrics", {}).get("ops_per_s")
        if eng is None:
            continue
        for lib in libs:
            m = variants.get(lib, {}).get("metrics", {}).get("ops_per_s")
            if m is None:
                continue
            pr = paired(eng, m)
            if pr is None:
                continue
            ratio = pr["median"]
            out.append(
                {
                    "target": f"{g}: engine ops/s ahead of {lib}",
                    "met": ratio > 1.0,
                    "value": ratio,
                    "goal": 1.0,
                    "detail": f"engine/{lib} paired per round {ratio:.2f}x [{pr['min']:.2f}-{pr['max']:.2f}]"
                    f" (medians {eng['median']:,.0f} vs {m['median']:,.0f} ops/s)"
                    + ("" if ratio > 1 else f"; needs {1 / ratio:.2f}x faster"),
                }
            )
    thick = result["groups"].get("thick", {}).get("variants", {}).get("engine", {}).get("metrics", {})
    for metric, goal in (("p99_us", 20.0), ("p999_us", 100.0)):
        s = thick.get(metric)
        if s is None:
            continue
        out.append(
            {
                "target": f"thick: engine {metric[:-3].replace('p999', 'p99.9')} <= {goal:.0f} us",
                "met": s["median"] <= goal,
                "value": s["median"],
                "goal": goal,
                "detail": f"{s['median']:.1f} us (min-max {s['min']:.1f}-{s['max']:.1f})"
                + ("" if s["median"] <= goal else f", {s['median'] / goal:.2f}x the target"),
            }
        )
    return out


def profile(config: Config) -> dict[str, Any]:
    """cProfile of the engine on the thick workload (throughput pass) and its time per op kind (latency pass)."""
    setup, ops = workload("thick", config)
    a = _fresh("engine", setup)
    native = a.native(ops)
    step = a.step
    prof = cProfile.Profile()
    prof.enable()
    for x in native:
        step(x)
    prof.disable()
    st = pstats.Stats(prof)
    total = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    rows = sorted(st.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    hot = [
        {
            "function": f"{fn.rsplit('/', 2)[-1] if '/' in fn else fn}:{line}({name})",
            "ncalls": v[1],
            "tottime_s": round(v[2], 4),
            "share_pct": round(100 * v[2] / total, 1),
            "cumtime_s": round(v[3], 4),
        }
        for (fn, line, name), v in rows[:18]
    ]
    # Where the time goes by op kind, from a latency pass without the profiler.
    b = _fresh("engine", setup)
    native = b.native(ops)
    step = b.step
    clock = time.perf_counter_ns
    sums: dict[str, list[int]] = {}
    events: dict[str, int] = {}
    gc.collect()
    gc.freeze()
    for op, x in zip(ops, native, strict=True):
        t = clock()
        res = step(x)
        sums.setdefault(KIND_NAMES[op[0]], []).append(clock() - t)
        for e in res:
            events[type(e).__name__] = events.get(type(e).__name__, 0) + 1
    gc.unfreeze()
    grand = sum(sum(v) for v in sums.values())
    kinds = {}
    for k, v in sums.items():
        v.sort()
        kinds[k] = {
            "count": len(v),
            "share_of_time_pct": round(100 * sum(v) / grand, 1),
            "mean_us": round(sum(v) / len(v) / 1000, 2),
            "p99_us": round(percentile_us(v, 0.99), 2),
            "p999_us": round(percentile_us(v, 0.999), 2),
        }
    # How much of the p99.9 tail is the cyclic GC: the same pass with gc disabled.
    c = _fresh("engine", setup)
    native = c.native(ops)
    step = c.step
    lat: list[int] = []
    gc.collect()
    gc.disable()
    for x in native:
        t = clock()
        step(x)
        lat.append(clock() - t)
    gc.enable()
    lat.sort()
    return {
        "profiler": "cProfile (deterministic; inflates per-call cost, use shares not absolute times)",
        "workload": "thick, engine, throughput pass",
        "total_s": round(total, 3),
        "hot_spots": hot,
        "by_kind": kinds,
        "events_per_op": {
            k: round(v / len(ops), 3) for k, v in sorted(events.items(), key=lambda kv: -kv[1])
        },
        "gc_disabled": {"p99_us": percentile_us(lat, 0.99), "p999_us": percentile_us(lat, 0.999)},
    }
