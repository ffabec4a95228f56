"""``python -m bench``: run the registered benchmark stages, write bench/results/ and docs/PERFORMANCE.md.

Usage::

    python -m bench                                   # every registered stage that is present, 5 rounds
    python -m bench --stage engine_core --rounds 5 --quick
    python -m bench --docs-only                       # regenerate docs/PERFORMANCE.md from bench/results/*.json

The comparison libraries and matplotlib live only in the bench virtualenv ``.run/bench-venv`` (built from
``requirements/bench.txt``; never a platform dependency). When started from another interpreter this module
creates or refreshes that venv and re-executes itself there (``--no-venv`` runs in the current interpreter and
skips whatever is missing).

Adding a stage: write ``bench/<name>.py`` with the interface in ``bench/harness.py`` (``cases`` + ``run(round,
case, config) -> dict[str, float]``) and add one line to ``STAGES``. A registered module that does not exist
yet is reported as skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import importlib
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

from bench.harness import (
    RESULTS,
    ROOT,
    Config,
    machine,
    print_table,
    run_stage,
    write_latest,
    write_result,
)

# Stage registry: name -> (module, environment). Order is the run order. Environment "bench" runs in
# .run/bench-venv (comparison libraries, matplotlib); "platform" runs in the platform venv .venv (Django, Kafka
# client, services) as a child `python -m bench --no-venv --stage NAME` so the two dependency sets never mix.
# Run order. ``engine_kafka`` goes last: the broker's JVM compiles its hot paths over the first minutes of load,
# and measured first (a broker just started by ``make bench``) every one of its rounds ran slower, the engine's CPU
# per command included: burst 9,588/s and one hop's p99 173 ms, the same stage again right after 15,314/s and
# 34 ms; an unrecorded 20 s warm-up pass moved it only part of the way (10,616/s, then 12,453/s on the next run).
# After ingest and rest the broker has carried minutes of the platform's own traffic, as a production broker has.
STAGES: dict[str, tuple[str, str]] = {
    "engine_core": ("bench.engine_core", "bench"),
    "marketdata_fanout": ("bench.marketdata_fanout", "platform"),
    "ingest": ("bench.ingest", "platform"),
    "rest": ("bench.rest", "platform"),
    "engine_kafka": ("bench.engine_kafka", "platform"),
}
PLATFORM_PY = ROOT / ".venv" / "bin" / "python"
VENV = ROOT / ".run" / "bench-venv"
REQUIREMENTS = ROOT / "requirements" / "bench.txt"


def ensure_venv(argv: list[str]) -> None:
    """Create/refresh .run/bench-venv when requirements/bench.txt changed, then exec this command inside it."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{digest}"
    if not stamp.exists():
        print(
            f"bench: preparing {VENV.relative_to(ROOT)} from {REQUIREMENTS.relative_to(ROOT)}",
            file=sys.stderr,
        )
        base = sys.executable if sys.version_info[:2] == (3, 11) else "python3.11"
        install = [str(ROOT / "scripts" / "pyinstall.sh"), str(VENV), "-r", str(REQUIREMENTS)]
        subprocess.run(install, check=True, env={**os.environ, "PYTHON": base})
        # The engine core stage runs the platform's Rust engine. `make venv` installs its wheel into the bench
        # venv only when that venv exists, so a venv made here gets it now (from the platform venv, which builds it).
        native = [sys.executable, str(ROOT / "scripts" / "build_engine_native.py"), "--native-only"]
        subprocess.run(native, check=True, cwd=ROOT)
        for old in VENV.glob(".installed-*"):
            old.unlink()
        stamp.touch()
    os.chdir(ROOT)
    os.execv(str(py), [str(py), "-m", "bench", *argv])  # noqa: S606 - our own venv interpreter


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--stage", action="append", choices=sorted(STAGES), help="run only this stage (repeatable)"
    )
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (>= 5 for published figures)")
    ap.add_argument(
        "--quick", action="store_true", help="smaller workloads (a smoke run, not for publishing)"
    )
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--no-venv", action="store_true", help="run in this interpreter, skip missing libraries")
    ap.add_argument("--no-docs", action="store_true", help="do not regenerate docs/PERFORMANCE.md")
    ap.add_argument(
        "--docs-only", action="store_true", help="only regenerate docs/PERFORMANCE.md from results"
    )
    args = ap.parse_args(argv)
    if not args.no_venv:
        ensure_venv(argv)
    from bench import report

    if args.docs_only:
        print(f"wrote {report.write_docs()}")
        return 0
    config = Config(rounds=args.rounds, quick=args.quick, seed=args.seed)
    command = shlex.join(["python", "-m", "bench", *argv])
    results = []
    in_bench_venv = Path(sys.prefix).resolve() == VENV.resolve()
    failed = False
    started, started_utc = time.monotonic(), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    stages = args.stage or list(STAGES)
    for name in stages:
        mod_name, env = STAGES[name]
        if env == "platform" and in_bench_venv:
            failed |= run_in_platform_venv(name, config)
            continue
        module = load_stage(name, mod_name)
        if module is None:
            continue
        print(
            f"bench: stage {name}: {config.rounds} rounds{' (quick)' if config.quick else ''}",
            file=sys.stderr,
        )
        result = run_stage(name, module, config, command)
        print(f"wrote {write_result(result)}")
        print_table(result)
        results.append(result)
    elapsed = time.monotonic() - started
    if not config.quick:  # quick results go to <stage>.quick.json only
        run = {
            "command": "make bench" if argv == [] else command,
            "stages": stages,
            "elapsed_s": round(elapsed, 1),
            "started_utc": started_utc,
            "git_revision": machine()["git_revision"],
        }
        # Only a run of every stage is "the last full run"; a --stage run keeps that record.
        print(f"wrote {write_latest(results, None if args.stage else run)}")
        targets_print(stages)
    print(f"bench: {len(stages)} stage(s) took {elapsed / 60:.1f} min", file=sys.stderr)
    if not args.no_docs and not config.quick:
        print(f"wrote {report.write_docs()}")
    bad = failed or any(r["mismatches"] or r["errors"] for r in results)
    return 1 if bad else 0


