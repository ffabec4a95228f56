"""Check 2: two engine processes split the command partitions and hand them over on a restart, exactly once.

Process A owns partitions 0,1 and B owns 2,3 (``manage.py run_engine --partitions``) of topics with RF 3 on
the 3-node cluster. Commands are produced at a steady pace while both run; once A has committed about a third
of partition 0 it is killed with SIGKILL (an open transaction may be left behind) and a replacement A' is
started for 0,1: its ``init_transactions`` fences A's transactional ids and aborts the open transaction, and it
recovers from the latest snapshot and the committed offsets. After every command is committed, A' and B get
SIGTERM (each writes a final snapshot and exits 0).

Pass conditions, on a ``read_committed`` read of ``orders.events``: per key, byte-identical to an uncrashed
in-process twin fed the same (offset, command) pairs; no fill id twice; every command's event id is the
causation id of at least one output (every command got its output); the committed offsets are the input's end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import IO, Any

from .config import ROOT, ScaleConfig
from .report import Result

PARTITIONS = 4
SYMBOLS = ["AAPL", "MSFT", "IBM", "GOOG", "AMZN", "NVDA", "TSLA", "META"]


def _ready_line(log: str) -> dict[str, Any]:
    """The JSON log record of the process's 'engine ready' line ({} if absent)."""
    for line in log.splitlines():
        if '"engine ready"' in line:
            try:
                record: dict[str, Any] = json.loads(line)
            except ValueError:
                continue
            return record
    return {}


