"""The benchmark harness: interleaved rounds, paired ratios, machine description, result files.

A *stage* is a module registered in ``bench/__main__.py`` (``STAGES``). Its interface, all module-level:

- ``TITLE: str`` and ``BASELINE: str`` (the variant every other variant of a group is divided by);
- ``cases(config: Config) -> list[Case]``: the measurements of one round. A ``Case`` names a comparison
  ``group`` (e.g. ``"thick"``), a ``variant`` (the implementation, e.g. ``"engine"``) and free ``params``;
- ``run(round: int, case: Case, config: Config) -> dict[str, float]``: one measurement, returns its metrics;
- optional ``prepare(config) -> None`` (runs once in the parent before round 0: build workloads there, the
  forked children inherit them), ``TABLE_METRICS: Sequence[str]`` (columns printed; default all),
  ``CURVES: Sequence[Curve]`` (scaling plots), ``targets(result: dict) -> list[dict]`` and
  ``profile(config) -> dict`` (hot spots, see ``engine_core``).

Invariants:
- Every comparison runs inside one invocation: in round ``r`` each group runs all its variants once, in the
  order rotated by ``r``, so drift of the shared machine hits every variant alike.
- Every measurement runs in a forked child (fresh heap, its own GC state; one library's leak or crash cannot
  touch another's figures). A stage that measures a server starts its load generator with ``start_child`` so the
  generator never shares an interpreter (or GIL) with the server.
- Ratios are paired: ``variant / baseline`` of the same group in the same round, then summarised over rounds.
- A metric named ``eq_*`` is a correctness check: it must be identical across the variants of a group and across
  rounds; any difference is listed under ``mismatches`` and makes ``python -m bench`` exit 1.
- Statistics are the median and min-max over rounds; nothing is averaged away silently.
- A group whose case params carry ``rounds`` runs in that many rounds only (the first ones); the figures say how
  many (``n``). Comparisons the issue asks for keep the full ``config.rounds`` (>= 5).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Config:
    rounds: int = 5
    quick: bool = False
    seed: int = 42


@dataclass(frozen=True)
class Case:
    group: str
    variant: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Curve:
    """One scaling plot: ``metric`` of every variant against ``params[x_param]`` over the groups that have it."""

    title: str
    metric: str
    x_param: str
    x_label: str
    y_label: str
    log_x: bool = True
    where: Mapping[str, Any] = field(default_factory=dict)  # only groups whose params match
    exclude: Sequence[str] = ()  # variants left out of this plot


# ---------------------------------------------------------------------------------------------- children
class Child:
    """A forked process running ``fn(*args)``; ``result()`` returns its value or raises its traceback."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        ctx = mp.get_context("fork")
        self._recv, send = ctx.Pipe(duplex=False)
        # Not a daemon: a measurement child starts children of its own (load generators, servers), which a
        # daemonic process may not. ``result``/``stop`` end it; nothing outlives its measurement.
        self._proc = ctx.Process(target=_child_main, args=(send, fn, args), daemon=False)
        self._proc.start()
        send.close()

    def result(self, timeout: float = 900.0) -> Any:
        if not self._recv.poll(timeout):
            self._proc.kill()
            self._proc.join(10)
            raise TimeoutError(f"benchmark child did not finish within {timeout:.0f} s")
        status, value = self._recv.recv()
        self._proc.join(10)
        if status != "ok":
            raise RuntimeError(f"benchmark child failed:\n{value}")
        return value

    def stop(self) -> None:
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(10)


def _child_main(send: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    try:
        send.send(("ok", fn(*args)))
    except BaseException:
        send.send(("error", traceback.format_exc()))
    finally:
        send.close()


def start_child(fn: Callable[..., Any], *args: Any) -> Child:
    """Run ``fn(*args)`` in its own process (load generators, servers)."""
    return Child(fn, *args)


def in_child(fn: Callable[..., Any], *args: Any, timeout: float = 900.0) -> Any:
    return Child(fn, *args).result(timeout)


# ---------------------------------------------------------------------------------------------- statistics
def percentile_us(sorted_ns: Sequence[int], p: float) -> float:
    """Nearest-rank percentile of sorted nanosecond samples, in microseconds."""
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(p * len(sorted_ns)))] / 1000.0


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": list(values),
    }


def paired(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any] | None:
    """Summary of the per-round ratios ``a / b`` of two metric summaries measured in the same rounds."""
    pairs = [x / y for x, y in zip(a["values"], b["values"], strict=False) if y]
    return summary(pairs) if pairs else None


