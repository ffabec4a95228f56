"""Regenerate docs/PERFORMANCE.md (and the scaling PNGs) from bench/results/*.json.

Invariants:
- Every figure in the document comes from a result file; the file's machine, git revision, date and the exact
  command are printed next to its tables.
- The hand-written analysis between ``<!-- analysis:begin -->`` and ``<!-- analysis:end -->`` is carried over
  from the previous document verbatim (it interprets figures; re-check it when they move).
- matplotlib is imported only here and only in the bench venv; without it the plots are skipped, not faked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, ROOT, is_harness_result, table_rows

DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- analysis:begin -->", "<!-- analysis:end -->"
DEFAULT_ANALYSIS = "_No analysis written yet._"


def plot(result: Mapping[str, Any]) -> Path | None:
    curves = result.get("curves") or []
    if not curves:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(6.2 * len(curves), 4.4), squeeze=False)
    for ax, c in zip(axes[0], curves, strict=True):
        series: dict[str, list[tuple[float, float, float, float]]] = {}
        for grp in result["groups"].values():
            x = grp["params"].get(c["x_param"])
            if x is None or any(grp["params"].get(k) != val for k, val in c.get("where", {}).items()):
                continue
            for v, data in grp["variants"].items():
                if v in c.get("exclude", []):
                    continue
                s = data["metrics"].get(c["metric"])
                if s:
                    series.setdefault(v, []).append((float(x), s["median"], s["min"], s["max"]))
        for v, pts in series.items():
            pts.sort()
            xs = [p[0] for p in pts]
            ys = [p[1] for p in pts]
            err = [[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=v, linewidth=2 if v == "engine" else 1)
        if c.get("log_x"):
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(c["title"])
        ax.set_xlabel(c["x_label"])
        ax.set_ylabel(c["y_label"])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(
        f"{result['stage']} - median and min-max of {result['config']['rounds']} interleaved rounds - "
        f"{m['git_revision'][:12]} {m['date_utc']}",
        fontsize=9,
    )
    fig.tight_layout()
    path = RESULTS / f"{result['stage']}_scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _md_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _stage_section(result: Mapping[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"## {result['stage']}: {result['title']}",
        "",
        f"- command: `{result['command']}` ({result['config']['rounds']} interleaved rounds, seed "
        f"{result['config']['seed']}{', quick' if result['config']['quick'] else ''}; took {result['elapsed_s']} s)",
        f"- git revision `{m['git_revision']}`, {m['date_utc']} UTC; load average at start "
        f"{m['loadavg_start'][0]:.2f}, at end {m.get('loadavg_end', [float('nan')])[0]:.2f}",
        f"- every cell: median [min-max] over rounds; `x {result['baseline']}` = median [min-max] of the paired "
        "per-round ratio to the baseline",
        "",
        _md_table(table_rows(result)),
        "",
    ]
    if result.get("targets"):
        lines += ["**Targets (issue 9)**", ""]
        lines += [
            f"- {'met' if t['met'] else '**MISSED**'}: {t['target']} - {t['detail']}"
            for t in result["targets"]
        ]
        lines.append("")
    checks = [
        f"{g}: "
        + ", ".join(
            f"{k}={int(s['median'])}"
            for k, s in grp["variants"][result["baseline"]]["metrics"].items()
            if k.startswith("eq_")
        )
        for g, grp in result["groups"].items()
        if result["baseline"] in grp["variants"] and grp["variants"][result["baseline"]]["metrics"]
    ]
    if checks:
        lines += [
            "**Equality checks** (identical for every implementation and round unless listed below)",
            "",
        ]
        lines += [f"- {c}" for c in checks]
        lines += [f"- **MISMATCH** {x}" for x in result.get("mismatches", [])]
        lines.append("")
    png = RESULTS / f"{result['stage']}_scaling.png"
    if png.exists():
        lines += [f"![{result['stage']} scaling curves](../bench/results/{png.name})", ""]
    prof = result.get("profile")
    if prof:
        lines += [f"**Profile** ({prof['profiler']}; {prof['workload']}, total {prof['total_s']} s)", ""]
        rows = [["function", "calls", "tottime s", "share %", "cumtime s"]]
        rows += [
            [
                f"`{h['function']}`",
                str(h["ncalls"]),
                str(h["tottime_s"]),
                str(h["share_pct"]),
                str(h["cumtime_s"]),
            ]
            for h in prof["hot_spots"]
        ]
        lines += [_md_table(rows), ""]
        if prof.get("by_kind"):
            rows = [["op kind", "count", "share of time %", "mean µs", "p99 µs", "p99.9 µs"]]
            rows += [
                [
                    k,
                    str(v["count"]),
                    str(v["share_of_time_pct"]),
                    str(v["mean_us"]),
                    str(v["p99_us"]),
                    str(v["p999_us"]),
                ]
                for k, v in prof["by_kind"].items()
            ]
            lines += ["Engine time by op kind (latency pass, no profiler):", "", _md_table(rows), ""]
        if prof.get("events_per_op"):
            ev = ", ".join(f"{k} {v}" for k, v in prof["events_per_op"].items())
            lines += [f"Engine events emitted per op (the reference and the libraries emit none): {ev}.", ""]
        if prof.get("gc_disabled"):
            g = prof["gc_disabled"]
            lines += [
                f"Same latency pass with the cyclic GC disabled: p99 {g['p99_us']:.1f} µs, "
                f"p99.9 {g['p999_us']:.1f} µs.",
                "",
            ]
    for e in result.get("errors", []):
        lines.append(f"- **ERROR** {e.splitlines()[0]}")
    return "\n".join(lines)


def write_docs() -> Path:
    results = []
    foreign = []
    for path in sorted(RESULTS.glob("*.json")):
        if path.name == "latest.json":
            continue
        data = json.loads(path.read_text())
        if is_harness_result(data):
            results.append(data)
        else:
            foreign.append(path.name)
    analysis = DEFAULT_ANALYSIS
    if DOC.exists():
        old = DOC.read_text()
        if BEGIN in old and END in old:
            analysis = old.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    machine = results[0]["machine"] if results else {}
    parts = [
        "# Performance",
        "",
        "Generated by `python -m bench` (`make bench`) from `bench/results/*.json`; regenerate the text alone with "
        "`python -m bench --docs-only`. Harness rules: each comparison is interleaved in one invocation (variant "
        "order rotated every round), every measurement runs in a forked process, ratios are paired per round, "
        "correctness checks (`eq_*`) must agree across implementations. The comparison libraries are installed only "
        "in `.run/bench-venv` from `requirements/bench.txt`.",
        "",
        "## Machine",
        "",
    ]
    if machine:
        parts += [
            f"- CPU: {machine['cpu']}, {machine['cores']} cores; memory {machine['memory_gib']} GiB; {machine['os']}",
            f"- {machine['python']}; shared with other engineers' test runs (hence interleaving and min-max)",
            "",
        ]
    parts += ["## Analysis of missed targets", "", BEGIN, analysis, END, ""]
    for r in results:
        plot(r)  # before the sections, which embed the PNG only if it exists
    parts += [_stage_section(r) for r in results]
    if foreign:
        parts += [
            "## Other result files",
            "",
            "Written by stand-alone scripts, not (yet) by the harness, so not interleaved or checked here: "
            + ", ".join(f"`bench/results/{f}`" for f in foreign)
            + ".",
            "",
        ]
    DOC.write_text("\n".join(parts).rstrip() + "\n")
    return DOC
