"""Engine-core quick loop for engine work: ``engine`` vs ``reference`` through ``bench.engine_core.run``.

Usage::

    .venv/bin/python -m bench.profile_engine [--rounds 3] [--quick] [--groups thick,thin] [--profile | --kinds]

Each measurement runs in a forked child (as the harness does), variants interleaved per round; prints the
median (min-max) of ops/s, p50/p99/p99.9 and the engine/reference ratio. ``--profile`` prints the cProfile
hot spots of the engine on the thick workload (``bench.engine_core.profile``).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import engine_core
from bench.harness import Case, Config

METRICS = ("ops_per_s", "p50_us", "p99_us", "p999_us")


def _send_result(conn: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    conn.send(fn(*args))
    conn.close()


def _forked(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a forked child (a fresh heap per measurement, as the harness runs them); its result."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_send_result, args=(send, fn, args))
    p.start()
    send.close()
    res = recv.recv()
    p.join()
    return res


def measure(round_: int, case: Case, config: Config) -> dict[str, float]:
    res: dict[str, float] = _forked(engine_core.run, round_, case, config)
    return res


def _cpu_child(group: str, variant: str, config: Config) -> float:
    setup, ops = engine_core.workload(group, config)
    a = engine_core._fresh(variant, setup)
    native = a.native(ops)
    step = a.step
    gc.collect()
    gc.freeze()
    t0 = time.process_time_ns()
    for x in native:
        step(x)
    return len(ops) / ((time.process_time_ns() - t0) / 1e9)


def cpu_main(groups: list[str], variants: list[str], config: Config, rounds: int) -> None:
    """Best-of-``rounds`` CPU-time ops/s per (group, variant): less sensitive to other tenants than wall time."""
    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for g in groups:
            for v in variants:
                best[(g, v)] = max(best.get((g, v), 0.0), _forked(_cpu_child, g, v, config))
    for g in groups:
        line = "  ".join(f"{v}={best[(g, v)]:,.0f}" for v in variants)
        extra = ""
        if "engine" in variants and "reference" in variants:
            extra = f"  ratio={best[(g, 'engine')] / best[(g, 'reference')]:.2f}x"
        print(f"cpu ops/s {g:6} {line}{extra}")


def _floor_child(group: str, config: Config) -> dict[str, float]:
    """CPU ns/op of (a) the engine, (b) rebuilding exactly the engine's output events (one list per op) and
    nothing else, (c) the reference book: (b) is a floor no pure-Python engine with this event contract beats."""
    setup, ops = engine_core.workload(group, config)
    a = engine_core._fresh("engine", setup)
    native = a.native(ops)
    produced = [a.step(x) for x in native]
    recipes = [
        [(type(e), tuple(getattr(e, f) for f in e.__struct_fields__)) for e in evs] for evs in produced
    ]
    del produced
    res: dict[str, float] = {}
    a = engine_core._fresh("engine", setup)
    step = a.step
    gc.collect()
    gc.freeze()
    t0 = time.process_time_ns()
    for x in native:
        step(x)
    res["engine"] = (time.process_time_ns() - t0) / len(ops)
    gc.collect()
    t0 = time.process_time_ns()
    for r in recipes:
        out = []
        for cls, args in r:
            out.append(cls(*args))
    res["events_only"] = (time.process_time_ns() - t0) / len(ops)
    r_ = engine_core._fresh("reference", setup)
    rnative = r_.native(ops)
    rstep = r_.step
    gc.collect()
    t0 = time.process_time_ns()
    for x in rnative:
        rstep(x)
    res["reference"] = (time.process_time_ns() - t0) / len(ops)
    gc.unfreeze()
    return res


def floor_main(groups: list[str], config: Config, rounds: int) -> None:
    for g in groups:
        best: dict[str, float] = {}
        for _ in range(rounds):
            for k, v in _forked(_floor_child, g, config).items():
                best[k] = min(best.get(k, float("inf")), v)
        print(f"cpu ns/op {g:6} " + "  ".join(f"{k}={v:,.0f}" for k, v in best.items()))


def _kinds_child(group: str, variant: str, config: Config) -> dict[str, float]:
    """Mean ns per op of each kind (limit, ioc, market, cancel, replace), timed one op at a time."""
    from bench.books import KIND_NAMES

    setup, ops = engine_core.workload(group, config)
    a = engine_core._fresh(variant, setup)
    native = a.native(ops)
    step = a.step
    clock = time.perf_counter_ns
    total = [0] * len(KIND_NAMES)
    count = [0] * len(KIND_NAMES)
    gc.collect()
    gc.freeze()
    for op, x in zip(ops, native, strict=True):
        t = clock()
        step(x)
        total[op[0]] += clock() - t
        count[op[0]] += 1
    gc.unfreeze()
    return {KIND_NAMES[k]: total[k] / count[k] for k in range(len(KIND_NAMES)) if count[k]}


def kinds_main(groups: list[str], variants: list[str], config: Config, rounds: int) -> None:
    """Median over ``rounds`` (variants interleaved) of the mean ns per op of each kind: where a book is slower."""
    got: dict[tuple[str, str], list[dict[str, float]]] = {}
    for _ in range(rounds):
        for g in groups:
            for v in variants:
                got.setdefault((g, v), []).append(_forked(_kinds_child, g, v, config))
    for g in groups:
        for v in variants:
            rows = got[(g, v)]
            cells = "  ".join(f"{k}={statistics.median(r[k] for r in rows):,.0f}" for k in rows[0])
            print(f"ns/op {g:6} {v:10} {cells}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--groups", default="thick,thin")
    ap.add_argument("--variants", default="engine,reference")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="CPU-time throughput only (steadier on a loaded box)")
    ap.add_argument(
        "--floor", action="store_true", help="engine vs its event construction alone vs reference"
    )
    ap.add_argument("--kinds", action="store_true", help="mean ns per op of each op kind, per variant")
    args = ap.parse_args()
    config = Config(rounds=args.rounds, quick=args.quick)
    groups = args.groups.split(",")
    variants = args.variants.split(",")
    for g in groups:
        engine_core.workload(g, config)
    if args.profile:
        prof = engine_core.profile(config)
        for row in prof["hot_spots"]:
            print(
                f"{row['share_pct']:5.1f}% {row['tottime_s']:8.4f}s {row['cumtime_s']:8.4f}s "
                f"{row['ncalls']:>8} {row['function']}"
            )
        for k, v in prof["by_kind"].items():
            print(k, v)
        print("gc disabled:", prof["gc_disabled"])
        return
    if args.kinds:
        kinds_main(groups, variants, config, args.rounds)
        return
    if args.floor:
        floor_main(groups, config, args.rounds)
        return
    if args.cpu:
        cpu_main(groups, variants, config, args.rounds)
        return
    res: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for g in groups:
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                res.setdefault((g, v), []).append(measure(r, Case(g, v), config))
    for g in groups:
        for v in variants:
            rows = res[(g, v)]
            cells = []
            for m in METRICS:
                xs = [row[m] for row in rows]
                fmt = "{:,.0f}" if m == "ops_per_s" else "{:.1f}"
                cells.append(
                    f"{m}={fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"
                )
            print(f"{g:6} {v:10} " + "  ".join(cells))
        if "engine" in variants and "reference" in variants:
            ratios = [
                e["ops_per_s"] / f["ops_per_s"]
                for e, f in zip(res[(g, "engine")], res[(g, "reference")], strict=True)
            ]
            print(
                f"{g:6} engine/reference = {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
            )
            print(
                f"{g:6} eq_filled engine={res[(g, 'engine')][0].get('eq_filled_shares')} "
                f"ref={res[(g, 'reference')][0].get('eq_filled_shares')}"
            )


if __name__ == "__main__":
    main()
