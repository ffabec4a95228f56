"""The platform under benchmark: its own database, Kafka topic prefix and Redis DB, real server processes.

Used by ``bench/ingest.py`` and ``bench/rest.py``. Nothing here touches the development database: every process
gets ``DATABASE_URL`` of ``brokerage_bench`` (created and migrated by ``db_prepare``), a topic prefix of its own
(``bench<hex>.``) and ``REDIS_URL`` DB 6. Processes are started with ``Popen`` in their own process group and
stopped by that group's id only.

``python -m bench.pipeline seed PAIRS [SYMBOL ...]`` (run with ``env()``) creates the assets (``BNCH`` alone by
default) and ``PAIRS`` buyer/seller account pairs with API keys (the sellers hold shares of every asset), and prints
them as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
DB_NAME = os.environ.get("BENCH_DB_NAME", "brokerage_bench")
PG_ADMIN = "postgres://brokerage:brokerage@127.0.0.1:55432/brokerage"
DB_URL = f"postgres://brokerage:brokerage@127.0.0.1:55432/{DB_NAME}"
SYMBOL = "BNCH"
COMMAND_PARTITIONS = 8  # config/kafka/topics.toml: orders.commands and orders.events


def symbols_spread(n: int) -> list[str]:
    """``n`` symbols (``SYMBOL`` first) on evenly spaced partitions of the symbol-keyed order topics, so that
    consumers sharing them (each takes a contiguous range of partitions) each get some of the symbols."""
    if not 1 <= n <= COMMAND_PARTITIONS:
        raise ValueError(f"1 to {COMMAND_PARTITIONS} symbols, not {n}")
    from apps.core.kafka import keys_per_partition  # pure: no Django settings read

    names = [
        SYMBOL,
        *(f"BN{a}{b}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    ]
    by_partition = keys_per_partition(COMMAND_PARTITIONS, names)
    start = by_partition.index(SYMBOL)  # SYMBOL's own partition leads the spread
    return [by_partition[(start + i * COMMAND_PARTITIONS // n) % COMMAND_PARTITIONS] for i in range(n)]


def env(prefix: str, **extra: str) -> dict[str, str]:
    """Environment of every platform process of one run."""
    e = dict(os.environ)
    e.update(
        DJANGO_SETTINGS_MODULE="brokerage.settings.local",
        DJANGO_DEBUG="false",
        DATABASE_URL=DB_URL,
        KAFKA_TOPIC_PREFIX=prefix,
        REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:56379/6"),
        CELERY_BROKER_URL=os.environ.get("BENCH_CELERY_BROKER_URL", "redis://127.0.0.1:56379/7"),
        MARKET_CALENDAR="always_open",
        ORDERS_RATE_LIMIT_COUNT="1000000000",
        PYTHONPATH=str(ROOT),
    )
    e.update(extra)
    return e


def new_prefix() -> str:
    return f"bench{uuid.uuid4().hex[:8]}."


def _migrations_stamp() -> str:
    """Digest of every migration file and the Django version: a template migrated under another stamp is stale."""
    import hashlib

    import django

    h = hashlib.sha256(django.get_version().encode())
    for path in sorted(ROOT.glob("apps/*/migrations/*.py")):
        h.update(str(path.relative_to(ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:24]


def db_prepare(fresh: bool = True) -> None:
    """(Re)create ``brokerage_bench``: a clone of the migrated template ``<DB_NAME>_tpl`` (about a second).

    The template is migrated once and rebuilt only when a migration file changed (its stamp is the database
    comment). ``fresh=False`` keeps an existing ``brokerage_bench`` and only migrates it (a no-op when current).
    """
    import psycopg

    template = f"{DB_NAME}_tpl"
    stamp = _migrations_stamp()
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if exists and not fresh:
            pass
        else:
            row = conn.execute(
                "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s", [template]
            ).fetchone()
            if row is None or row[0] != stamp:
                conn.execute(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)')
                conn.execute(f'CREATE DATABASE "{template}"')
                subprocess.run(
                    [PY, "manage.py", "migrate", "--noinput", "-v", "0"],
                    cwd=ROOT,
                    env={**env(""), "DATABASE_URL": DB_URL.rsplit("/", 1)[0] + f"/{template}"},
                    check=True,
                    timeout=600,
                )
                conn.execute(f"COMMENT ON DATABASE \"{template}\" IS '{stamp}'")
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}" TEMPLATE "{template}"')
            return
    subprocess.run(
        [PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env(""), check=True, timeout=600
    )


def manage(prefix: str, *args: str, timeout: float = 300) -> str:
    out = subprocess.run(
        [PY, "manage.py", *args], cwd=ROOT, env=env(prefix), capture_output=True, text=True, timeout=timeout
    )
    if out.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def seed(prefix: str, pairs: int, symbols: list[str] | None = None) -> list[dict[str, str]]:
    out = subprocess.run(
        [PY, "-m", "bench.pipeline", "seed", str(pairs), *(symbols or [])],
        cwd=ROOT,
        env=env(prefix),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    data: list[dict[str, str]] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def topics_drop(prefix: str) -> None:
    """Delete every topic of a stage's prefix once its processes are gone: hundreds of leftover bench
    partitions made the local broker's start-up exceed its 90 s readiness bound."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")})
    names = [t for t in admin.list_topics(timeout=30).topics if t.startswith(prefix)]
    for future in (admin.delete_topics(names, operation_timeout=30) if names else {}).values():
        future.exception()  # wait; a topic already gone is fine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: an orphan's zombie may wait for a reaper that never comes)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def groups_still_ours(pgids: list[int], *markers: str) -> list[int]:
    """Those of ``pgids`` still running a process whose command line has one of ``markers``: ids a killed earlier
    run left in a file may have been given to other processes since."""
    from bench.procstat import _cmdline

    return [g for g in pgids if _alive(g) and any(m in _cmdline(str(g)) for m in markers)]


