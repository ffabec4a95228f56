"""Stage 3: single-order REST — ``POST /v2/orders`` against a bare DRF create, same server, same run.

One server for the whole stage: gunicorn with two sync workers (``bench/wsgi_bench.py``: the platform plus the
bench-only ``POST /bench/bare``, one model insert behind the same authentication), started in ``prepare`` and
stopped when the stage ends, so every case of every round meets the same warm server. Load generators run in
the measurement child (a process of its own, never the server's interpreter).

Group ``throughput``: closed loop, ``CLIENTS`` connections post for ``duration_s``; ``bare_drf`` (baseline) and
``orders`` (auth, validation, risk, hold, outbox, idempotency key) alternate per round. Metrics ``req_per_s``
(2xx only), ``server_cpu_ms`` = CPU of the gunicorn workers per request, ``pg_cpu_ms`` = CPU of their
PostgreSQL backends per request (both from ``/proc``, ``bench/procstat.py``): what one request costs, which is
what bounds throughput on a machine whose two cores are shared by load generator, server and database.
Groups ``latency@R``: open loop at R orders/s to ``POST /v2/orders`` (each with an ``Idempotency-Key``) from
16 connections; ``ack_p50_ms``/``ack_p99_ms`` from the scheduled send time (so queueing counts). Sending stops
``duration_s`` after the start and the run ends ``GRACE_S`` later: requests not answered by then count in
``unanswered``, and enter the percentiles at that bound, so a percentile that reaches them is a lower bound.
Groups ``fill@R``: submit -> ``fill`` on ``trade_updates``, at the target's rate (``FILL_RATE``) and at one below what
the whole path carries on this machine (``FILL_LOW``: with the order pipeline and the ws process sharing the two
cores, the path saturates well below the web tier's own throughput, so this is where the latency floor shows). Each
round starts the order pipeline of its own (outbox relay, engine, projection, on a fresh topic prefix; the other
cases' resting orders are marked relayed first, bench-only, so this engine sees only this round's orders) and the ws
process (``deploy/ws_server.py``), which the round's two rates share (they run back to back); a listener process holds
one ``/stream`` connection per seller, authenticated and listening to ``trade_updates``. After a warm-up pair has
filled, R orders/s are sent open loop: a resting buy then a crossing sell at the same price, alternating;
``fill_p50_ms``/``fill_p99_ms`` run from each sell's scheduled send time to its ``fill`` update arriving at the client
(one clock: CLOCK_MONOTONIC is system-wide). Sells without a fill by the bound count in ``unanswered`` and enter the
percentiles at the bound.
Group ``reads``: the market-data read path, closed loop ``GET /v2/stocks/{symbol}/quotes/latest`` (API-key auth,
one Redis ``HGET``, no PostgreSQL); the quote is seeded through ``apps.marketdata.services.book_level_apply`` as
the market-data consumer writes it.
"""

from __future__ import annotations

import atexit
import queue
import shutil
import threading
import time
import uuid
from typing import Any

from bench import pipeline, procstat
from bench.harness import Case, Config, Curve

TITLE = "Single-order REST: POST /v2/orders vs a bare DRF create (2 gunicorn workers)"
BASELINE = "bare_drf"
TABLE_METRICS = (
    "req_per_s",
    "server_cpu_ms",
    "pg_cpu_ms",
    "ack_p50_ms",
    "ack_p99_ms",
    "fill_p50_ms",
    "fill_p99_ms",
    "unanswered",
)
# Latency against the offered rate, one plot per path: submit -> ack, submit -> fill on trade_updates.
CURVES = tuple(
    Curve(title=title, metric=metric, x_param="rate", x_label="offered orders/s", y_label=label, log_x=False)
    for title, metric, label in (
        ("POST /v2/orders: open-loop ack latency vs offered rate", "ack_p99_ms", "ack p99 ms"),
        ("Submit -> fill on trade_updates vs offered rate", "fill_p99_ms", "fill p99 ms"),
    )
)
CLIENTS = 8
OPEN_CONNECTIONS = 16
GRACE_S = 3.0
RATES = (50, 200)
FILL_RATE = 200
FILL_LOW = 20  # below the whole path's capacity here (it saturates between 30 and 40 orders/s)
FILL_RATES = (FILL_LOW, FILL_RATE)
FILL_GRACE_S = 8.0
FILL_ROUNDS = 2
LOGS = pipeline.ROOT / ".run" / "bench-rest"
FILL_STATE = LOGS / "fill-pipeline.json"  # the running submit -> fill pipeline's process groups and ws port
_seeded: list[dict[str, str]] = []
_server: dict[str, Any] = {}


