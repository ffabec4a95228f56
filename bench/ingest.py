"""Stage 2: batched ingestion through the whole pipeline, and the persistence writer comparison.

Group ``ingest`` (variant ``pipeline``): a load generator in its own process posts ``POST /v2/orders/batch``
(``BATCH`` orders a request) at a fixed offered rate to gunicorn (2 workers) on the benchmark database; the
outbox relay, the engine, the projection (which books each fill through settlement) and ``settlement.fills``
run as the platform's own processes, on their own Kafka topic prefix. Buy batches (buyer accounts) and sell
batches (seller accounts) alternate at one price, so every sell fills against a resting buy.
Metrics: ``orders_per_s`` accepted (201) over the offered window; ``e2e_orders_per_s`` orders whose fill is
persisted divided by the time to the last persisted fill; ``fill_p50_ms``/``fill_p99_ms`` from the sell's
submit (client wall clock) to its fill's ledger entry ``created_at``; invariants after the drain
(``eq_ledger_ok`` = ``ledger_verify`` passed, ``eq_lost`` accepted orders missing in the database,
``eq_dup_fills`` fills booked twice or beyond the order's quantity).

Group ``writer``: inserting fill-shaped rows one commit per row (``row_commit``, the baseline) against one
``COPY`` per batch in one transaction (``copy``), same table, same run.
Environment: ``BENCH_INGEST_RATE`` offered orders/s (default 2000), ``BENCH_INGEST_BATCH`` (default 500).
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from typing import Any

from bench import pipeline
from bench.harness import Case, Config

TITLE = "Batched ingestion: POST /v2/orders/batch -> relay -> engine -> projection + settlement"
BASELINE = "row_commit"
TABLE_METRICS = (
    "orders_per_s",
    "e2e_orders_per_s",
    "fill_p50_ms",
    "fill_p99_ms",
    "rows_per_s",
)
RATE = int(os.environ.get("BENCH_INGEST_RATE", "2000"))
BATCH = int(os.environ.get("BENCH_INGEST_BATCH", "500"))
PAIRS = 4
LOGS = pipeline.ROOT / ".run" / "bench-ingest"
_seeded: list[dict[str, str]] = []


def prepare(config: Config) -> None:
    pipeline.db_prepare(fresh=True)
    _seeded.extend(pipeline.seed("", PAIRS))


def cases(config: Config) -> list[Case]:
    duration = 10 if config.quick else 60
    rows = 1000 if config.quick else 3000
    return [
        Case("ingest", "pipeline", {"rate": RATE, "batch": BATCH, "duration_s": duration}),
        Case("writer", "row_commit", {"rows": rows}),
        Case("writer", "copy", {"rows": rows * 100}),
    ]


# ------------------------------------------------------------------------------------------- load generator
def _load(port: int, accounts: list[dict[str, str]], tag: str, rate: int, batch: int, duration: float) -> Any:
    """Open loop: a batch every ``batch / rate`` s, sent by a pool so a slow answer never delays the schedule."""
    import http.client

    import orjson

    period = batch / rate
    n_batches = max(2, int(duration / period))
    n_batches -= n_batches % 2
    todo: queue.Queue[tuple[int, bytes, dict[str, str]] | None] = queue.Queue()
    results: list[tuple[int, float, float, int, list[tuple[str, int, str]]]] = []
    lock = threading.Lock()

    def body(k: int) -> tuple[bytes, dict[str, str]]:
        pair = accounts[(k // 2) % len(accounts)]
        role = "buyer" if k % 2 == 0 else "seller"
        side = "buy" if role == "buyer" else "sell"
        orders = [
            {
                "symbol": pipeline.SYMBOL,
                "qty": "1",
                "side": side,
                "type": "limit",
                "time_in_force": "day",
                "limit_price": "100",
                "client_order_id": f"{tag}-{k}-{j}",
            }
            for j in range(batch)
        ]
        return orjson.dumps({"orders": orders}), pipeline.headers(pair[f"{role}_key"], pair[f"{role}_secret"])

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while (item := todo.get()) is not None:
            k, payload, hdrs = item
            sent = time.time()
            try:
                conn.request("POST", "/v2/orders/batch", body=payload, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                status = resp.status
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                status, data = 599, b"[]"
            done = time.time()
            items = orjson.loads(data) if status == 207 else []
            out = [
                (i["body"].get("client_order_id", ""), i["status"], i["body"].get("id", "")) for i in items
            ]
            with lock:
                results.append((k, sent, done, status, out))

    bodies = [body(k) for k in range(n_batches)]
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(6)]
    for t in threads:
        t.start()
    start = time.monotonic()
    for k, (payload, hdrs) in enumerate(bodies):
        delay = start + k * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        todo.put((k, payload, hdrs))
    offered_s = time.monotonic() - start
    for _ in threads:
        todo.put(None)
    for t in threads:
        t.join(300)
    return {
        "results": results,
        "offered_s": offered_s,
        "wall_start": time.time() - (time.monotonic() - start),
    }


def _pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    return sorted_vals[min(len(sorted_vals) - 1, int(p * len(sorted_vals)))]


def _run_pipeline(r: int, case: Case) -> dict[str, float]:
    prefix = pipeline.new_prefix()
    pipeline.manage(prefix, "kafka_topics")
    port = pipeline.free_port()
    procs = pipeline.Procs(prefix, LOGS)
    try:
        procs.gunicorn(port, workers=2)
        procs.pipeline()
        time.sleep(5)  # consumers join their groups
        tag = f"r{r}{uuid.uuid4().hex[:6]}"
        # This measurement child is the load generator: the server and the pipeline are separate processes.
        out = _load(port, _seeded, tag, case.params["rate"], case.params["batch"], case.params["duration_s"])
        results = out["results"]
        accepted: dict[str, tuple[float, str]] = {}  # order id -> (submit wall time, side)
        for k, sent, _done, _status, items in results:
            side = "buy" if k % 2 == 0 else "sell"
            for _coid, st, oid in items:
                if st == 201:
                    accepted[oid] = (sent, side)
        sells = [oid for oid, (_, side) in accepted.items() if side == "sell"]
        buys = len(accepted) - len(sells)
        expected_fills = min(len(sells), buys)
        # Drain: wait until the fills stop growing (or all expected fills are booked).
        last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 180
        while time.monotonic() < deadline:
            n = pipeline.query(
                "SELECT count(*) FROM orders_fill f WHERE f.side = 'sell' AND f.order_id = ANY(%s::uuid[])",
                [sells],
            )[0][0]
            if n >= expected_fills:
                break
            if n != last:
                last, stable_since = n, time.monotonic()
            elif time.monotonic() - stable_since > 15:
                break
            time.sleep(1)
        rows = pipeline.query(
            "SELECT f.order_id::text, extract(epoch FROM je.created_at)::float8 FROM orders_fill f "
            "JOIN settlement_journalentry je ON je.source_type = 'fill' AND je.source_id = f.fill_id "
            "WHERE f.side = 'sell' AND f.order_id = ANY(%s::uuid[])",
            [sells],
        )
        lat = sorted((ts - accepted[oid][0]) * 1000 for oid, ts in rows)
        last_fill = max((ts for _, ts in rows), default=out["wall_start"])
        ids = list(accepted)
        present = pipeline.query("SELECT count(*) FROM orders_order WHERE id = ANY(%s::uuid[])", [ids])[0][0]
        dup = pipeline.query(
            "SELECT count(*) FROM (SELECT o.id FROM orders_order o JOIN orders_fill f ON f.order_id = o.id "
            "WHERE o.id = ANY(%s::uuid[]) GROUP BY o.id, o.qty HAVING sum(f.qty) > o.qty) x",
            [ids],
        )[0][0]
        dup += pipeline.query(
            "SELECT count(*) FROM (SELECT source_id FROM settlement_journalentry WHERE source_type = 'fill' "
            "GROUP BY source_id HAVING count(*) > 1) x"
        )[0][0]
        try:
            pipeline.manage(prefix, "ledger_verify")
            ledger_ok = 1.0
        except RuntimeError:
            ledger_ok = 0.0
    finally:
        procs.stop()
    errors = sum(1 for *_, st, _ in results if st != 207)
    filled_orders = 2 * len(rows)
    return {
        "orders_per_s": len(accepted) / out["offered_s"],
        "e2e_orders_per_s": filled_orders / max(1e-9, last_fill - out["wall_start"]),
        "fill_p50_ms": _pct(lat, 0.50),
        "fill_p99_ms": _pct(lat, 0.99),
        "offered_per_s": case.params["rate"],
        "request_errors": float(errors),
        "unfilled_sells": float(len(sells) - len(rows))
        if buys >= len(sells)
        else float(expected_fills - len(rows)),
        "eq_ledger_ok": ledger_ok,
        "eq_lost": float(len(ids) - present),
        "eq_dup_fills": float(dup),
    }


# ------------------------------------------------------------------------------------------- writer
WRITER_DDL = (
    "CREATE TABLE IF NOT EXISTS bench_writer (id bigserial PRIMARY KEY, fill_id text NOT NULL UNIQUE, "
    "order_id uuid NOT NULL, qty numeric(30,9) NOT NULL, price numeric(20,4) NOT NULL, "
    "filled_at timestamptz NOT NULL)"
)


def _run_writer(case: Case) -> dict[str, float]:
    import datetime as dt
    from decimal import Decimal

    import psycopg

    n = int(case.params["rows"])
    now = dt.datetime.now(dt.UTC)
    rows = [(uuid.uuid4().hex, uuid.uuid4(), Decimal("1"), Decimal("100.0000"), now) for _ in range(n)]
    with psycopg.connect(pipeline.DB_URL, autocommit=True) as conn:
        conn.execute(WRITER_DDL)
        conn.execute("TRUNCATE bench_writer")
        t0 = time.perf_counter()
        if case.variant == "row_commit":
            for row in rows:  # autocommit: every INSERT is its own transaction (one WAL flush each)
                conn.execute(
                    "INSERT INTO bench_writer (fill_id, order_id, qty, price, filled_at) VALUES (%s,%s,%s,%s,%s)",
                    row,
                )
        else:
            with conn.transaction(), conn.cursor() as cur:
                for start in range(0, n, 10_000):  # one COPY per 10,000-row batch, one commit
                    with cur.copy(
                        "COPY bench_writer (fill_id, order_id, qty, price, filled_at) FROM STDIN"
                    ) as cp:
                        for row in rows[start : start + 10_000]:
                            cp.write_row(row)
        elapsed = time.perf_counter() - t0
        count = conn.execute("SELECT count(*) FROM bench_writer").fetchone()
    assert count is not None
    assert count[0] == n
    return {"rows_per_s": n / elapsed, "rows": float(n)}


def run(r: int, case: Case, config: Config) -> dict[str, float]:
    if case.group == "writer":
        return _run_writer(case)
    return _run_pipeline(r, case)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    ing = result["groups"].get("ingest", {}).get("variants", {}).get("pipeline", {}).get("metrics", {})
    if ing:
        rate = ing["orders_per_s"]["median"]
        e2e = ing["e2e_orders_per_s"]["median"]
        p99 = ing["fill_p99_ms"]["median"]
        out.append(
            {
                "target": ">= 10,000 orders/s sustained (accepted and through to persisted fills)",
                "met": min(rate, e2e) >= 10_000,
                "detail": f"accepted {rate:,.0f}/s, end to end {e2e:,.0f}/s at {RATE:,}/s offered "
                f"({min(rate, e2e) / 10_000:.1%} of target)",
            }
        )
        out.append(
            {
                "target": "order-to-fill-persisted p99 < 100 ms",
                "met": p99 < 100,
                "detail": f"p50 {ing['fill_p50_ms']['median']:,.0f} ms, p99 {p99:,.0f} ms",
            }
        )
        ok = (
            ing["eq_ledger_ok"]["min"] == 1 and ing["eq_lost"]["max"] == 0 and ing["eq_dup_fills"]["max"] == 0
        )
        out.append(
            {
                "target": "nothing lost or doubled, ledger verified after the run",
                "met": ok,
                "detail": f"ledger_ok={ing['eq_ledger_ok']['values']}, lost={ing['eq_lost']['values']}, "
                f"dup={ing['eq_dup_fills']['values']}",
            }
        )
    w = result["groups"].get("writer", {}).get("variants", {}).get("copy", {}).get("ratios", {})
    if "rows_per_s" in w:
        ratio = w["rows_per_s"]["median"]
        out.append(
            {
                "target": "persistence writer >= 50x one-commit-per-row",
                "met": ratio >= 50,
                "detail": f"COPY per batch / row commit = {ratio:.1f}x (median of paired rounds)",
            }
        )
    return out
