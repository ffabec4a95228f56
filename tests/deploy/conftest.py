"""A real PostgreSQL streaming replica of the running primary, made and torn down by the tests.

Design (pytest-django cannot create a test database on a standby, so the replica tests do not use the test
database at all):
- A real, non-test database ``brokerage_rt_<pid>`` is created on the primary (superuser via the unix socket) and
  given the ``django_content_type`` table only (a small real model to route).
- ``pg_basebackup -R -X stream`` (replication role ``brokerage_replicator``, no replication slot, so nothing is
  left behind on the shared primary) copies the primary into ``.run/replica-test``; a hot standby starts there on
  port 55442 (``pg_ctl`` as the postgres user) and streams from the primary, so the database replicates.
- Two extra connection aliases, ``rt_primary`` and ``rt_replica``, point at that database on each server; the
  tests route through ``PrimaryReplicaRouter`` configured with those aliases.
- At the end: the standby stops, its directory is removed, the database is dropped on the primary.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PRIMARY_PORT = int(os.environ.get("PG_PORT", "55432"))
PRIMARY_SOCKET = ROOT / ".run" / "postgres" / "socket"
# Above Linux's ephemeral range (32768-60999 by default), so no client socket of the run can hold it when the
# standby binds; 55442 was, once: a connection's local port, which a connect probe does not see.
REPLICA_PORT_BASE = int(os.environ.get("REPLICA_TEST_PORT", "61442"))
REPLICA_DIR = ROOT / ".run" / "replica-test"
REPLICATOR = "brokerage_replicator"
REPLICATOR_PASSWORD = "replicator-test-only"
RT_DB = f"brokerage_rt_{os.getpid()}"


def _as_postgres(*cmd: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        ["runuser", "-u", "postgres", "--", *cmd],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {result.stdout}{result.stderr}")
    return result.stdout


def _psql(sql: str, *, db: str = "postgres", port: int = PRIMARY_PORT, socket: Path = PRIMARY_SOCKET) -> str:
    return _as_postgres(
        str(PG_BIN / "psql"), "-h", str(socket), "-p", str(port), "-d", db, "-v", "ON_ERROR_STOP=1",
        "-XAtqc", sql,
    )  # fmt: skip


def _free_port(start: int) -> int:
    """The first port from ``start`` that a socket can bind on 127.0.0.1 now (a listener or a connection's local
    end holds it otherwise)."""
    for port in range(start, start + 50):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + 49}")


# A hot standby must allow at least what its primary allows; read the primary's values instead of guessing.
STANDBY_MUST_MATCH = (
    "max_connections",
    "max_worker_processes",
    "max_wal_senders",
    "max_prepared_transactions",
    "max_locks_per_transaction",
)


def _alias_settings(port: int) -> dict[str, Any]:
    base = dict(connections.settings["default"])
    return {**base, "NAME": RT_DB, "PORT": port, "CONN_MAX_AGE": 0, "TEST": {"MIRROR": None}}


@pytest.fixture(scope="session")
def streaming_replica(django_db_blocker: Any) -> Iterator[dict[str, str]]:
    """Start the standby; yield the two aliases {"primary": "rt_primary", "replica": "rt_replica"}."""
    if not (PG_BIN / "pg_basebackup").exists() or not PRIMARY_SOCKET.exists():
        pytest.fail("needs the local PostgreSQL 15 primary of scripts/services.sh (socket in .run/postgres)")
    _psql(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '" + REPLICATOR + "') THEN "
        f"CREATE ROLE {REPLICATOR} WITH REPLICATION LOGIN PASSWORD '{REPLICATOR_PASSWORD}'; END IF; END $$"
    )
    _psql(f"DROP DATABASE IF EXISTS {RT_DB} WITH (FORCE)")
    _psql(f"CREATE DATABASE {RT_DB} OWNER brokerage")
    try:
        _stop_standby()
        shutil.rmtree(REPLICA_DIR, ignore_errors=True)
        REPLICA_DIR.mkdir(parents=True)
        shutil.chown(REPLICA_DIR, "postgres", "postgres")
        data, sock = REPLICA_DIR / "data", REPLICA_DIR / "socket"
        _as_postgres("mkdir", "-m", "700", str(sock))
        _as_postgres(
            str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(PRIMARY_PORT), "-U", REPLICATOR,
            "-D", str(data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
            env={"PGPASSWORD": REPLICATOR_PASSWORD},
        )  # fmt: skip
        matched = " ".join(f"-c {name}={_psql(f'SHOW {name}').strip()}" for name in STANDBY_MUST_MATCH)
        log = REPLICA_DIR / "standby.log"
        port = REPLICA_PORT_BASE
        for attempt in range(3):  # a port taken between the probe and the bind: the next free one
            port = _free_port(REPLICA_PORT_BASE + attempt)
            try:
                _as_postgres(
                    str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                    "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c hot_standby=on "
                    f"-c shared_buffers=32MB {matched}",
                    "start",
                )  # fmt: skip
                break
            except RuntimeError as exc:  # the standby's own log says why (it is removed below)
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no standby log)"
                if "Address already in use" in tail and attempt < 2:
                    log.unlink(missing_ok=True)
                    continue
                raise RuntimeError(f"{exc}\nstandby on port {port}, its log:\n{tail}") from exc
        connections.settings["rt_primary"] = _alias_settings(PRIMARY_PORT)
        connections.settings["rt_replica"] = _alias_settings(port)
        with django_db_blocker.unblock():
            from django.contrib.contenttypes.models import ContentType

            # The one table the tests route (no migrate: its post_migrate hooks expect every app's tables).
            with connections["rt_primary"].schema_editor() as editor:
                editor.create_model(ContentType)
            yield {
                "primary": "rt_primary",
                "replica": "rt_replica",
                "replica_socket": str(sock),
                "replica_port": str(port),
            }
    finally:
        for alias in ("rt_primary", "rt_replica"):
            if alias in connections.settings:
                connections[alias].close()
                del connections[alias]
                connections.settings.pop(alias)
        _stop_standby()
        shutil.rmtree(REPLICA_DIR, ignore_errors=True)
        _psql(f"DROP DATABASE IF EXISTS {RT_DB} WITH (FORCE)")


def _stop_standby() -> None:
    data = REPLICA_DIR / "data"
    if (data / "postmaster.pid").exists():
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)


def standby_sql(sql: str, replica: dict[str, str]) -> str:
    """Run SQL on the standby of ``streaming_replica`` as superuser (replay control functions need it)."""
    return _psql(sql, db=RT_DB, port=int(replica["replica_port"]), socket=Path(replica["replica_socket"]))
