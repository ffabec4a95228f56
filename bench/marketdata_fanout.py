"""Market data fan-out benchmark: channels-redis core layer vs pub/sub layer, in the same run.

N WebSocket clients (``websockets``) against the ws process as deployed (``deploy/ws_server.py``, daphne with
the slow-client bound) in a subprocess, each authenticated with an API key and
subscribed to the trades of M symbols; the bench publishes R ticks/s (round-robin over the symbols) through the
layer exactly as ``apps.marketdata.stream`` does (``md.t.{symbol}`` groups). Reports delivered messages/s and
tick-to-client latency p50/p99/p99.9 (publish → client receive, same clock), then REST latest-quote reads/s.
Writes JSON to ``bench/results/marketdata_fanout.json``.

Run (a migrated database and a Redis DB of your own)::

    DATABASE_URL=postgres://.../brokerage_marketdata REDIS_URL=redis://127.0.0.1:56379/15 \\
      .venv/bin/python bench/marketdata_fanout.py --clients 50 --symbols 10 --rate 200 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")

LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_daphne(layer: str, log: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = {**os.environ, "CHANNEL_LAYER_BACKEND": LAYERS[layer]}
    proc = subprocess.Popen(
        [
            sys.executable,
            "deploy/ws_server.py",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            # Thousands of clients connect at once on a loaded machine: not daphne's 5 s handshake timeout.
            "--websocket_connect_timeout",
            "120",
            # The bench stops it with SIGTERM: no drain period (clients are gone by then).
            "--drain-seconds",
            "0",
            "--close-grace-seconds",
            "5",
            "brokerage.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(log, "ab") if log else subprocess.DEVNULL,  # noqa: SIM115 (the child owns it)
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("daphne did not start") from None
            time.sleep(0.2)


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index] / 1e6  # ns → ms


async def _client(
    url: str,
    key: str,
    secret: str,
    symbols: list[str],
    ready: asyncio.Event,
    stop: asyncio.Event,
    out: list[int],
    closed: list[int],
    gate: asyncio.Semaphore,
) -> int:
    import websockets

    received = 0
    try:
        async with gate:  # a bounded number of handshakes + auths at a time, as clients would ramp up
            ws = await websockets.connect(url, max_size=None, open_timeout=120)
            await ws.recv()
            await ws.send(json.dumps({"action": "auth", "key": key, "secret": secret}))
            await ws.recv()
            await ws.send(json.dumps({"action": "subscribe", "trades": symbols}))
            await ws.recv()
    except (OSError, TimeoutError, websockets.exceptions.WebSocketException):
        closed.append(-1)  # never connected
        ready.set()
        return 0
    ready.set()
    async with ws:
        while not stop.is_set():
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except TimeoutError:
                continue
            except websockets.exceptions.ConnectionClosed as exc:  # e.g. 4407: the server found us too slow
                closed.append(exc.rcvd.code if exc.rcvd is not None else 0)
                break
            now = time.time_ns()
            for msg in json.loads(raw):
                if msg.get("T") == "t":
                    received += 1
                    out.append(now - int(msg["pub_ns"]))
    return received


async def _fanout(
    layer_name: str, port: int, key: str, secret: str, args: argparse.Namespace
) -> dict[str, Any]:
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer
    from django.conf import settings

    from apps.marketdata.stream import group_name

    hosts = [settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]]
    layer: Any = (
        RedisChannelLayer(hosts=hosts) if layer_name == "core" else RedisPubSubChannelLayer(hosts=hosts)
    )
    symbols = [f"BENCH{i}" for i in range(args.symbols)]
    stop = asyncio.Event()
    latencies: list[int] = []
    closed: list[int] = []
    gate = asyncio.Semaphore(50)
    readies = [asyncio.Event() for _ in range(args.clients)]
    url = f"ws://127.0.0.1:{port}/v2/test"
    tasks = [
        asyncio.create_task(_client(url, key, secret, symbols, readies[i], stop, latencies, closed, gate))
        for i in range(args.clients)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=max(60, args.clients / 2))
    await asyncio.sleep(0.5)
    interval = 1.0 / args.rate
    sent = 0
    start = time.monotonic()
    next_at = start
    while time.monotonic() - start < args.duration:
        symbol = symbols[sent % len(symbols)]
        msg = {"T": "t", "S": symbol, "p": "100", "s": "1", "seq": sent + 1, "pub_ns": time.time_ns()}
        await layer.group_send(
            group_name("t", symbol),
            {"type": "md.update", "ch": "t", "S": symbol, "via": "symbol", "msg": msg},
        )
        sent += 1
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    publish_elapsed = time.monotonic() - start
    await asyncio.sleep(args.settle)  # let in-flight messages arrive before counting
    stop.set()
    delivered = sum(await asyncio.gather(*tasks))
    if hasattr(layer, "flush"):
        await layer.flush()
    lat = sorted(latencies)
    return {
        "layer": LAYERS[layer_name],
        "ticks_published": sent,
        "publish_seconds": round(publish_elapsed, 3),
        "achieved_tick_rate": round(sent / publish_elapsed, 1),
        "expected_deliveries": sent * args.clients,
        "delivered": delivered,
        "delivered_ratio": round(delivered / max(1, sent * args.clients), 4),
        "delivered_msgs_per_s": round(delivered / publish_elapsed, 1),
        # close code → clients; -1: never connected (handshake/auth failed or timed out)
        "clients_closed_by_server": {str(code): closed.count(code) for code in sorted(set(closed))},
        "latency_ms": {
            "p50": round(_percentile(lat, 0.50), 3),
            "p99": round(_percentile(lat, 0.99), 3),
            "p99.9": round(_percentile(lat, 0.999), 3),
            "mean": round(statistics.fmean(lat) / 1e6, 3) if lat else None,
        },
    }


def _rest_reads(port: int, key: str, secret: str, seconds: float, threads: int) -> dict[str, Any]:
    counts = [0] * threads
    errors = [0] * threads
    stop = threading.Event()
    headers = {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while not stop.is_set():
            try:
                conn.request("GET", "/v2/stocks/BENCH0/quotes/latest", headers=headers)
                response = conn.getresponse()
                response.read()
            except OSError:  # a timeout on an overloaded machine: counted, then a fresh connection
                errors[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                continue
            if response.status == 200:
                counts[i] += 1
            else:
                errors[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for t in pool:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    elapsed = time.monotonic() - start
    return {
        "threads": threads,
        "reads": sum(counts),
        "errors": sum(errors),
        "reads_per_s": round(sum(counts) / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="ticks per second, all symbols together")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to keep reading after publishing")
    parser.add_argument("--server-log", default=None, help="append the ws process's output to this file")
    parser.add_argument("--rest-seconds", type=float, default=5.0)
    parser.add_argument("--rest-threads", type=int, default=4)
    parser.add_argument("--layers", default="core,pubsub")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "marketdata_fanout.json"))
    args = parser.parse_args()

    import django

    django.setup()
    from datetime import UTC, datetime

    import orjson
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from apps.accounts.services import api_key_create
    from apps.marketdata import cache, shapes

    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user(
        username=f"bench{uuid.uuid4().hex[:6]}",
        email=f"bench{uuid.uuid4().hex[:6]}@example.com",
        password="x" * 16,
    )
    key, secret = api_key_create(owner=owner, name="bench", scopes=["read"])
    quote = shapes.quote_data(
        bid=(1_000_000, 10**11), ask=(1_000_100, 10**11), timestamp=datetime.now(UTC), book_seq=1
    )
    cache.client().delete(cache.quote_key("BENCH0"))
    cache.cas_set(cache.quote_key("BENCH0"), seq=1, data=orjson.dumps(quote))

    results: dict[str, Any] = {
        "params": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "fanout": {},
    }
    for layer_name in args.layers.split(","):
        proc, port = _start_daphne(layer_name, args.server_log)
        try:
            results["fanout"][layer_name] = asyncio.run(_fanout(layer_name, port, key.key_id, secret, args))
            print(layer_name, json.dumps(results["fanout"][layer_name]), flush=True)
            if layer_name == args.layers.split(",")[-1]:
                results["rest_latest_quote"] = _rest_reads(
                    port, key.key_id, secret, args.rest_seconds, args.rest_threads
                )
        finally:
            proc.terminate()
            proc.wait(60)
    fan = results["fanout"]
    if "core" in fan and "pubsub" in fan and fan["core"]["delivered_msgs_per_s"]:
        results["pubsub_over_core_delivered"] = round(
            fan["pubsub"]["delivered_msgs_per_s"] / fan["core"]["delivered_msgs_per_s"], 2
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results.get("rest_latest_quote")), "→", args.out)


if __name__ == "__main__":
    main()