def prepare(config: Config) -> None:
    import os

    import django
    import psycopg

    # This child is configured like the platform processes (bench database, Redis DB), so that it can import
    # the bench URLconf and seed the quote through the market-data service.
    os.environ.update(pipeline.env(""))
    django.setup()
    from bench.bare_urls import BARE_DDL

    pipeline.db_prepare(fresh=False)  # the ingest stage's database is reused (fresh accounts below)
    with psycopg.connect(pipeline.DB_URL, autocommit=True) as conn:
        conn.execute(BARE_DDL)
    _seeded.extend(pipeline.seed("", CLIENTS))
    _quote_seed()
    _server_start()


def _server_start() -> None:
    """gunicorn for the whole stage; stopped at exit of the harness process (forked children never run atexit)."""
    port = pipeline.free_port()
    procs = pipeline.Procs(pipeline.new_prefix(), LOGS)
    atexit.register(procs.stop)
    # Long-lived database connections, so the backends whose CPU is read stay the same for a measurement.
    procs.gunicorn(port, app="bench.wsgi_bench", DATABASE_CONN_MAX_AGE="600")
    _server.update(port=port, pgid=procs.groups()["gunicorn"])
    # Warm both workers on every path (URLconf, serializers, database connections) before anything is measured.
    for path in ("/bench/bare", "/v2/orders", f"/v2/stocks/{pipeline.SYMBOL}/quotes/latest"):
        _closed(port, _seeded, path, 1.5)
    # One topic prefix for every submit->fill measurement of the stage, and fresh symbols: the engine's event
    # ids are uuid5(symbol, book_seq), so an engine starting empty on a symbol this database has seen would repeat
    # ids the projection's inbox skips. Each round restarts the pipeline on the prefix (the engine resumes from
    # its snapshot, book_seq going on), as a deploy restarts it.
    _server["fill_prefix"] = pipeline.new_prefix()
    pipeline.manage(_server["fill_prefix"], "kafka_topics")
    # atexit runs last-registered first: the fill pipeline stops, then its topics go.
    atexit.register(pipeline.topics_drop, _server["fill_prefix"])
    atexit.register(_fill_pipeline_stop)
    # One symbol per submit->fill round: a round that ran over capacity leaves resting orders on its book, and
    # a warm-up buy would then match one of those sells instead of its own pair's (its fill never came).
    _server["fill_symbols"] = {
        (rate, i): _fill_symbol_seed(_seeded) for rate in FILL_RATES for i in range(FILL_ROUNDS)
    }


def _fill_symbol_seed(accounts: list[dict[str, str]]) -> str:
    """A symbol of this stage run alone (with shares for every seller): the engine's event ids are uuid5 of
    symbol and book sequence, so a symbol an earlier engine traded on this database would repeat ids."""
    import random
    import string
    from decimal import Decimal

    from django.db import transaction

    from apps.accounts.models import BrokerageAccount
    from apps.orders.models import Asset
    from apps.settlement.services import shares_deposit_post

    symbol = "F" + "".join(random.choices(string.ascii_uppercase, k=4))  # a name, not a secret
    Asset.objects.create(
        symbol=symbol,
        name="Bench fill corp",
        exchange="NASDAQ",
        price_increment=Decimal("0.01"),
        min_trade_increment=Decimal("1"),
        min_order_size=Decimal("1"),
        fractionable=False,
        reference_price=Decimal("100"),
    )
    for a in accounts:
        with transaction.atomic():
            shares_deposit_post(
                account=BrokerageAccount.objects.get(pk=a["seller_account"]),
                symbol=symbol,
                qty=Decimal("1000000"),
                cost_basis=Decimal("100000000"),
                transfer_id=f"bench-fill-{symbol}-{a['seller_account']}",
            )
    return symbol