def targets_print(stages: list[str]) -> None:
    """Every target of the stages just run (each stage printed its own table already)."""
    print("\n== targets (issue 9) ==")
    for name in stages:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            print(f"  {name:<18} no result file")
            continue
        for t in json.loads(path.read_text()).get("targets", []):
            print(f"  {name:<18} [{'met   ' if t['met'] else 'MISSED'}] {t['target']}: {t['detail']}")


def load_stage(name: str, mod_name: str) -> ModuleType | None:
    """Import a registered stage; None (with the reason on stderr) if absent or not a harness stage yet."""
    if importlib.util.find_spec(mod_name) is None:
        print(f"bench: stage {name} skipped ({mod_name} not present yet)", file=sys.stderr)
        return None
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:  # a dependency of the stage is missing in this interpreter
        print(f"bench: stage {name} skipped (import failed: {exc})", file=sys.stderr)
        return None
    missing = [a for a in ("BASELINE", "cases", "run") if not hasattr(module, a)]
    if missing:
        print(
            f"bench: stage {name} skipped ({mod_name} lacks {', '.join(missing)}; interface: bench/harness.py)",
            file=sys.stderr,
        )
        return None
    return module


def run_in_platform_venv(name: str, config: Config) -> bool:
    """Run one platform-environment stage in .venv; True if it failed."""
    if not PLATFORM_PY.exists():
        print(
            f"bench: stage {name} skipped (no {PLATFORM_PY.relative_to(ROOT)}; run `make venv`)",
            file=sys.stderr,
        )
        return False
    cmd = [str(PLATFORM_PY), "-m", "bench", "--no-venv", "--no-docs", "--stage", name]
    cmd += ["--rounds", str(config.rounds), "--seed", str(config.seed)] + (
        ["--quick"] if config.quick else []
    )
    return subprocess.run(cmd, cwd=ROOT, check=False).returncode != 0


if __name__ == "__main__":
    sys.exit(main())
