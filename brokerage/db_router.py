"""Primary/replica database routing: read-heavy, read-only queries may go to a PostgreSQL streaming replica.

Invariants (the router never trades correctness for load):
- Every write goes to the primary. So does every read while the primary connection is inside a transaction
  (reads that lock or must see the transaction's own writes), inside ``use_primary()``, or within
  ``PIN_AFTER_WRITE_S`` seconds after a write in the same context (read-your-writes; a request starts a fresh
  context via ``ReplicaPinMiddleware``).
- Only models listed in ``settings.REPLICA_ROUTING["READ_MODELS"]`` (app labels or ``app.Model`` labels:
  reports, market-data history, activities) or reads inside ``use_replica()`` (admin lists) are candidates.
- A candidate read goes to the replica only when the replica is configured, reachable and not lagging: its
  replay position is at most ``MAX_LAG_BYTES`` behind the primary's ``pg_current_wal_lsn()`` and, when behind
  at all, its last replayed commit (``pg_last_xact_replay_timestamp()``) is at most ``MAX_LAG_SECONDS`` old.
  The measurement is cached per process for ``LAG_CHECK_INTERVAL_S``; any error measuring it means "primary".
- The replica is never migrated (``allow_migrate`` is False for it); in tests it mirrors the primary.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connections
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "PRIMARY_ALIAS": "default",
    "REPLICA_ALIAS": "replica",
    "READ_MODELS": [],
    "MAX_LAG_SECONDS": 5.0,
    "MAX_LAG_BYTES": 16 * 1024 * 1024,
    "LAG_CHECK_INTERVAL_S": 1.0,
    "PIN_AFTER_WRITE_S": 5.0,
}

# Context-local (thread and asyncio task): how reads are pinned in the current unit of work.
_force_primary: contextvars.ContextVar[bool] = contextvars.ContextVar("db_force_primary", default=False)
_force_replica: contextvars.ContextVar[bool] = contextvars.ContextVar("db_force_replica", default=False)
_pinned_until: contextvars.ContextVar[float] = contextvars.ContextVar("db_pinned_until", default=0.0)


def routing_config() -> dict[str, Any]:
    return {**DEFAULTS, **getattr(settings, "REPLICA_ROUTING", {})}


@contextmanager
def use_primary() -> Iterator[None]:
    """Every read inside goes to the primary (a flow that must see its own or others' latest writes)."""
    token = _force_primary.set(True)
    try:
        yield
    finally:
        _force_primary.reset(token)


@contextmanager
def use_replica() -> Iterator[None]:
    """Reads of any model inside may use the replica (still subject to pinning and lag): admin lists, reports."""
    token = _force_replica.set(True)
    try:
        yield
    finally:
        _force_replica.reset(token)


def pin_primary(seconds: float | None = None) -> None:
    """Pin this context's reads to the primary for ``seconds`` (default PIN_AFTER_WRITE_S) from now."""
    span = routing_config()["PIN_AFTER_WRITE_S"] if seconds is None else seconds
    _pinned_until.set(max(_pinned_until.get(), time.monotonic() + span))


@contextmanager
def routing_scope() -> Iterator[None]:
    """A fresh routing context (one request, one task): no pin carried over from earlier work on this thread."""
    tokens = (_force_primary.set(False), _force_replica.set(False), _pinned_until.set(0.0))
    try:
        yield
    finally:
        _pinned_until.reset(tokens[2])
        _force_replica.reset(tokens[1])
        _force_primary.reset(tokens[0])


@dataclass(frozen=True)
class ReplicaLag:
    """One measurement. ``lag_bytes`` is primary WAL position minus the replica's replayed position."""

    in_recovery: bool
    lag_bytes: int
    lag_seconds: float
    replay_paused: bool

    def acceptable(self, *, max_bytes: int, max_seconds: float) -> bool:
        if not self.in_recovery:
            return False  # a promoted or misconfigured "replica" is not a replica of this primary
        if self.lag_bytes <= 0:
            return True
        return self.lag_bytes <= max_bytes and self.lag_seconds <= max_seconds


def replica_lag_measure(*, primary: str, replica: str) -> ReplicaLag:
    """Measure how far ``replica`` is behind ``primary`` (two small queries; raises DatabaseError on failure)."""
    with connections[primary].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        primary_lsn = cursor.fetchone()[0]
    with connections[replica].cursor() as cursor:
        cursor.execute(
            "SELECT pg_is_in_recovery(),"
            " COALESCE(pg_wal_lsn_diff(%s::pg_lsn, pg_last_wal_replay_lsn()), 0)::bigint,"
            " COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float8,"
            " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END",
            [primary_lsn],
        )
        in_recovery, lag_bytes, lag_seconds, paused = cursor.fetchone()
    return ReplicaLag(
        in_recovery=bool(in_recovery),
        lag_bytes=int(lag_bytes),
        lag_seconds=float(lag_seconds),
        replay_paused=bool(paused),
    )


class _LagCache:
    """Per-process cache of the last verdict, so routing costs a lag query at most once per interval."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdicts: dict[tuple[str, str], tuple[float, bool]] = {}

    def healthy(self, primary: str, replica: str, config: dict[str, Any]) -> bool:
        key = (primary, replica)
        now = time.monotonic()
        with self._lock:
            cached = self._verdicts.get(key)
            if cached is not None and now - cached[0] < config["LAG_CHECK_INTERVAL_S"]:
                return cached[1]
        try:
            lag = replica_lag_measure(primary=primary, replica=replica)
            verdict = lag.acceptable(max_bytes=config["MAX_LAG_BYTES"], max_seconds=config["MAX_LAG_SECONDS"])
            if not verdict:
                logger.warning("replica %s bypassed: %s", replica, lag)
        except DatabaseError:
            logger.warning("replica %s unreachable; reading from %s", replica, primary, exc_info=True)
            connections[replica].close()
            verdict = False
        with self._lock:
            self._verdicts[key] = (now, verdict)
        return verdict

    def clear(self) -> None:
        with self._lock:
            self._verdicts.clear()


lag_cache = _LagCache()


def replica_configured(config: dict[str, Any] | None = None) -> bool:
    config = config or routing_config()
    return config["REPLICA_ALIAS"] in settings.DATABASES or config["REPLICA_ALIAS"] in connections.settings


def read_alias(model: type[Model] | None = None) -> str:
    """The alias a read of ``model`` should use now (also for explicit ``.using(read_alias())`` in selectors)."""
    config = routing_config()
    primary, replica = str(config["PRIMARY_ALIAS"]), str(config["REPLICA_ALIAS"])
    if not replica_configured(config):
        return primary
    if _force_primary.get() or time.monotonic() < _pinned_until.get():
        return primary
    if connections[primary].in_atomic_block:
        return primary
    candidate = _force_replica.get()
    if not candidate and model is not None:
        listed = set(config["READ_MODELS"])
        candidate = model._meta.app_label in listed or model._meta.label in listed
    if not candidate:
        return primary
    return replica if lag_cache.healthy(primary, replica, config) else primary


class PrimaryReplicaRouter:
    """Django database router (settings.DATABASE_ROUTERS). See the module docstring for the rules."""

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return read_alias(model)

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        pin_primary()  # read-your-writes: this context reads from the primary for a while
        return str(routing_config()["PRIMARY_ALIAS"])

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        config = routing_config()
        same_data = {config["PRIMARY_ALIAS"], config["REPLICA_ALIAS"]}
        if obj1._state.db in same_data and obj2._state.db in same_data:
            return True
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        return False if db == routing_config()["REPLICA_ALIAS"] else None


class ReplicaPinMiddleware:
    """Each request gets a fresh routing context; a request that wrote pins its own later reads to the primary.

    Unsafe methods (POST/PUT/PATCH/DELETE) read from the primary throughout: they validate against the truth.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with routing_scope():
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                with use_primary():
                    return self.get_response(request)
            return self.get_response(request)


def replica_database(url: str, *, primary: dict[str, Any]) -> dict[str, Any]:
    """The ``DATABASES["replica"]`` entry for ``url``: primary's options, never migrated, a test mirror."""
    import environ

    config: dict[str, Any] = environ.Env.db_url_config(url)
    for key in ("ATOMIC_REQUESTS", "CONN_MAX_AGE", "CONN_HEALTH_CHECKS"):
        if key in primary:
            config[key] = primary[key]
    options = config.setdefault("OPTIONS", {})
    options.setdefault("connect_timeout", 2)
    # Binding, keepalives, session bounds: as the primary.
    for key, value in primary.get("OPTIONS", {}).items():
        options.setdefault(key, value)
    # pytest-django cannot create a test database on a standby: the ordinary suite mirrors the primary.
    config["TEST"] = {"MIRROR": "default"}
    return config