def higher_is_better(metric: str) -> bool:
    return metric.endswith("_per_s") or metric.startswith("ratio")


# ---------------------------------------------------------------------------------------------- machine
def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return ""
    return out.stdout.strip()


def machine() -> dict[str, Any]:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in _read("/proc/cpuinfo").splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    mem_kb = next(
        (int(ln.split()[1]) for ln in _read("/proc/meminfo").splitlines() if ln.startswith("MemTotal:")), 0
    )
    rev = _git("rev-parse", "HEAD")
    # Code only: the result files this harness writes under bench/results/ do not make a revision dirty.
    dirty = bool(
        _git("status", "--porcelain", "--untracked-files=no", "--", "engine", "bench", ":!bench/results")
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "git_revision": rev + ("-dirty" if dirty else ""),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_start": list(os.getloadavg()),
    }


# ---------------------------------------------------------------------------------------------- running
def _rotate(items: Sequence[str], r: int) -> list[str]:
    k = r % len(items) if items else 0
    return list(items[k:]) + list(items[:k])


def run_stage(name: str, module: ModuleType, config: Config, command: str) -> dict[str, Any]:
    """Run every case of ``module`` for ``config.rounds`` interleaved rounds; return the stage result."""
    started = time.monotonic()
    info = machine()
    prepare = getattr(module, "prepare", None)
    if prepare is not None:
        prepare(config)
    cases: list[Case] = module.cases(config)
    groups: dict[str, dict[str, Case]] = {}
    for c in cases:
        groups.setdefault(c.group, {})[c.variant] = c
    raw: dict[str, dict[str, list[dict[str, float]]]] = {g: {v: [] for v in vs} for g, vs in groups.items()}
    errors: list[str] = []
    for r in range(config.rounds):
        for g, variants in groups.items():
            # A costly group (a scaling point, a pipeline window) may run in fewer rounds: params["rounds"].
            if r >= int(next(iter(variants.values())).params.get("rounds", config.rounds)):
                continue
            for v in _rotate(list(variants), r):
                t0 = time.monotonic()
                try:
                    metrics = in_child(module.run, r, variants[v], config)
                except (RuntimeError, TimeoutError) as exc:
                    errors.append(f"round {r} {g}/{v}: {exc}")
                    print(f"  round {r} {g:>10} {v:<14} FAILED: {str(exc).splitlines()[-1]}", file=sys.stderr)
                    continue
                raw[g][v].append(metrics)
                head = ", ".join(f"{k}={val:,.1f}" for k, val in list(metrics.items())[:2])
                print(f"  round {r} {g:>10} {v:<14} {time.monotonic() - t0:5.1f}s  {head}", file=sys.stderr)
    result: dict[str, Any] = {
        "stage": name,
        "title": getattr(module, "TITLE", name),
        "command": command,
        "config": {"rounds": config.rounds, "quick": config.quick, "seed": config.seed},
        "machine": info,
        "baseline": module.BASELINE,
        "table_metrics": list(getattr(module, "TABLE_METRICS", [])),
        "curves": [
            {**c.__dict__, "where": dict(c.where), "exclude": list(c.exclude)}
            for c in getattr(module, "CURVES", [])
        ],
        "groups": {},
        "mismatches": [],
        "errors": errors,
    }
    for g, variants in groups.items():
        result["groups"][g] = _aggregate(g, variants, raw[g], module.BASELINE, result["mismatches"])
    profile = getattr(module, "profile", None)
    if profile is not None:
        print(f"  profiling {name} ...", file=sys.stderr)
        result["profile"] = in_child(profile, config)
    targets = getattr(module, "targets", None)  # after the profile: a target's detail may cite it
    result["targets"] = targets(result) if targets is not None else []
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def _aggregate(
    group: str,
    variants: Mapping[str, Case],
    rounds: Mapping[str, list[dict[str, float]]],
    baseline: str,
    mismatches: list[str],
) -> dict[str, Any]:
    out: dict[str, Any] = {"params": dict(next(iter(variants.values())).params), "variants": {}}
    base = rounds.get(baseline, [])
    checks: dict[str, dict[str, set[float]]] = {}
    for v, per_round in rounds.items():
        if not per_round:
            out["variants"][v] = {"metrics": {}, "ratios": {}}
            continue
        names = [k for k in per_round[0] if all(k in m for m in per_round)]
        metrics = {k: summary([m[k] for m in per_round]) for k in names}
        ratios: dict[str, Any] = {}
        if base and v != baseline:
            for k in names:
                pairs = [m[k] / b[k] for m, b in zip(per_round, base, strict=False) if b.get(k)]
                if pairs and not k.startswith("eq_"):
                    ratios[k] = summary(pairs)
        out["variants"][v] = {"metrics": metrics, "ratios": ratios}
        for k in names:
            if k.startswith("eq_"):
                checks.setdefault(k, {})[v] = {m[k] for m in per_round}
    for k, by_variant in checks.items():
        seen = set().union(*by_variant.values())
        if len(seen) > 1:
            detail = ", ".join(f"{v}={sorted(vals)}" for v, vals in by_variant.items())
            mismatches.append(f"{group}: {k} differs: {detail}")
    return out


