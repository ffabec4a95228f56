"""Projection throughput: engine events applied by the ``orders.projection`` consumer, in process, no Kafka.

``python -m bench.projection --events 3000 [--chunk 100] [--profile] [--fresh]``

What it measures: the consumer's apply step exactly as ``ConsumerRunner`` runs it for a ``transaction_batch``
spec (``apps.core.consumers.inbox_apply_many`` on chunks of ``--chunk`` events: inbox insert, projection,
settlement, commit and the after-commit trade-update pushes to the real Channels layer), timed alone; the
Kafka poll and offset commit are left out (the runner does one of each per consume batch).

Workload (seeded, deterministic): one asset, buyer and seller cash accounts, orders submitted through
``orders_submit_batch`` (real holds and reservations, real outbox commands); the commands run through the real
engine core and are wrapped by the engine runner's own ``event_envelope``; half of what rests after each round is
canceled in the engine. Buys and sells of random sizes at one price give a mix of accepted, partial fill, fill
and cancel events. Only the event types the consumer subscribes to are applied (as the runner filters them).

After the run it checks the guarantees: ledger cached balances equal their postings and every entry sums to
zero, per-account ``trade_update`` seq is 1..n without gaps, every terminal order's hold/reservation is fully
released, and a replay of every chunk changes nothing. It prints events/s, queries/event (by
``connection.execute_wrapper``), this process's CPU ms/event and, with ``--profile``, the cProfile top functions.

Database: ``BENCH_DB_NAME`` (default ``brokerage_bench_projection``), created when missing (recreated with
``--fresh``) and migrated; Redis for the Channels layer: ``BENCH_REDIS_URL`` (default DB 6).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import random
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

os.environ.setdefault("BENCH_DB_NAME", "brokerage_bench_projection")

from bench import pipeline  # reads BENCH_DB_NAME at import

# A symbol of its own per run: the engine's event and fill ids derive from symbol and book sequence.
SYMBOL = "P" + "".join(random.SystemRandom().choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(7))


def _db_ready(fresh: bool) -> None:
    """Create (``fresh``: recreate) the bench database and bring it to the code's migrations."""
    pipeline.db_prepare(fresh=fresh)


def _setup() -> None:
    os.environ.update(pipeline.env(f"benchproj{uuid.uuid4().hex[:6]}."))
    import django

    django.setup()


def _seed(accounts: int) -> tuple[list[Any], list[Any]]:
    pipeline.asset_seed(SYMBOL, "Bench Projection Corp")
    buyers: list[Any] = []
    sellers: list[Any] = []
    for i in range(accounts):
        for role, out in (("buyer", buyers), ("seller", sellers)):
            _user, account = pipeline.account_funded(
                role, str(i), mark="bp", symbols=[SYMBOL], cash="100000000", shares="1000000",
                cost_basis="90000000",
            )  # fmt: skip
            out.append(account)
    return buyers, sellers