def _quote_seed() -> None:
    """One bid and one ask for ``pipeline.SYMBOL`` in the Redis cache, so the latest quote exists."""
    from django.utils import timezone

    from apps.marketdata.services import book_level_apply

    now = timezone.now()
    for i, (side, price_e4) in enumerate((("buy", 899_000), ("sell", 901_000)), start=1):
        book_level_apply(
            symbol=pipeline.SYMBOL, side=side, price_e4=price_e4, qty_e9=100 * 10**9, order_count=1,
            book_seq=10**12 + i, timestamp=now,
        )  # fmt: skip


def cases(config: Config) -> list[Case]:
    d = 3 if config.quick else 5
    out = [
        Case("throughput", "bare_drf", {"path": "/bench/bare", "duration_s": d}),
        Case("throughput", "orders", {"path": "/v2/orders", "duration_s": d}),
    ]
    out += [
        Case(f"latency@{rate}", "orders", {"path": "/v2/orders", "rate": rate, "duration_s": d})
        for rate in RATES
    ]
    # Submit -> fill starts a pipeline and a ws server per round: 2 rounds.
    for rate in FILL_RATES:
        # The low rate runs twice as long, so that its p99 stands on 100 sells rather than 50.
        fill = {
            "rate": rate,
            "duration_s": d * (2 if rate < FILL_RATE else 1),
            "rounds": min(FILL_ROUNDS, config.rounds),
        }
        out.append(Case(f"fill@{rate}", "orders", fill))
    out.append(
        Case(
            "reads", "latest_quote", {"path": f"/v2/stocks/{pipeline.SYMBOL}/quotes/latest", "duration_s": d}
        )
    )
    return out


def _body(path: str, j: int) -> dict[str, Any]:
    if path == "/bench/bare":
        return {"symbol": pipeline.SYMBOL, "side": "buy", "qty": "1", "limit_price": "90"}
    return {
        "symbol": pipeline.SYMBOL,
        "qty": "1",
        "side": "buy",
        "type": "limit",
        "time_in_force": "day",
        "limit_price": "90",  # rests below the reference: no fill needed, the ack is what is measured
        "client_order_id": f"rest-{uuid.uuid4().hex}-{j}",
    }


