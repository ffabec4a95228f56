"""``python -m chaos --seed N``: services → fresh world → platform under a supervisor → storm + faults →
bounded drain → auditor. Prints ``N passed, N failed`` and the seed; exits 1 on any failed check."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

import httpx

from chaos.config import ChaosConfig


def _args(argv: list[str] | None) -> ChaosConfig:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    p.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    p.add_argument("--accounts", type=int, default=200)
    p.add_argument("--ops", type=int, default=3000)
    p.add_argument("--duration", type=float, default=120.0, help="storm length cap (s)")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--drain", type=float, default=180.0, help="drain bound after the storm (s)")
    p.add_argument("--no-faults", action="store_true")
    p.add_argument(
        "--no-network-faults", action="store_true", help="no toxiproxy between platform and services"
    )
    p.add_argument("--keep-services", action="store_true", help="leave the chaos services running")
    a = p.parse_args(argv)
    return ChaosConfig(
        seed=a.seed, accounts=a.accounts, ops=a.ops, duration_s=a.duration, clients=a.clients, drain_s=a.drain,
        faults=not a.no_faults, network_faults=not (a.no_faults or a.no_network_faults),
        keep_services=a.keep_services, topic_prefix=f"chaos{a.seed}t{int(time.time())}.",
    )  # fmt: skip


def say(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _wait_healthy(cfg: ChaosConfig, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{cfg.base_url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"web did not become healthy; see {cfg.log_dir}/web.log")


DRAIN_REPORT_S = 15.0


def drain(cfg: ChaosConfig) -> dict[str, int]:
    """Wait (bounded) until the pipeline is quiet: outbox empty, fills posted, no pending order or transfer, and
    nothing changed for a few seconds. Returns the last progress snapshot."""
    from django.db import close_old_connections

    from apps.core.models import StoredEvent
    from apps.kyc.models import Transfer
    from apps.orders.models import Fill, Order
    from apps.settlement.models import JournalEntry

    def snapshot() -> dict[str, int]:
        close_old_connections()
        return {
            "unpublished": StoredEvent.objects.filter(published_at__isnull=True).count(),
            "events": StoredEvent.objects.count(),
            "fills": Fill.objects.count(),
            "fill_entries": JournalEntry.objects.filter(source_type="fill").count(),
            "pending_orders": Order.objects.filter(
                status__in=["pending_new", "pending_cancel", "pending_replace"]
            ).count(),
            "open_transfers": Transfer.objects.filter(status__in=["QUEUED", "PENDING"]).count(),
            "entries": JournalEntry.objects.count(),
        }

    start = time.monotonic()
    deadline = start + cfg.drain_s
    last: dict[str, int] = {}
    quiet_since = reported = time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = snapshot()
        except Exception as exc:
            say(f"drain: {exc!r}")
            time.sleep(2)
            continue
        if now != last:
            last, quiet_since = now, time.monotonic()
        if time.monotonic() - reported >= DRAIN_REPORT_S:  # what a long drain is waiting for
            say(f"drain at {time.monotonic() - start:.0f} s: {now}")
            reported = time.monotonic()
        settled = (
            now["unpublished"] == 0
            and now["fills"] == now["fill_entries"]
            and now["pending_orders"] == 0
            and now["open_transfers"] == 0
        )
        if settled and time.monotonic() - quiet_since >= 5:
            return now
        time.sleep(1)
    say(f"drain bound ({cfg.drain_s:.0f} s) reached: {last}")
    return last


def main(argv: list[str] | None = None) -> int:
    cfg = _args(argv)
    root = Path(__file__).resolve().parents[1]
    os.chdir(root)
    from chaos import seed as seeding
    from chaos.faults import FaultThread
    from chaos.generator import Generator, History
    from chaos.netfaults import NetworkFaults
    from chaos.services import services_sh
    from chaos.supervisor import Supervisor, consumer_names, platform_commands

    say(
        f"seed {cfg.seed}: {cfg.accounts} accounts, {cfg.ops} ops, {cfg.clients} clients, ≤{cfg.duration_s:.0f} s"
    )
    say(
        f"services: postgres :{cfg.pg_port}, redis :{cfg.redis_port}, kafka :{cfg.kafka_port} ({cfg.run_dir})"
    )
    network = NetworkFaults(cfg) if cfg.network_faults else None
    if network is not None:
        network.start()
        say(f"network faults: toxiproxy :{cfg.toxiproxy_port} in front of {network.upstreams()}")
    seeding.kafka_wipe(cfg)
    services_sh(cfg, "all", "start")
    seeding.database_recreate(cfg)
    seeding.redis_flush(cfg)
    env = {**os.environ, **cfg.django_env()}
    os.environ.update(cfg.django_env())
    import django

    django.setup()
    refs = seeding.platform_prepare()
    symbols = tuple(s for s in cfg.symbols if s in refs)
    cfg = dataclasses.replace(cfg, symbols=symbols)
    t0 = time.monotonic()
    accounts = seeding.accounts_seed(count=cfg.accounts, symbols=symbols)
    say(f"seeded {len(accounts)} accounts in {time.monotonic() - t0:.1f} s; symbols {', '.join(symbols)}")

    supervisor = Supervisor(cfg, platform_commands(cfg, consumer_names(env)), env)
    supervisor.start()
    faults = FaultThread(cfg, supervisor, random.Random(cfg.seed), network)  # noqa: S311 (reproducible fault schedule)
    history = History(cfg.history_path)
    try:
        _wait_healthy(cfg)
        say(f"platform up: {', '.join(supervisor.procs)}")
        gen = Generator(
            base_url=cfg.base_url, accounts=accounts, refs={s: refs[s] for s in symbols}, clients=cfg.clients,
            ops=cfg.ops, duration_s=cfg.duration_s, seed=cfg.seed, history=history,
        )  # fmt: skip
        if cfg.faults:
            faults.start()
        t1 = time.monotonic()
        gen.run()
        storm_s = time.monotonic() - t1
        faults.stop()
        if network is not None:
            network.reset()
        history.close()
        say(
            f"storm: {gen.issued} operations in {storm_s:.0f} s; outcomes {dict(sorted(history.outcomes.items()))}"
        )
        say(f"faults injected: {sum(faults.injected.values())} {dict(faults.injected)}")
        services_sh(cfg, "all", "start")  # whatever a last fault left down
        _wait_healthy(cfg)
        t2 = time.monotonic()
        last = drain(cfg)
        say(f"drained in {time.monotonic() - t2:.0f} s: {last}")
    finally:
        faults.stop()
        supervisor.stop()
        if network is not None:
            network.reset()
    say(f"process restarts: { {k: v for k, v in supervisor.restarts().items() if v} }")
    say(f"replaced for a failed health check: {supervisor.replacements()}")

    from django.db import close_old_connections

    from chaos.auditor import audit

    close_old_connections()
    try:
        checks = audit(history_path=cfg.history_path, symbols=symbols, seed_shares=seeding.SEED_SHARES)
    finally:
        if network is not None:
            network.stop()
    for c in checks:
        print(
            f"  {'PASS' if c.ok else 'FAIL'}  {c.name}" + (f"  [{c.detail}]" if c.detail and not c.ok else "")
        )
    failed = sum(not c.ok for c in checks)
    summary = {
        "seed": cfg.seed, "operations": gen.issued, "outcomes": dict(history.outcomes),
        "faults": dict(faults.injected), "fault_log": faults.log, "restarts": supervisor.restarts(),
        "replaced": supervisor.replacements(),
        "checks": [dataclasses.asdict(c) for c in checks], "passed": len(checks) - failed, "failed": failed,
    }  # fmt: skip
    (cfg.run_dir / f"summary-seed{cfg.seed}.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"{len(checks) - failed} passed, {failed} failed (seed {cfg.seed}; history {cfg.history_path})")
    if not cfg.keep_services:  # the flag was parsed but never read: every run left its services running
        close_old_connections()
        services_sh(cfg, "all", "stop")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