def _events(n_events: int, buyers: list[Any], sellers: list[Any], seed: int) -> list[Any]:
    """Submit orders, run their commands through the engine, and return the projection's share of its events."""
    from apps.core.models import StoredEvent
    from apps.orders.batch import orders_submit_batch
    from apps.orders.consumers import ORDERS_PROJECTION
    from apps.orders.engine_runner import Origin, command_decode, event_envelope
    from apps.orders.types import OrderRequest
    from engine import commands as ec
    from engine.engine import Engine

    rng = random.Random(seed)
    engine = Engine()
    wanted = ORDERS_PROJECTION.event_types or frozenset()
    out: list[Any] = []
    seen = (
        StoredEvent.objects.filter(topic="orders.commands")
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    seen = seen or 0
    # The engine's ids derive from its input position: each run is its own incarnation of the command topic.
    origin = Origin(f"bench-{uuid.uuid4().hex}", 0)
    seq = 0
    resting: dict[str, Any] = {}

    def run(command_env: Any, command: Any) -> None:
        nonlocal seq
        seq += 1
        for i, ev in enumerate(engine.apply(seq, command)):
            env = event_envelope(ev, i, origin=origin, command=command_env)
            if env.event_type in wanted:
                out.append(env)
            oid = env.payload.get("order_id")
            if env.event_type == "engine.OrderAccepted" and isinstance(oid, str):
                resting[oid] = command_env
            elif env.event_type in ("engine.OrderCanceled", "engine.OrderExpired") or (
                env.event_type == "engine.OrderFilled" and int(env.payload.get("leaves_qty_e9", 1)) == 0
            ):
                resting.pop(str(oid), None)

    while len(out) < n_events:
        for side, group in (("sell", sellers), ("buy", buyers)):
            away = Decimal("0.01") if side == "sell" else Decimal("-0.01")
            for account in group:
                items = [
                    OrderRequest(
                        symbol=SYMBOL,
                        qty=Decimal(rng.randint(1, 20)),
                        side=side,
                        type="limit",
                        time_in_force="day",
                        # One in five stays away from the touch and rests (later canceled or filled).
                        limit_price=Decimal("100") + (away if rng.random() < 0.2 else 0),
                    )
                    for _ in range(rng.randint(1, 3))
                ]
                for outcome in orders_submit_batch(account=account, items=items):
                    if outcome.error is not None:
                        raise RuntimeError(f"bench order refused: {outcome.error}")
        for row in StoredEvent.objects.filter(topic="orders.commands", id__gt=seen).order_by("id"):
            seen = row.id
            run(*command_decode(bytes(row.body)))
        # Cancel half of what rests (in the engine: the projection sees engine.OrderCanceled).
        for oid in rng.sample(sorted(resting), len(resting) // 2):
            run(resting[oid], ec.CancelOrder(order_id=oid))
    return out[:n_events]


class QueryCounter:
    """Counts statements sent to the database (``connection.execute_wrapper``)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


class BackendCpuByStatement:
    """The database backend's CPU per statement kind: around each execute (``connection.execute_wrapper``), each
    COPY (``apps.core.copy._copy``) and each commit, read from ``/proc/<pid>/schedstat`` (the backend is idle in
    between, so the difference is that statement's work, deferred triggers and key checks included for a commit)."""

    def __init__(self) -> None:
        from django.db import connection

        from bench.procstat import cpu_ns

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            self.pid = int(cursor.fetchone()[0])
        self.cpu_ns = cpu_ns
        self.ns: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def timed(self, kind: str, run: Callable[[], Any]) -> Any:
        before = self.cpu_ns(self.pid)
        try:
            return run()
        finally:
            self.ns[kind] += self.cpu_ns(self.pid) - before
            self.calls[kind] += 1

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        return self.timed(" ".join(sql.split())[:72], lambda: execute(sql, params, many, context))

    def installed(self) -> Any:
        """A context manager: the wrapper on the connection, COPY and commit timed, all undone at exit."""
        import contextlib

        from django.db import connection

        from apps.core import copy

        @contextlib.contextmanager
        def cm() -> Any:
            original_copy, original_commit = copy._copy, connection._commit  # type: ignore[attr-defined]

            def timed_copy(table: str, columns: list[str], rows: Any) -> int:
                return int(self.timed(f"COPY {table}", lambda: original_copy(table, columns, rows)))

            setattr(copy, "_copy", timed_copy)  # noqa: B010 - undone below
            setattr(connection, "_commit", lambda: self.timed("COMMIT", original_commit))  # noqa: B010
            try:
                with connection.execute_wrapper(self):
                    yield self
            finally:
                setattr(copy, "_copy", original_copy)  # noqa: B010
                delattr(connection, "_commit")  # the instance attribute set above: the class's method again

        return cm()

    def table(self, events: int) -> list[tuple[str, float, float]]:
        """(statement, µs of backend CPU per event, calls per event), most expensive first."""
        return [(kind, ns / 1000 / events, self.calls[kind] / events) for kind, ns in self.ns.most_common()]


def _backend_cpu() -> float:
    """CPU seconds so far of this connection's PostgreSQL backend (same machine: read from ``/proc``)."""
    from django.db import connection

    from bench.procstat import cpu_seconds

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cpu_seconds(cursor.fetchone()[0])


def _apply(
    events: list[Any], chunk: int, counter: QueryCounter, by_statement: BackendCpuByStatement | None = None
) -> tuple[float, float, float]:
    """(wall seconds, this process's CPU seconds, its database backend's CPU seconds)."""
    import contextlib

    from django.db import connection

    from apps.core.consumers import MessageMeta, inbox_apply_many
    from apps.orders.consumers import ORDERS_PROJECTION

    items = [(env, MessageMeta("orders.events", 0, i, env.aggregate_id)) for i, env in enumerate(events)]
    db_cpu = _backend_cpu()
    start, cpu = time.perf_counter(), time.process_time()
    timing = by_statement.installed() if by_statement is not None else contextlib.nullcontext()
    with connection.execute_wrapper(counter), timing:
        for i in range(0, len(items), chunk):
            inbox_apply_many(ORDERS_PROJECTION, items[i : i + chunk])
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return elapsed, cpu, _backend_cpu() - db_cpu


def _snapshot() -> tuple[int, ...]:
    from apps.core.models import InboxRecord
    from apps.orders.models import Fill, Order, TradeUpdate
    from apps.settlement.models import JournalEntry, Posting

    return (
        Fill.objects.count(),
        TradeUpdate.objects.count(),
        JournalEntry.objects.count(),
        Posting.objects.count(),
        InboxRecord.objects.count(),
        Order.objects.filter(status__in=Order.TERMINAL).count(),
    )


def _check() -> dict[str, Any]:
    """The guarantees, checked on the whole database after the run."""
    from django.db import connection

    from apps.orders.models import Order
    from apps.settlement.selectors import ledger_balance_breaks

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT account_id FROM orders_tradeupdate GROUP BY account_id "
            "HAVING min(seq) <> 1 OR max(seq) <> count(*) OR count(DISTINCT seq) <> count(*)) gaps"
        )
        seq_gaps = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM (SELECT entry_id FROM settlement_posting GROUP BY entry_id, asset "
            "HAVING sum(amount) <> 0) unbalanced"
        )
        unbalanced = cursor.fetchone()[0]
        # Joined in the database: the bench database keeps every run's orders (far more than a parameter list).
        cursor.execute(
            "SELECT coalesce(sum(r.remaining), 0) FROM (SELECT order_id, remaining FROM settlement_cashhold "
            "UNION ALL SELECT order_id, remaining FROM settlement_sharereservation) r "
            "JOIN orders_order o ON r.order_id = o.id::text WHERE o.status = ANY(%s)",
            [list(Order.TERMINAL)],
        )
        unreleased = cursor.fetchone()[0]
    return {
        "balance_breaks": len(ledger_balance_breaks()),
        "unbalanced_entries": unbalanced,
        "trade_update_seq_gaps": seq_gaps,
        "terminal_unreleased": str(unreleased),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.projection", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--chunk", type=int, default=100, help="events per transaction (the spec's batch)")
    parser.add_argument("--accounts", type=int, default=20, help="buyer and seller accounts, each")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="print the cProfile top 30 (cumulative)")
    parser.add_argument("--profile-sort", default="cumulative", help="pstats sort key (e.g. tottime)")
    parser.add_argument("--profile-dump", default="", help="also write the raw profile to this file")
    parser.add_argument("--fresh", action="store_true", help="drop and migrate the bench database first")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    parser.add_argument(
        "--db-statements",
        action="store_true",
        help="break the database backend's CPU down by statement, COPY and COMMIT (µs per event)",
    )
    args = parser.parse_args(argv)

    _db_ready(args.fresh)
    _setup()
    buyers, sellers = _seed(args.accounts)
    from django.utils import timezone

    from apps.settlement.services import settlement_date_of, trade_date_of

    settlement_date_of(trade_date_of(timezone.now()))  # builds the exchange calendar once, outside the timing
    events = _events(args.events, buyers, sellers, args.seed)
    mix = Counter(e.event_type.removeprefix("engine.") for e in events)
    counter = QueryCounter()
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    by_statement = BackendCpuByStatement() if args.db_statements else None
    elapsed, cpu, db_cpu = _apply(events, args.chunk, counter, by_statement)
    if profiler is not None:
        profiler.disable()
    before = _snapshot()
    replay = QueryCounter()
    _apply(events, args.chunk, replay)  # every chunk again: the inbox refuses all of it
    result: dict[str, Any] = {
        "events": len(events),
        "chunk": args.chunk,
        "mix": dict(sorted(mix.items())),
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(events) / elapsed, 1),
        "queries_per_event": round(counter.count / len(events), 2),
        # This process's CPU per event (the database's work excluded): steadier than events/s on a busy machine.
        "cpu_ms_per_event": round(cpu * 1000 / len(events), 2),
        # The same for the PostgreSQL backend serving this connection (statements, triggers, commit checks).
        "db_cpu_ms_per_event": round(db_cpu * 1000 / len(events), 2),
        "replay_changed_nothing": _snapshot() == before,
        **_check(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    if by_statement is not None:
        rows = by_statement.table(len(events))
        result["db_statements_us_per_event"] = [[k, round(us, 1), round(n, 2)] for k, us, n in rows]
        if not args.json:
            print("\nbackend CPU by statement (µs per event, calls per event):")
            for kind, us, n in rows[:20]:
                print(f"  {us:7.1f} {n:5.2f}  {kind}")
    if profiler is not None:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats(args.profile_sort).print_stats(30)
        if args.profile_dump:
            profiler.dump_stats(args.profile_dump)
        print(buf.getvalue())
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