# ---------------------------------------------------------------------------------------------- output
def _fmt(x: float) -> str:
    if x != x:  # NaN
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table_rows(result: Mapping[str, Any]) -> list[list[str]]:
    """Header + rows: group, variant, then per metric ``median [min-max]`` and ``x baseline``."""
    metrics: list[str] = list(result.get("table_metrics") or [])
    if not metrics:
        for g in result["groups"].values():
            for v in g["variants"].values():
                metrics += [k for k in v["metrics"] if k not in metrics and not k.startswith("eq_")]
    header = ["group", "variant"]
    for m in metrics:
        header += [f"{m} median [min-max]", f"{m} / {result['baseline']}"]
    rows = [header]
    for g, grp in result["groups"].items():
        for v, data in grp["variants"].items():
            row = [g, v]
            for m in metrics:
                s = data["metrics"].get(m)
                cell = f"{_fmt(s['median'])} [{_fmt(s['min'])}-{_fmt(s['max'])}]" if s else "-"
                if s and s["n"] != result["config"]["rounds"]:
                    cell += f" (n={s['n']})"  # a group run in fewer rounds
                row.append(cell)
                rt = data["ratios"].get(m)
                row.append(f"{rt['median']:.2f}x [{rt['min']:.2f}-{rt['max']:.2f}]" if rt else "")
            rows.append(row)
    return rows


def print_table(result: Mapping[str, Any]) -> None:
    rows = table_rows(result)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print(
        f"\n== {result['stage']}: {result['title']} ({result['config']['rounds']} rounds, paired ratios) =="
    )
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for t in result.get("targets", []):
        mark = "met   " if t["met"] else "MISSED"
        print(f"  [{mark}] {t['target']}: {t['detail']}")
    for m in result.get("mismatches", []):
        print(f"  !! MISMATCH {m}")
    for e in result.get("errors", []):
        print(f"  !! ERROR {e.splitlines()[0]}")


def write_result(result: Mapping[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    # A --quick smoke run never overwrites the published figures.
    path = RESULTS / f"{result['stage']}{'.quick' if result['config']['quick'] else ''}.json"
    path.write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    return path


def is_harness_result(data: Any) -> bool:
    """True for files written by ``write_result`` (stand-alone scripts may leave other JSON in results/)."""
    return isinstance(data, dict) and {"stage", "machine", "groups", "baseline", "config"} <= data.keys()


def write_latest(results: Sequence[Mapping[str, Any]], run: Mapping[str, Any] | None = None) -> Path:
    """Summary of every stage's newest result file (the stages not run now keep their previous figures)."""
    stages: dict[str, Any] = {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.name == "latest.json" or path.name.endswith(".quick.json"):
            continue
        data = json.loads(path.read_text())
        if not is_harness_result(data):
            stages[path.stem] = {"file": f"bench/results/{path.name}", "format": "not a harness result"}
            continue
        stages[data["stage"]] = {
            "file": f"bench/results/{path.name}",
            "date_utc": data["machine"]["date_utc"],
            "git_revision": data["machine"]["git_revision"],
            "command": data["command"],
            "medians": {
                g: {v: {k: s["median"] for k, s in d["metrics"].items()} for v, d in grp["variants"].items()}
                for g, grp in data["groups"].items()
            },
            "targets": data.get("targets", []),
            "mismatches": data.get("mismatches", []),
        }
    out: dict[str, Any] = {"machine": machine(), "ran_now": [r["stage"] for r in results], "stages": stages}
    previous = RESULTS / "latest.json"
    if run is not None:  # the whole invocation (every stage): its command, stages and wall time
        out["run"] = dict(run)
    elif previous.exists() and "run" in (old := json.loads(previous.read_text())):
        out["run"] = old["run"]  # a partial run (--stage) keeps the last whole run's record
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path