class EngineProcess:
    """One ``manage.py run_engine`` subprocess, stderr to a log file (its 'engine ready' line is awaited)."""

    def __init__(self, cfg: ScaleConfig, name: str, argv: list[str]) -> None:
        self.name = name
        self.log_path = cfg.log_dir / f"engine-{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603
            argv, cwd=ROOT, env={**os.environ, **cfg.django_env()}, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "engine ready" in self.log_text():
                return time.monotonic() - self.started
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine {self.name} exited {self.proc.returncode}; see {self.log_path}")
            time.sleep(0.1)
        raise TimeoutError(f"engine {self.name} not ready in {timeout:.0f} s; see {self.log_path}")

    def signal(self, signum: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """Teardown: SIGKILL if still running (only this child, by its own pid)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()


def run(cfg: ScaleConfig, *, commands: int = 800, seconds: float = 8.0) -> list[Result]:
    # Django is set up by the caller with cfg.django_env(); these helpers use its KAFKA settings.
    from apps.core import events, kafka
    from apps.orders.engine_runner import EngineTopics
    from tests.orders.engine_kafka_helpers import (
        Delivered,
        by_key,
        committed,
        envelope_bytes,
        produce,
        read_all,
        twin,
        workload,
    )

    run_id = uuid.uuid4().hex[:8]
    topics = EngineTopics(
        commands=f"e{run_id}.orders.commands", events=f"e{run_id}.orders.events",
        trades=f"e{run_id}.marketdata.trades", book=f"e{run_id}.marketdata.book",
        snapshots=f"e{run_id}.engine.snapshots", dead_letters=f"e{run_id}.orders.commands.dlq",
    )  # fmt: skip
    specs = [
        kafka.TopicSpec(name, 1 if name == topics.dead_letters else PARTITIONS, {"min.insync.replicas": "2"})
        for name in (topics.commands, topics.events, topics.trades, topics.book, topics.snapshots,
                     topics.dead_letters)
    ]  # fmt: skip
    kafka.topics_ensure(specs)  # replication_factor -1: the cluster default, 3
    group = f"engine-scale-{run_id}"

    cmds = workload(seed=8, n=commands, symbols=SYMBOLS)
    records = [
        (SYMBOLS.index(sym) % PARTITIONS, sym, envelope_bytes(cmd, i)) for i, (sym, cmd) in enumerate(cmds)
    ]
    per_partition = Counter(p for p, _k, _v in records)
    delivered: list[Delivered] = []

    def feed() -> None:  # a steady stream, so the kill lands while commands are still arriving
        chunk = 40
        pause = seconds / (len(records) / chunk)
        for i in range(0, len(records), chunk):
            delivered.extend(produce(topics.commands, records[i : i + chunk]))
            time.sleep(pause)

    def argv(partitions: str) -> list[str]:
        base = [sys.executable, "manage.py", "run_engine", "--partitions", partitions, "--group", group,
                "--batch-size", "5", "--snapshot-every", "40"]  # fmt: skip
        for name in ("commands", "events", "trades", "book", "snapshots", "dead_letters"):
            base += [f"--{name.replace('_', '-')}-topic", getattr(topics, name)]
        return base

    procs: list[EngineProcess] = []
    try:
        a = EngineProcess(cfg, "A-0,1", argv("0,1"))
        b = EngineProcess(cfg, "B-2,3", argv("2,3"))
        procs += [a, b]
        ready_a, ready_b = a.wait_ready(), b.wait_ready()
        feeder = threading.Thread(target=feed, name="scale-command-feed")
        feeder.start()
        kill_at = per_partition[0] // 3
        deadline = time.monotonic() + 120
        while committed(topics.commands, group, [0])[0] < kill_at:
            if time.monotonic() > deadline:
                raise TimeoutError(f"engine A never committed {kill_at} on partition 0; see {a.log_path}")
            time.sleep(0.05)
        a.signal(signal.SIGKILL)
        killed = time.monotonic()
        a_status = a.wait(30)
        replacement = EngineProcess(cfg, "A2-0,1", argv("0,1"))
        procs.append(replacement)
        ready_replacement = replacement.wait_ready()
        feeder.join()
        delivered.sort(key=lambda d: (d.partition, d.offset))
        ends = {p: max(d.offset for d in delivered if d.partition == p) + 1 for p in range(PARTITIONS)}
        deadline = time.monotonic() + 120
        while committed(topics.commands, group, list(range(PARTITIONS))) != ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"committed offsets never reached {ends}")
            time.sleep(0.1)
        handover_s = time.monotonic() - killed
        for proc in (replacement, b):
            proc.signal(signal.SIGTERM)
        statuses = [replacement.wait(60), b.wait(60)]
    finally:
        for proc in procs:
            proc.kill()

    output = read_all(topics.events)
    reference = twin(delivered, topics)
    envelopes = [events.decode(v) for _p, _k, v in output]
    fill_ids = [e.payload["fill_id"] for e in envelopes if e.event_type == "engine.OrderFilled"]
    duplicate_fills = len(fill_ids) - len(set(fill_ids))
    caused = {e.causation_id for e in envelopes}
    command_ids = {events.decode(d.value).event_id for d in delivered}
    without_output = len(command_ids - caused)
    ready = _ready_line(replacement.log_text())
    resume_at = {int(p): off for p, off in ready.get("resume_at", {}).items()}
    suppressed = re.search(r"suppressed=(\d+)", replacement.log_text())
    figures = (
        f"{len(delivered)} commands over {PARTITIONS} partitions; A/B ready in {ready_a:.1f}/{ready_b:.1f} s; "
        f"A SIGKILLed (exit {a_status}) at offset >= {kill_at} of p0; replacement ready in "
        f"{ready_replacement:.1f} s, all committed {handover_s:.1f} s after the kill; {len(output)} events, "
        f"{len(fill_ids)} fills"
    )
    takeover = (
        f"replacement resumed at committed offsets {resume_at} from snapshots {ready.get('restored_from')}, "
        f"replayed {suppressed.group(1) if suppressed else '?'} commands with output suppressed"
    )
    return [
        Result("engine: output equals the uncrashed twin (per key, byte for byte)",
               by_key(output) == reference.events_by_key, figures),
        Result("engine: no duplicate fill id", duplicate_fills == 0 and len(fill_ids) > 0,
               f"{duplicate_fills} duplicates of {len(fill_ids)}"),
        Result("engine: every command got its output", without_output == 0,
               f"{without_output} of {len(command_ids)} commands without output"),
        Result("engine: the replacement took over A's committed position (not from zero)",
               resume_at.get(0, -1) >= kill_at and resume_at.get(1, -1) >= 0, takeover),
        Result("engine: replacement and B stop cleanly on SIGTERM", statuses == [0, 0],
               f"exit statuses {statuses}"),
    ]  # fmt: skip
