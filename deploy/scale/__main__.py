"""``python -m deploy.scale`` (``make scale-checks``): the scale-out checks of issue 8 on one machine.

Starts OUR services (3-node Kafka cluster, PostgreSQL 55700, Redis 56700 under .run/scale; never the shared
ones), runs each check, prints ``PASS``/``FAIL`` per assertion with its figures and the check's duration, then
``N passed, N failed``; exits 1 on any failure. Everything it started is torn down at the end, also after a
failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from types import FrameType

import psycopg

from . import check_engine, check_kafka, check_web
from .config import ROOT, ScaleConfig
from .kafka_cluster import KafkaCluster
from .report import Result

CHECKS = ("kafka", "engine", "web")
PG_PASSWORD = "brokerage"  # noqa: S105 (our loopback-only instance, as scripts/services.sh bootstraps it)


def say(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def services_sh(cfg: ScaleConfig, service: str, action: str, *, attempts: int = 3) -> None:
    """Ports 55700/56700 lie in Linux's ephemeral range (32768-60999): a busy loopback client can hold one as
    its source port for a moment, so a failed start is retried."""
    for attempt in range(attempts):
        with (cfg.log_dir / "services.log").open("ab") as log:
            rc = subprocess.run(  # noqa: S603
                [str(ROOT / "scripts" / "services.sh"), service, action],
                cwd=ROOT, env=cfg.services_env(), stdout=log, stderr=subprocess.STDOUT, check=False,
            ).returncode  # fmt: skip
        if rc == 0 or action != "start":
            break
        time.sleep(1 + attempt)
    if rc != 0:
        raise RuntimeError(f"services.sh {service} {action} exited {rc}; see {cfg.log_dir}/services.log")


def database_recreate(cfg: ScaleConfig) -> None:
    """A fresh database on OUR PostgreSQL (FORCE ends a previous aborted run's sessions)."""
    with psycopg.connect(
        f"postgresql://127.0.0.1:{cfg.pg_port}/postgres",
        user="brokerage",
        password=PG_PASSWORD,
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{cfg.database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{cfg.database}" OWNER brokerage')


def _log_to_file(cfg: ScaleConfig) -> None:
    handler = logging.FileHandler(cfg.log_dir / "scale.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in (None, *logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)
    logging.getLogger().addHandler(handler)
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _timed(name: str, check: Callable[[], list[Result]]) -> tuple[list[Result], float]:
    started = time.monotonic()
    try:
        results = check()
    except Exception as exc:  # a crashed check is a failed check; the others still run
        logging.getLogger("deploy.scale").exception("check %s crashed", name)
        results = [Result(f"{name}: check ran to completion", False, f"{type(exc).__name__}: {exc}")]
    return results, time.monotonic() - started


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the teardown in main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.scale", description=__doc__)
    parser.add_argument(
        "--only", default=",".join(CHECKS), help=f"comma-separated subset of {','.join(CHECKS)}"
    )
    parser.add_argument("--messages", type=int, default=30000, help="records in the Kafka check")
    parser.add_argument("--commands", type=int, default=800, help="commands in the engine check")
    args = parser.parse_args(argv)
    selected = [c for c in CHECKS if c in args.only.split(",")]
    cfg = ScaleConfig(topic_prefix=f"scale{int(time.time())}.")
    cfg.log_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=cfg.log_dir / "scale.log", level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    signal.signal(signal.SIGTERM, _terminate)
    cluster = KafkaCluster(cfg)
    need_db = bool({"engine", "web"} & set(selected))
    results: list[Result] = []
    total = time.monotonic()
    try:
        started = time.monotonic()
        stores_text = f", PostgreSQL {cfg.pg_port} and Redis {cfg.redis_port}" if need_db else ""
        say(f"starting a 3-node Kafka cluster ({cfg.bootstrap_servers}){stores_text}; logs {cfg.log_dir}")
        if need_db:
            # Before the cluster, not beside it: while three JVMs boot and dial each other, PostgreSQL's bind
            # of 55700 (inside the ephemeral port range) was seen to fail with EADDRINUSE.
            services_sh(cfg, "postgres", "start")
            services_sh(cfg, "redis", "start")
            database_recreate(cfg)
        cluster.format()
        cluster.start_all()
        if need_db:
            os.environ.update(cfg.django_env())
            import django
            from django.core.management import call_command

            django.setup()
            _log_to_file(cfg)  # the settings' JSON console logging would bury the PASS/FAIL lines
            call_command("migrate", interactive=False, verbosity=0, stdout=io.StringIO())
        say(f"services up in {time.monotonic() - started:.1f} s")

        runs: dict[str, Callable[[], list[Result]]] = {
            "kafka": lambda: check_kafka.run(cfg, cluster, messages=args.messages),
            "engine": lambda: check_engine.run(cfg, commands=args.commands),
            "web": lambda: check_web.run(cfg),
        }
        for name in selected:
            say(f"check {name} ...")
            check_results, seconds = _timed(name, runs[name])
            for result in check_results:
                print(result.line(), flush=True)
            say(f"check {name}: {seconds:.1f} s")
            results += check_results
    except Exception as exc:
        logging.getLogger("deploy.scale").exception("setup failed")
        results.append(Result("setup: services started", False, f"{type(exc).__name__}: {exc}"))
        print(results[-1].line(), flush=True)
    finally:
        started = time.monotonic()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the teardown itself must not be interrupted
        cluster.stop_all()
        if need_db:
            for service in ("redis", "postgres"):
                try:
                    services_sh(cfg, service, "stop")
                except RuntimeError as exc:
                    print(f"teardown: {exc}", flush=True)
        say(f"torn down in {time.monotonic() - started:.1f} s; total {time.monotonic() - total:.1f} s")
    passed = sum(r.ok for r in results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