def groups_stop(pgids: list[int], timeout: float = 15.0) -> None:
    """Stop process groups by id, whichever process started them (a child of this process is reaped too):
    SIGTERM, then SIGKILL after ``timeout`` s for a leader still running."""
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pgid in pgids:
        while True:
            with contextlib.suppress(ChildProcessError):  # not ours: an earlier measurement child started it
                os.waitpid(pgid, os.WNOHANG)
            if not _alive(pgid):
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.05)


class Procs:
    """Platform processes of one measurement; ``stop`` ends exactly the groups it started."""

    def __init__(self, prefix: str, log_dir: Path, **extra_env: str) -> None:
        self.prefix = prefix
        self.log_dir = log_dir
        self.extra_env = extra_env
        self.procs: list[subprocess.Popen[bytes]] = []
        self._names: list[str] = []
        log_dir.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str], **extra_env: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        p = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env(self.prefix, **self.extra_env, **extra_env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(p)
        self._names.append(name)
        return p

    def gunicorn(self, port: int, workers: int = 2, app: str = "brokerage.wsgi", **extra_env: str) -> None:
        self.start(
            "gunicorn",
            [
                str(ROOT / ".venv" / "bin" / "gunicorn"),
                app,
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                str(workers),
                "--threads",
                "1",
                "--timeout",
                "120",
            ],
            **extra_env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not listen within 60 s")

    def pipeline(self, *, celery: bool = False, projections: int = 1) -> None:
        """The Procfile's order path: relay -> engine -> projection (which books fills through settlement) and
        the ``kyc.aml_trades`` Kafka -> Celery bridge (every executed trade goes to the AML rules).

        ``celery=True`` also starts the Celery worker of the Procfile (without a worker the bridge's tasks only
        queue up in Redis). ``projections`` > 1 runs that many projection processes in its consumer group, as its
        ECS service scales out (named ``projection``, ``projection2``, ...).
        """
        self.start("relay", [PY, "manage.py", "run_outbox_relay"])
        self.start("engine", [PY, "manage.py", "run_engine"])
        for i in range(projections):
            self.start(
                f"projection{i + 1 if i else ''}", [PY, "manage.py", "run_consumer", "orders.projection"]
            )
        self.start("aml", [PY, "manage.py", "run_consumer", "kyc.aml_trades"])
        if celery:
            self.start(
                "celery",
                [
                    str(ROOT / ".venv" / "bin" / "celery"),
                    "-A",
                    "brokerage",
                    "worker",
                    "--loglevel",
                    "WARNING",
                    "--concurrency",
                    "2",
                    "--queues",
                    "default,settlement,compliance",
                ],
            )

    def groups(self) -> dict[str, int]:
        """Process-group id of every started process by name (``start`` gives each its own session)."""
        return {name: p.pid for name, p in zip(self._names, self.procs, strict=True)}

    def stop(self) -> None:
        groups_stop([p.pid for p in self.procs])
        self.procs = []
        self._names = []


def asset_seed(symbol: str, name: str) -> None:
    """A whole-share asset at a cent tick and a reference price of 100 (inside a process with Django set up)."""
    from decimal import Decimal

    from apps.orders.models import Asset

    Asset.objects.get_or_create(
        symbol=symbol,
        defaults={
            "name": name,
            "exchange": "NASDAQ",
            "price_increment": Decimal("0.01"),
            "min_trade_increment": Decimal("1"),
            "min_order_size": Decimal("1"),
            "fractionable": False,
            "reference_price": Decimal("100"),
        },
    )


def account_funded(
    role: str, label: str, *, mark: str, symbols: list[str], cash: str, shares: str, cost_basis: str
) -> tuple[Any, Any]:
    """(user, active account) of a new bench customer (inside a process with Django set up): a buyer gets
    ``cash``, a seller ``shares`` of each of ``symbols`` at ``cost_basis``. ``mark`` prefixes its names."""
    from decimal import Decimal

    from django.db import transaction

    from apps.accounts.models import BrokerageAccount, User
    from apps.settlement.services import cash_deposit_post, shares_deposit_post

    tag = uuid.uuid4().hex[:10]
    user = User.objects.create(
        username=f"{mark}{role}{label}-{tag}", email=f"{mark}{role}{label}-{tag}@bench.invalid"
    )
    account = BrokerageAccount.objects.create(
        owner=user, account_number=f"{mark.upper()}{tag}", status=BrokerageAccount.Status.ACTIVE
    )
    with transaction.atomic():
        if role == "buyer":
            cash_deposit_post(account=account, amount=Decimal(cash), transfer_id=f"{mark}-{tag}")
        else:
            for symbol in symbols:
                shares_deposit_post(
                    account=account,
                    symbol=symbol,
                    qty=Decimal(shares),
                    cost_basis=Decimal(cost_basis),
                    transfer_id=f"{mark}-{tag}-{symbol}",
                )
    return user, account


def _seed_main(pairs: int, symbols: list[str]) -> None:
    import django

    django.setup()
    from apps.accounts.services import api_key_create

    for symbol in symbols:
        asset_seed(symbol, "Bench Corp")
    out = []
    for i in range(pairs):
        row: dict[str, str] = {}
        for role in ("buyer", "seller"):
            user, account = account_funded(
                role, str(i), mark="bn", symbols=symbols, cash="1000000000", shares="10000000",
                cost_basis="1000000000",
            )  # fmt: skip
            key, secret = api_key_create(owner=user, name="bench", scopes=["read", "trade"])
            row[f"{role}_key"] = key.key_id
            row[f"{role}_secret"] = secret
            row[f"{role}_account"] = str(account.id)
        out.append(row)
    print(json.dumps(out))


def headers(key: str, secret: str) -> dict[str, str]:
    return {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret, "Content-Type": "application/json"}


def query(sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """One read of the benchmark database (after a run; no Django in the parent)."""
    import psycopg

    with psycopg.connect(DB_URL) as conn:
        return list(conn.execute(sql, params).fetchall())


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"]:
        _seed_main(int(sys.argv[2]), sys.argv[3:] or [SYMBOL])