def _closed(port: int, accounts: list[dict[str, str]], path: str, duration: float) -> dict[str, float]:
    import http.client

    import orjson

    ok = [0] * len(accounts)
    bad = [0] * len(accounts)
    stop = time.monotonic() + duration

    def client(i: int) -> None:
        acct = accounts[i]
        hdrs = pipeline.headers(acct["buyer_key"], acct["buyer_secret"])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        j = 0
        while time.monotonic() < stop:
            j += 1
            if path.startswith("/v2/stocks/"):
                conn.request("GET", path, headers=hdrs)
            else:
                h = {**hdrs, "Idempotency-Key": uuid.uuid4().hex} if path == "/v2/orders" else hdrs
                conn.request("POST", path, body=orjson.dumps(_body(path, j)), headers=h)
            resp = conn.getresponse()
            resp.read()
            if 200 <= resp.status < 300:
                ok[i] += 1
            else:
                bad[i] += 1

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(accounts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    return {"req_per_s": sum(ok) / elapsed, "errors": float(sum(bad)), "elapsed_s": elapsed}


def _open(
    port: int, accounts: list[dict[str, str]], path: str, rate: int, duration: float
) -> dict[str, float]:
    import http.client

    import orjson

    todo: queue.Queue[tuple[float, int] | None] = queue.Queue()
    lat: list[float] = []
    bad = [0]
    lock = threading.Lock()
    start = time.monotonic()
    end = start + duration + GRACE_S

    def worker(w: int) -> None:
        acct = accounts[w % len(accounts)]
        hdrs = pipeline.headers(acct["buyer_key"], acct["buyer_secret"])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (item := todo.get()) is not None:
            due, j = item
            if time.monotonic() >= end:
                continue  # past the bound: never sent, counted as unanswered
            h = {**hdrs, "Idempotency-Key": uuid.uuid4().hex}
            conn.request("POST", path, body=orjson.dumps(_body(path, j)), headers=h)
            resp = conn.getresponse()
            resp.read()
            done = time.monotonic()
            with lock:
                if 200 <= resp.status < 300 and done < end:
                    lat.append((done - due) * 1000)
                elif done < end:
                    bad[0] += 1

    n = int(rate * duration)
    threads = _paced(todo, worker, n, rate, start)
    for t in threads:
        t.join(max(0.0, end - time.monotonic()) + 60)
    with lock:
        answered = sorted(lat)
        errors = bad[0]
    unanswered = n - len(answered) - errors
    p50, p99 = _bounded_percentiles(answered, unanswered, (duration + GRACE_S) * 1000)
    return {
        "ack_p50_ms": p50,
        "ack_p99_ms": p99,
        "unanswered": float(unanswered),
        "acked": float(len(answered)),
        "errors": float(errors),
    }


def _fill(
    port: int, accounts: list[dict[str, str]], rate: int, duration: float, symbol: str
) -> dict[str, float]:
    """Submit -> ``fill`` on trade_updates, open loop (see the module docstring)."""
    import multiprocessing as mp

    ws_port = _fill_pipeline(rate)
    ctx = mp.get_context("fork")
    fills: Any = ctx.Queue()
    stop = ctx.Event()
    listener = None
    done = False
    try:
        sellers = [(a["seller_key"], a["seller_secret"]) for a in accounts]
        listener = ctx.Process(target=_listen_main, args=(ws_port, sellers, fills, stop), daemon=True)
        listener.start()
        if fills.get(timeout=120) is not None:
            raise RuntimeError("the trade_updates listener did not start")
        _warm_pair(port, accounts[0], fills, symbol)
        out = _fill_open(port, accounts, rate, duration, fills, symbol)
        done = True
        return out
    finally:
        stop.set()
        if listener is not None:
            listener.join(10)
        if rate == FILL_RATES[-1] or not done:
            _fill_pipeline_stop()


def _fill_pipeline(rate: int) -> int:
    """The order pipeline and ws process of a round's submit -> fill measurements; returns the ws port.

    The first rate of a round starts them: the outbox relay, the engine and the projection on the stage's fill
    prefix (the other cases' resting orders marked relayed first, bench-only, so this engine sees only this
    round's orders), and the ws process. The round's other rates run right after it (the harness runs a round's
    groups in order; nothing else runs between them) and reuse them; the last rate stops them, and so does any
    other case (``run``) and the stage's exit. The state is a file: each measurement runs in a child of its own.
    """
    import json

    import psycopg

    if rate != FILL_RATES[0] and FILL_STATE.exists():
        state = json.loads(FILL_STATE.read_text())
        if len(_ours(state["pgids"])) == len(state["pgids"]):
            return int(state["ws_port"])
    _fill_pipeline_stop()
    with psycopg.connect(pipeline.DB_URL, autocommit=True) as conn:
        conn.execute("UPDATE core_storedevent SET published_at = now() WHERE published_at IS NULL")
    procs = pipeline.Procs(_server["fill_prefix"], LOGS / "fill")
    ws_port = pipeline.free_port()
    procs.start("relay", [pipeline.PY, "manage.py", "run_outbox_relay"])
    procs.start("engine", [pipeline.PY, "manage.py", "run_engine"])
    procs.start("projection", [pipeline.PY, "manage.py", "run_consumer", "orders.projection"])
    ws_argv = [pipeline.PY, "deploy/ws_server.py", "-b", "127.0.0.1", "-p", str(ws_port)]
    procs.start("ws", [*ws_argv, "--drain-seconds", "0", "brokerage.asgi:application"])
    FILL_STATE.write_text(json.dumps({"pgids": list(procs.groups().values()), "ws_port": ws_port}))
    try:
        _wait(ws_port)
    except BaseException:
        _fill_pipeline_stop()
        raise
    return ws_port


def _fill_pipeline_stop() -> None:
    """Stop the submit -> fill pipeline recorded in ``FILL_STATE``, if any (whichever child started it)."""
    import json

    if FILL_STATE.exists():
        pipeline.groups_stop(_ours(json.loads(FILL_STATE.read_text())["pgids"]))
        FILL_STATE.unlink()


def _ours(pgids: list[int]) -> list[int]:
    """Those of ``pgids`` still running one of the fill pipeline's processes."""
    return pipeline.groups_still_ours(pgids, "manage.py", "ws_server.py")


def _pair_bodies(tag: str, symbol: str) -> tuple[dict[str, Any], dict[str, Any]]:
    buy = {
        "symbol": symbol,
        "qty": "1",
        "side": "buy",
        "type": "limit",
        "time_in_force": "day",
        "limit_price": "100",
        "client_order_id": f"fb-{tag}",
    }
    return buy, {**buy, "side": "sell", "client_order_id": f"fs-{tag}"}


def _post(conn: Any, acct: dict[str, str], role: str, body: dict[str, Any]) -> int:
    import orjson

    hdrs = {
        **pipeline.headers(acct[f"{role}_key"], acct[f"{role}_secret"]),
        "Idempotency-Key": uuid.uuid4().hex,
    }
    conn.request("POST", "/v2/orders", body=orjson.dumps(body), headers=hdrs)
    resp = conn.getresponse()
    resp.read()
    return int(resp.status)


def _warm_pair(port: int, acct: dict[str, str], fills: Any, symbol: str) -> None:
    """One buy/sell pair through the whole path; returns once its sell's fill reached the client (<= 120 s)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    buy, sell = _pair_bodies(f"warm-{uuid.uuid4().hex}", symbol)
    statuses = (_post(conn, acct, "buyer", buy), _post(conn, acct, "seller", sell))
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline:
        try:
            item = fills.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen += 1
        if item is not None and item[0] == sell["client_order_id"]:
            return
    # Keep this measurement's process logs (the next measurement overwrites them) and say what is known.
    kept = LOGS / f"fill.failed-{time.strftime('%Y%m%dT%H%M%S')}"
    shutil.copytree(LOGS / "fill", kept, dirs_exist_ok=True)
    stored = pipeline.query(
        "SELECT client_order_id, status, filled_qty FROM orders_order WHERE client_order_id = ANY(%s)",
        [[buy["client_order_id"], sell["client_order_id"]]],
    )
    raise RuntimeError(
        f"the warm-up pair's fill never reached trade_updates within 120 s (POST statuses {statuses}, "
        f"{seen} other fills seen, orders stored {stored}; logs kept in {kept})"
    )


def _fill_open(
    port: int, accounts: list[dict[str, str]], rate: int, duration: float, fills: Any, symbol: str
) -> dict[str, float]:
    import http.client

    todo: queue.Queue[tuple[float, int] | None] = queue.Queue()
    due_of: dict[str, float] = {}
    bad = [0]
    lock = threading.Lock()
    start = time.monotonic()
    end = start + duration + FILL_GRACE_S
    tags = [f"{i}-{uuid.uuid4().hex[:8]}" for i in range(int(rate * duration) // 2)]

    def worker(w: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (item := todo.get()) is not None:
            due, j = item
            if time.monotonic() >= end:
                continue
            acct = accounts[(j // 2) % len(accounts)]
            buy, sell = _pair_bodies(tags[j // 2], symbol)
            if j % 2 == 0:
                status = _post(conn, acct, "buyer", buy)
            else:
                with lock:
                    due_of[sell["client_order_id"]] = due
                status = _post(conn, acct, "seller", sell)
            if not 200 <= status < 300:
                with lock:
                    bad[0] += 1

    n = len(tags) * 2
    _paced(todo, worker, n, rate, start)
    got: dict[str, float] = {}
    while time.monotonic() < end and len(got) < len(tags):
        try:
            item = fills.get(timeout=max(0.05, min(0.5, end - time.monotonic())))
        except queue.Empty:
            continue
        if item is not None and item[0].startswith("fs-") and not item[0].startswith("fs-warm"):
            got[item[0]] = item[1]
    with lock:
        lat = sorted((got[c] - d) * 1000 for c, d in due_of.items() if c in got)
        errors = bad[0]
    unanswered = len(tags) - len(lat)
    p50, p99 = _bounded_percentiles(lat, unanswered, (duration + FILL_GRACE_S) * 1000)
    return {
        "fill_p50_ms": p50,
        "fill_p99_ms": p99,
        "unanswered": float(unanswered),
        "filled": float(len(lat)),
        "errors": float(errors),
    }


def _listen_main(ws_port: int, sellers: list[tuple[str, str]], fills: Any, stop: Any) -> None:
    import asyncio

    asyncio.run(_listen(ws_port, sellers, fills, stop))


async def _listen(ws_port: int, sellers: list[tuple[str, str]], fills: Any, stop: Any) -> None:
    """One trade_updates connection per seller; every ``fill`` (client_order_id, monotonic time) to ``fills``."""
    import asyncio
    import contextlib

    import orjson
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed

    async def open_one(key: str, secret: str) -> ClientConnection:
        ws = await connect(
            f"ws://127.0.0.1:{ws_port}/stream", max_size=None, open_timeout=60, ping_interval=None
        )
        auth = {"action": "authenticate", "data": {"key_id": key, "secret_key": secret}}
        await ws.send(orjson.dumps(auth).decode())
        await ws.recv()
        await ws.send(orjson.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}).decode())
        while orjson.loads(await ws.recv()).get("stream") != "listening":
            pass
        return ws

    async def reader(ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                now = time.monotonic()
                msg = orjson.loads(raw)
                data = msg.get("data") or {}
                if msg.get("stream") == "trade_updates" and data.get("event") == "fill":
                    fills.put((data["order"]["client_order_id"], now))

    conns = await asyncio.gather(*(open_one(k, sec) for k, sec in sellers))
    fills.put(None)  # all listening
    tasks = [asyncio.create_task(reader(ws)) for ws in conns]
    while not stop.is_set():
        await asyncio.sleep(0.1)
    for t in tasks:
        t.cancel()
    for ws in conns:
        await ws.close()


def _paced(
    todo: queue.Queue[tuple[float, int] | None], worker: Any, n: int, rate: float, start: float
) -> list[threading.Thread]:
    """Open loop: ``OPEN_CONNECTIONS`` sender threads running ``worker(w)``; item j is due at ``start + j / rate``
    (queued on time whether or not the senders keep up, so queueing shows in the latency); then one stop each."""
    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(OPEN_CONNECTIONS)]
    for t in threads:
        t.start()
    for j in range(n):
        due = start + j / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        todo.put((due, j))
    for _ in threads:
        todo.put(None)
    return threads


def _bounded_percentiles(answered: list[float], unanswered: int, bound_ms: float) -> tuple[float, float]:
    """p50 and p99 of sorted ``answered`` latencies, the unanswered entering at the bound (their latency is at
    least that, so a percentile that lands on them is a lower bound)."""
    full = answered + [bound_ms] * unanswered
    if not full:
        return float("nan"), float("nan")
    return full[min(len(full) - 1, int(0.5 * len(full)))], full[min(len(full) - 1, int(0.99 * len(full)))]


def _pg_backends() -> list[int]:
    rows = pipeline.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [pipeline.DB_NAME]
    )
    return [int(r[0]) for r in rows]


def run(r: int, case: Case, config: Config) -> dict[str, float]:
    port, pgid = _server["port"], _server["pgid"]
    p = case.params
    if not case.group.startswith("fill"):
        _fill_pipeline_stop()  # none runs here (a round's last fill case stops it); never under another case
    # This measurement child is the load generator; gunicorn runs as separate processes.
    if case.group.startswith("latency"):
        return _open(port, _seeded, p["path"], p["rate"], p["duration_s"])
    if case.group.startswith("fill"):
        symbol = _server["fill_symbols"][(p["rate"], r % FILL_ROUNDS)]
        return _fill(port, _seeded, p["rate"], p["duration_s"], symbol)
    backends = _pg_backends()
    before = procstat.sample({"server": pgid}, {"pg": backends})
    out = _closed(port, _seeded, p["path"], p["duration_s"])
    after = procstat.sample({"server": pgid}, {"pg": backends})
    requests = out["req_per_s"] * out.pop("elapsed_s")
    if requests:
        pg = sum(after[k] - v for k, v in before.items() if k.startswith("pg:") and k in after)
        out["server_cpu_ms"] = (after["server"] - before["server"]) * 1000 / requests
        out["pg_cpu_ms"] = pg * 1000 / requests
    return out


def _wait(port: int) -> None:
    import socket

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                time.sleep(1)  # let both workers finish booting
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not listen within 60 s")


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    thr = result["groups"].get("throughput", {}).get("variants", {})
    ratio = thr.get("orders", {}).get("ratios", {}).get("req_per_s")
    if ratio:
        base = thr["bare_drf"]["metrics"]["req_per_s"]["median"]
        mine = thr["orders"]["metrics"]["req_per_s"]["median"]
        out.append(
            {
                "target": "POST /v2/orders >= 1.0x a bare DRF create",
                "met": ratio["median"] >= 1.0,
                "detail": f"{mine:,.0f} vs {base:,.0f} req/s = {ratio['median']:.2f}x "
                f"[{ratio['min']:.2f}-{ratio['max']:.2f}]",
            }
        )
    grp = result["groups"].get("latency@200", {})
    lat = grp.get("variants", {}).get("orders", {}).get("metrics", {})
    if lat:
        sent = grp["params"]["rate"] * grp["params"]["duration_s"]
        p99 = lat["ack_p99_ms"]["median"]
        lost = lat["unanswered"]["median"]
        out.append(
            {
                "target": "open-loop submit->ack p99 < 100 ms at 200 orders/s",
                "met": p99 < 100 and lost == 0,
                "detail": f"p50 {lat['ack_p50_ms']['median']:,.1f} ms, p99 {p99:,.1f} ms"
                + (f" (a lower bound: {lost:,.0f} of {sent:,} not answered in time)" if lost else ""),
            }
        )
    fgrp = result["groups"].get(f"fill@{FILL_RATE}", {})
    fill = fgrp.get("variants", {}).get("orders", {}).get("metrics", {})
    if fill:
        p99 = fill["fill_p99_ms"]["median"]
        lost = fill["unanswered"]["median"]
        sells = fgrp["params"]["rate"] * fgrp["params"]["duration_s"] // 2
        out.append(
            {
                "target": f"submit->fill event on trade_updates p99 < 100 ms at {FILL_RATE} orders/s",
                "met": p99 < 100 and lost == 0,
                "detail": f"p50 {fill['fill_p50_ms']['median']:,.1f} ms, p99 {p99:,.1f} ms"
                + (f" (a lower bound: {lost:,.0f} of {sells:,} sells without a fill in time)" if lost else "")
                + _fill_low_detail(result),
            }
        )
    return out


def _fill_low_detail(result: dict[str, Any]) -> str:
    """The same path below its capacity (``FILL_LOW``), for the at-a-glance table."""
    low = (
        result["groups"].get(f"fill@{FILL_LOW}", {}).get("variants", {}).get("orders", {}).get("metrics", {})
    )
    if not low:
        return ""
    lost = low["unanswered"]["median"]
    return (
        f"; at {FILL_LOW} orders/s offered: p50 {low['fill_p50_ms']['median']:,.1f} ms, "
        f"p99 {low['fill_p99_ms']['median']:,.1f} ms"
        + (f" ({lost:,.0f} sells without a fill in time)" if lost else "")
    )
