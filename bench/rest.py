"""Stage 3: single-order REST — ``POST /v2/orders`` against a bare DRF create, same server, same run.

Group ``throughput``: gunicorn with two sync workers (``bench/wsgi_bench.py``: the platform plus the bench-only
``POST /bench/bare``, one model insert behind the same authentication); a closed-loop load generator in its own
process with ``CLIENTS`` connections posts for ``duration_s``. ``bare_drf`` (baseline) and ``orders`` (auth,
validation, risk, hold, outbox, idempotency key) alternate per round. Metric ``req_per_s`` (2xx only).
Group ``latency``: open loop at 200 orders/s to ``POST /v2/orders`` (each with an ``Idempotency-Key``);
``ack_p50_ms``/``ack_p99_ms`` measured from the scheduled send time (so queueing counts).
Group ``reads``: the market-data read path, closed loop ``GET /v2/stocks/{symbol}/quotes/latest`` (API-key auth,
one Redis ``HGET``, no PostgreSQL) on the same two gunicorn workers; the quote is seeded through
``apps.marketdata.services.book_level_apply`` as the market-data consumer writes it.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from bench import pipeline
from bench.harness import Case, Config

TITLE = "Single-order REST: POST /v2/orders vs a bare DRF create (2 gunicorn workers)"
BASELINE = "bare_drf"
TABLE_METRICS = ("req_per_s", "ack_p50_ms", "ack_p99_ms")
CLIENTS = 8
LOGS = pipeline.ROOT / ".run" / "bench-rest"
_seeded: list[dict[str, str]] = []


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
    d = 5 if config.quick else 15
    return [
        Case("throughput", "bare_drf", {"path": "/bench/bare", "duration_s": d}),
        Case("throughput", "orders", {"path": "/v2/orders", "duration_s": d}),
        Case("latency", "orders_200", {"path": "/v2/orders", "rate": 200, "duration_s": d * 2}),
        Case(
            "reads", "latest_quote", {"path": f"/v2/stocks/{pipeline.SYMBOL}/quotes/latest", "duration_s": d}
        ),
    ]


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
    return {"req_per_s": sum(ok) / elapsed, "errors": float(sum(bad))}


def _open(
    port: int, accounts: list[dict[str, str]], path: str, rate: int, duration: float
) -> dict[str, float]:
    import http.client
    import queue

    import orjson

    todo: queue.Queue[tuple[float, int] | None] = queue.Queue()
    lat: list[float] = []
    bad = [0]
    lock = threading.Lock()

    def worker(w: int) -> None:
        acct = accounts[w % len(accounts)]
        hdrs = pipeline.headers(acct["buyer_key"], acct["buyer_secret"])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while (item := todo.get()) is not None:
            due, j = item
            h = {**hdrs, "Idempotency-Key": uuid.uuid4().hex}
            conn.request("POST", path, body=orjson.dumps(_body(path, j)), headers=h)
            resp = conn.getresponse()
            resp.read()
            with lock:
                if 200 <= resp.status < 300:
                    lat.append((time.monotonic() - due) * 1000)
                else:
                    bad[0] += 1

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(16)]
    for t in threads:
        t.start()
    start = time.monotonic()
    n = int(rate * duration)
    for j in range(n):
        due = start + j / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        todo.put((due, j))
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join(120)
    lat.sort()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {
        "ack_p50_ms": pct(0.5),
        "ack_p99_ms": pct(0.99),
        "acked": float(len(lat)),
        "errors": float(bad[0]),
    }


def run(r: int, case: Case, config: Config) -> dict[str, float]:
    port = pipeline.free_port()
    procs = pipeline.Procs(pipeline.new_prefix(), LOGS)
    try:
        procs.start(
            "gunicorn",
            [
                str(pipeline.ROOT / ".venv" / "bin" / "gunicorn"),
                "bench.wsgi_bench",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--timeout",
                "120",
            ],
        )
        _wait(port)
        p = case.params
        # This measurement child is the load generator; gunicorn runs as separate processes.
        if case.group == "latency":
            return _open(port, _seeded, p["path"], p["rate"], p["duration_s"])
        return _closed(port, _seeded, p["path"], p["duration_s"])
    finally:
        procs.stop()


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
    lat = result["groups"].get("latency", {}).get("variants", {}).get("orders_200", {}).get("metrics", {})
    if lat:
        p99 = lat["ack_p99_ms"]["median"]
        out.append(
            {
                "target": "open-loop submit->ack p99 < 100 ms at 200 orders/s",
                "met": p99 < 100,
                "detail": f"p50 {lat['ack_p50_ms']['median']:.1f} ms, p99 {p99:.1f} ms",
            }
        )
    return out
