"""CPU time of the benchmark's processes, read from ``/proc`` (Linux; no psutil in the platform venv).

A platform process started by ``pipeline.Procs`` leads its own session, so its process group id names it and
every child it forks (gunicorn workers, Celery pool processes). PostgreSQL backends are found by database name
in ``pg_stat_activity`` and the Kafka broker by its command line. Figures are CPU seconds (user + system);
``share`` turns two readings into percent of one core over the wall time between them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, float] | None:
    """(process group id, CPU seconds) of one process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) ": state is fields[0]
    return int(fields[2]), (int(fields[11]) + int(fields[12])) / TICK


def cpu_seconds(pid: int) -> float:
    """CPU seconds so far of one process (0.0 if it is gone)."""
    st = _stat(str(pid))
    return st[1] if st is not None else 0.0


def cpu_ns(pid: int) -> int:
    """Nanoseconds one process has run on a CPU so far (``/proc/<pid>/schedstat``: not tick-sampled, so a single
    statement's share is measurable); 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _run_delay(pid: str) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU (``/proc/<pid>/schedstat``)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def run_queue(groups: Mapping[str, int], extra: Mapping[str, list[int]] | None = None) -> dict[str, float]:
    """Run-queue wait so far (seconds) of every named process group's main threads (and of named pid lists,
    as ``name:pid`` like ``sample``): time it wanted a CPU and had none. Its share of the wall time says how much
    a process was starved by the machine's other load."""
    want = {pgid: name for name, pgid in groups.items()}
    out = dict.fromkeys(groups, 0.0)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        st = _stat(pid)
        if st is not None and st[0] in want:
            out[want[st[0]]] += _run_delay(pid)
    for name, pids in (extra or {}).items():
        out.update({f"{name}:{p}": _run_delay(str(p)) for p in pids})
    return out


def kafka_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and "kafka.Kafka" in _cmdline(p)]


def sample(groups: Mapping[str, int], extra: Mapping[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of every named process group and of every named list of single pids."""
    by_group: dict[int, float] = {}
    by_pid: dict[int, float] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        st = _stat(pid)
        if st is None:
            continue
        by_group[st[0]] = by_group.get(st[0], 0.0) + st[1]
        by_pid[int(pid)] = st[1]
    out = {name: by_group.get(pgid, 0.0) for name, pgid in groups.items()}
    for name, pids in extra.items():  # per pid: a backend that exits or starts between samples is not a delta
        out.update({f"{name}:{p}": by_pid[p] for p in pids if p in by_pid})
    return out


def share(before: Mapping[str, float], after: Mapping[str, float], wall_s: float) -> dict[str, float]:
    """Percent of one core each name used between two samples; ``name:pid`` entries are summed per name.

    A pid absent before counts from zero (it started inside the interval); one absent after is left out.
    """
    out: dict[str, float] = {}
    for k, v in after.items():
        name = k.split(":", 1)[0]
        out[name] = out.get(name, 0.0) + 100.0 * (v - before.get(k, 0.0)) / max(wall_s, 1e-9)
    return out
