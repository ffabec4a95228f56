"""Stage 4: market data fan-out: N WebSocket clients, R ticks/s, channels-redis core layer vs pub/sub layer.

The ws process runs as deployed (``deploy/ws_server.py``: daphne, the slow-client bound) on the benchmark
database (``bench.pipeline``, ``BENCH_DB_NAME``; one API key seeded in ``prepare``). The layers use Redis DB 9
(core) and 10 (pub/sub) through ``CHANNELS_REDIS_URL``. Each measurement, coordinated from the harness's
forked child:

1. the load generator, in its own process: ``clients`` WebSocket connections (``websockets``, 50 handshakes
   at a time), each authenticated with the API key, then subscribed to the trades of ``SYMBOLS`` symbols;
2. once all acknowledged, the publisher, in its own process: ``rate`` ticks/s round-robin over the symbols,
   each sent through the layer exactly as ``apps.marketdata.stream`` does (``group_send`` to ``md.t.<SYM>``,
   ``md.update``) and stamped with its wall-clock send time;
3. the generator counts until every expected message arrived, nothing arrived for 1 s, or ``settle`` s.

Groups: ``clients=100`` at ``RATE_HIGH`` ticks/s (offered above what either layer delivers: a capacity
comparison): ``core`` (baseline, channels-redis's default layer) and ``pubsub`` (``RedisPubSubChannelLayer``,
what production uses: brokerage/settings/base.py ``CHANNEL_LAYERS``), each on a fresh server with fresh
connections (a saturated server's backlog must not reach the next measurement; idle core-layer consumers
time out on their Redis read, so a fresh server gets 2 keep-alive ticks/s while its clients connect).
The scaling groups ``fanout=<N>`` (pub/sub, ``RATE_LOW`` ticks/s, N clients; the largest is the 2,000-client
target) share one long-lived server whose connections ``prepare`` opens once (connecting 2,000 clients is
the slow part here); each measurement subscribes the first N, waits until the server is idle first.

Metrics: ``delivered_per_s`` (trade messages received by all clients / time from the first tick sent to the
last received: the delivered messages per second of the one ws process), ``offered_per_s`` (ticks sent x
clients / publish seconds), ``delivered_ratio``, ``p50_ms``/``p99_ms`` tick-to-client (publish stamp ->
client receive, same clock; ticks never received are not in them), ``ws_cpu_pct`` (the ws process's CPU over
the publish window, 100 = one core), ``subscribe_s``, ``connect_s``; check ``eq_clients`` (clients that
acknowledged the subscription). Messages may legitimately be fewer than offered: the consumer conflates per
(channel, symbol) while a client's frame is pending, so a saturated server sends the newest state.

Stand-alone (no harness; prints one fresh-server measurement; ``--py-spy FILE`` records the ws process):
``python -m bench.marketdata_fanout --variant pubsub --clients 100 --rate 40 --duration 3``. (The per-message
database-connection hop that ``bench/ws_nohop.py`` removed for a measurement is now gone from the platform's own
consumers: ``apps/core/ws.py``.)
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from bench import pipeline
from bench.harness import Case, Config, Curve, start_child

TITLE = "Market data fan-out: WebSocket clients via channels-redis (core vs pub/sub layer)"
BASELINE = "core"
TABLE_METRICS = (
    "delivered_per_s",
    "offered_per_s",
    "p50_ms",
    "p99_ms",
    "ws_cpu_pct",
    "subscribe_s",
    "retries",
)
CURVES = (
    Curve(
        "Delivered messages/s vs clients (pub/sub layer, one ws process)",
        "delivered_per_s",
        "clients",
        "WebSocket clients",
        "trade messages delivered / s (median, min-max)",
        where={"scaling": True},
    ),
    Curve(
        "Tick-to-client p99 vs clients (pub/sub layer, one ws process)",
        "p99_ms",
        "clients",
        "WebSocket clients",
        "p99 publish -> client, ms (median, min-max)",
        where={"scaling": True},
    ),
)
CORE = "channels_redis.core.RedisChannelLayer"
PUBSUB = "channels_redis.pubsub.RedisPubSubChannelLayer"
STOCK_APP = "brokerage.asgi:application"
# variant -> (channel layer backend, Redis URL of the layer, ASGI application served by deploy/ws_server.py)
VARIANTS = {
    "core": (CORE, "redis://127.0.0.1:56379/9", STOCK_APP),
    "pubsub": (PUBSUB, "redis://127.0.0.1:56379/10", STOCK_APP),
}
SYMBOLS = (
    4  # symbols per client subscription (each is a group_add: the cost of (un)subscribing 2,000 clients)
)
CLIENTS_HIGH = 100  # the core-vs-pubsub group (delivered/s at saturation; a fresh server + connections each)
RATE_HIGH = (
    200.0  # ticks/s there: 100 clients -> 20,000 msgs/s offered, above what either layer delivers here
)
RATE_LOW = 1.0  # ticks/s in the scaling groups (each client gets them all): 2,000 clients -> 2,000 msgs/s
LOGS = pipeline.ROOT / ".run" / "bench-marketdata"

_servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
_generators: dict[str, Generator] = {}
_creds: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------ servers
def _server_start(variant: str) -> tuple[subprocess.Popen[bytes], int]:
    backend, redis_url, app = VARIANTS[variant]
    port = pipeline.free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"ws-{variant}.log").open("wb")
    proc = subprocess.Popen(
        [
            pipeline.PY,
            "deploy/ws_server.py",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            # Thousands of clients connect at once on a loaded machine: not daphne's 5 s handshake timeout.
            "--websocket_connect_timeout",
            "120",
            "--drain-seconds",
            "0",
            "--close-grace-seconds",
            "5",
            app,
        ],
        cwd=pipeline.ROOT,
        env=pipeline.env("", CHANNEL_LAYER_BACKEND=backend, CHANNELS_REDIS_URL=redis_url),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ws server ({variant}) did not start; see {log.name}") from None
            time.sleep(0.2)


def _server_stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop exactly the process group ``_server_start`` started."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _servers_stop() -> None:
    """Stop exactly the processes ``prepare`` started (registered with atexit in the parent only)."""
    for gen in _generators.values():
        gen.stop()
    _generators.clear()
    for proc, _port in _servers.values():
        _server_stop(proc)
    _servers.clear()


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_idle(pid: int, limit_pct: float = 15.0, timeout: float = 20.0) -> None:
    """Wait until the server used < ``limit_pct`` of a core over 200 ms (previous clients' teardown done)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = _cpu_seconds(pid)
        time.sleep(0.2)
        if (_cpu_seconds(pid) - before) / 0.2 * 100 < limit_pct:
            return


def prepare(config: Config, long_lived: Sequence[str] | None = None) -> None:
    """Seed the API key; start the long-lived ws server(s) of the scaling groups and open their connections."""
    pipeline.db_prepare(fresh=False)
    row = pipeline.seed("", 1)[0]
    _creds.update(key=row["buyer_key"], secret=row["buyer_secret"])
    atexit.register(_servers_stop)
    most: dict[str, int] = {}
    for c in cases(config):
        if not c.params["fresh"]:
            most[c.variant] = max(most.get(c.variant, 0), int(c.params["clients"]))
    for variant in most if long_lived is None else long_lived:
        _servers[variant] = _server_start(variant)
        url = f"ws://127.0.0.1:{_servers[variant][1]}/v2/test"
        gen = _generators[variant] = Generator(url, _creds["key"], _creds["secret"], most[variant])
        opened = gen.opened
        print(
            f"  {variant}: {opened['connections']:,.0f} connections opened in {opened['connect_s']:.1f} s",
            file=sys.stderr,
        )


# ------------------------------------------------------------------------------------------------ processes
class Generator:
    """The load generator of one ws server: its own process, its WebSocket connections kept for the stage.

    Connecting is the slow part on this machine (handshake, auth, Django per connection), so ``prepare`` opens
    the connections once (authenticated, nothing subscribed) and each measurement subscribes the first
    ``clients`` of them, counts, and unsubscribes them again. The parent's pipe end is inherited by the
    harness's forked measurement children; one measurement at a time talks to it.
    """

    def __init__(
        self,
        url: str,
        key: str,
        secret: str,
        connections: int,
        symbols: list[str] | None = None,
        handshake_timeout: float = 150.0,
    ) -> None:
        """``symbols``: subscribe every connection right after its auth (keeps core-layer consumers busy)."""
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(
            target=_generator_main,
            args=(url, key, secret, connections, symbols, theirs, handshake_timeout),
            daemon=True,
        )
        self.proc.start()
        theirs.close()
        if not self.conn.poll(900):
            raise RuntimeError(f"load generator did not open {connections} connections within 900 s")
        self.opened: dict[str, float] = self.conn.recv()

    def call(self, *msg: Any, timeout: float = 300) -> Any:
        self.conn.send(msg)
        if not self.conn.poll(timeout):
            raise RuntimeError(f"load generator did not answer {msg[0]!r} within {timeout:.0f} s")
        return self.conn.recv()

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(10)


def _generator_main(
    url: str,
    key: str,
    secret: str,
    connections: int,
    symbols: list[str] | None,
    conn: Connection,
    handshake_timeout: float,
) -> None:
    asyncio.run(_generator(url, key, secret, connections, symbols, conn, handshake_timeout))


async def _generator(
    url: str,
    key: str,
    secret: str,
    connections: int,
    symbols: list[str] | None,
    conn: Connection,
    handshake_timeout: float,
) -> None:
    import orjson
    from websockets.asyncio.client import ClientConnection, connect
    from websockets.exceptions import ConnectionClosed, WebSocketException

    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(50)
    auth = orjson.dumps({"action": "auth", "key": key, "secret": secret}).decode()
    state: dict[str, Any] = {"since_ns": 1 << 62, "acks": 0, "want": 0, "last_ns": 0}
    latencies: list[int] = []
    closed: list[int] = []
    acked = asyncio.Event()

    async def handshake() -> ClientConnection | None:
        ws = await connect(url, max_size=None, open_timeout=120, ping_interval=None)
        await ws.recv()
        await ws.send(auth)
        reply = orjson.loads(await ws.recv())
        if symbols is not None and reply[0].get("msg") == "authenticated":
            await ws.send(orjson.dumps({"action": "subscribe", "trades": symbols}).decode())
            while orjson.loads(await ws.recv())[-1].get("T") != "subscription":
                pass
        return ws if reply[0].get("msg") == "authenticated" else None

    async def open_one() -> ClientConnection | None:
        async with gate:  # a bounded number of handshakes + auths at a time, as clients would ramp up
            try:  # bounded: a connection the server never answers counts as not connected, never hangs the stage
                return await asyncio.wait_for(handshake(), timeout=handshake_timeout)
            except (OSError, TimeoutError, WebSocketException):
                closed.append(-1)  # never connected
                return None

    async def reader(ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                now = time.time_ns()
                for msg in orjson.loads(raw):
                    kind = msg.get("T")
                    if kind == "t":
                        if msg["pub_ns"] >= state["since_ns"]:  # not a late tick of an earlier measurement
                            latencies.append(now - msg["pub_ns"])
                            state["last_ns"] = now
                    elif kind == "subscription":
                        state["acks"] += 1
                        if state["acks"] >= state["want"]:
                            acked.set()
        except ConnectionClosed as exc:  # e.g. 4407: the server found this client too slow
            closed.append(exc.rcvd.code if exc.rcvd is not None else 0)

    async def subscription(clients: list[ClientConnection], action: str, symbols: list[str]) -> int:
        """Send ``action`` to every client still open; the number that acknowledged it."""
        acked.clear()
        msg = orjson.dumps({"action": action, "trades": symbols}).decode()
        live = [ws for ws in clients if ws.close_code is None]
        state.update(acks=0, want=len(live))
        for ws in live:
            try:
                await ws.send(msg)
            except ConnectionClosed:
                state["want"] -= 1
        if state["acks"] < state["want"]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(acked.wait(), timeout=120)
        return int(state["acks"])

    t0 = time.monotonic()
    opened = [ws for ws in await asyncio.gather(*(open_one() for _ in range(connections))) if ws is not None]
    conn.send({"connections": float(len(opened)), "connect_s": time.monotonic() - t0})
    tasks = [asyncio.create_task(reader(ws)) for ws in opened]  # noqa: F841 (kept alive for the stage)
    while True:
        cmd = await loop.run_in_executor(None, conn.recv)
        if cmd[0] == "subscribe":  # ("subscribe", clients, symbols)
            clients, symbols = opened[: cmd[1]], cmd[2]
            t = time.monotonic()
            closed.clear()
            ok = await subscription(clients, "subscribe", symbols)
            latencies.clear()
            state["since_ns"] = state["last_ns"] = time.time_ns()
            conn.send({"clients": float(ok), "subscribe_s": time.monotonic() - t})
        elif (
            cmd[0] == "collect"
        ):  # ("collect", clients, symbols, expected, max_wait): stop counting, unsubscribe
            # Drain: until every expected message arrived, nothing arrived for 1 s, or max_wait s passed.
            deadline = time.monotonic() + cmd[4]
            asked_ns = time.time_ns()
            while len(latencies) < cmd[3] and time.monotonic() < deadline:
                if time.time_ns() - max(state["last_ns"], asked_ns) > 1_000_000_000:
                    break
                await asyncio.sleep(0.02)
            state["since_ns"] = 1 << 62
            lat = sorted(latencies)
            latencies.clear()

            def pct(q: float, lat: list[int] = lat) -> float:
                return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6 if lat else float("nan")

            conn.send(
                {
                    "received": float(len(lat)),
                    "p50_ms": pct(0.50),
                    "p99_ms": pct(0.99),
                    "p999_ms": pct(0.999),
                    "closed": float(len(closed)),
                    "last_ns": float(state["last_ns"]),
                }
            )
            await subscription(opened[: cmd[1]], "unsubscribe", cmd[2])
            conn.send("unsubscribed")
        else:
            return


def _publish(variant: str, symbols: list[str], rate: float, duration: float) -> dict[str, float]:
    """The publisher (its own process): ``rate`` ticks/s for ``duration`` s through the layer."""
    return asyncio.run(_publish_async(variant, symbols, rate, duration))


async def _publish_async(variant: str, symbols: list[str], rate: float, duration: float) -> dict[str, float]:
    from channels_redis.core import RedisChannelLayer
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from apps.marketdata.stream import group_name

    backend, redis_url, _app = VARIANTS[variant]
    hosts = [redis_url]
    layer: Any = RedisChannelLayer(hosts=hosts) if backend == CORE else RedisPubSubChannelLayer(hosts=hosts)
    interval = 1.0 / rate
    sent = 0
    start_ns = time.time_ns()
    start = time.monotonic()
    next_at = start
    while time.monotonic() - start < duration:
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
    elapsed = time.monotonic() - start
    if hasattr(layer, "flush"):
        await layer.flush()
    return {"sent": float(sent), "seconds": elapsed, "start_ns": float(start_ns)}


def measure(
    variant: str,
    clients: int,
    rate: float,
    duration: float,
    *,
    settle: float,
    fresh: bool,
    spy: str | None = None,
) -> dict[str, float]:
    """One measurement: ws server, generator and publisher in processes of their own; this one coordinates.

    ``fresh``: a ws server and connections of this measurement alone (a saturated server's layer queues are
    unbounded, so its backlog must not reach the next measurement; core-layer consumers need traffic while the
    others connect, hence a 2 ticks/s keep-alive until all are subscribed). Otherwise the stage's long-lived
    server and connections from ``prepare``. ``spy``: record the ws process with py-spy over the publish
    window (raw collapsed stacks to that file).
    """
    symbols = [f"FAN{i}" for i in range(SYMBOLS)]
    retries = 0
    if fresh:
        proc, gen = _fresh_start(variant, clients, symbols)
        # A fresh server that never answered its clients' handshakes (seen about once in 30 fresh starts here,
        # cause not found yet) is restarted once; the restart is counted in ``retries``, never hidden.
        if gen.opened["connections"] < clients:
            gen.stop()
            _server_stop(proc)
            retries = 1
            proc, gen = _fresh_start(variant, clients, symbols)
    else:
        proc, _port = _servers[variant]
        gen = _generators[variant]
    try:
        _wait_idle(proc.pid)
        sub = gen.call("subscribe", clients, symbols)
        recorder = None
        if spy is not None:
            py_spy = str(pipeline.ROOT / ".venv" / "bin" / "py-spy")
            argv = [py_spy, "record", "-p", str(proc.pid), "-d", str(int(duration)), "-f", "raw", "-o", spy]
            recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = _cpu_seconds(proc.pid)
        pub = start_child(_publish, variant, symbols, rate, duration).result(duration + 120)
        cpu = _cpu_seconds(proc.pid) - cpu0
        got = gen.call(
            "collect", clients, symbols, pub["sent"] * sub["clients"], settle, timeout=settle + 300
        )
        if not fresh and (not gen.conn.poll(300) or gen.conn.recv() != "unsubscribed"):
            raise RuntimeError("load generator did not unsubscribe")
        if recorder is not None:
            recorder.wait(60)
    finally:
        if fresh:
            gen.stop()
            _server_stop(proc)
    offered = pub["sent"] * sub["clients"]
    # Over the delivery span (first tick sent -> last tick received), not the publish span: a server that
    # falls behind keeps delivering after the publisher stopped.
    span = max(pub["seconds"], (got["last_ns"] - pub["start_ns"]) / 1e9)
    return {
        "delivered_per_s": got["received"] / span,
        "offered_per_s": offered / pub["seconds"],
        "delivered_ratio": got["received"] / offered if offered else 0.0,
        "p50_ms": got["p50_ms"],
        "p99_ms": got["p99_ms"],
        "p999_ms": got["p999_ms"],
        "ws_cpu_pct": cpu / pub["seconds"] * 100,
        "subscribe_s": sub["subscribe_s"],
        "connect_s": gen.opened["connect_s"],
        "ticks_per_s": pub["sent"] / pub["seconds"],
        "closed_by_server": got["closed"],
        "eq_clients": sub["clients"],
        "retries": float(retries),
    }


def _fresh_start(variant: str, clients: int, symbols: list[str]) -> tuple[subprocess.Popen[bytes], Generator]:
    """A ws server, a fresh layer and ``clients`` connections of one measurement alone."""
    import redis

    # A fresh layer too: the previous measurement's flood may have left channel queues and group members in the
    # layer's Redis DB, which a new server's consumers would first wade through (or stall on).
    redis.Redis.from_url(VARIANTS[variant][1]).flushdb()
    proc, port = _server_start(variant)
    keep = start_child(_publish, variant, symbols, 2.0, 600.0)
    try:
        url = f"ws://127.0.0.1:{port}/v2/test"
        # 100 clients connect in seconds: a 30 s bound per handshake turns a dead server into a retry, not a hang.
        gen = Generator(url, _creds["key"], _creds["secret"], clients, symbols, handshake_timeout=30.0)
    finally:
        keep.stop()
    return proc, gen


# ------------------------------------------------------------------------------------------------ stage
def cases(config: Config) -> list[Case]:
    d = 1.0 if config.quick else 1.5
    scaling = (200, 1000, 2000) if not config.quick else (100, 500)
    # Both layers get a fresh server and fresh connections per measurement (identical treatment; a saturated
    # server's backlog must not reach the next measurement; idle core-layer consumers time out on their Redis
    # read, so the fresh server gets keep-alive ticks while its clients connect).
    high = {"clients": CLIENTS_HIGH, "rate": RATE_HIGH, "seconds": d, "settle": 3.0, "fresh": True}
    out = [Case(f"clients={CLIENTS_HIGH}", "core", high), Case(f"clients={CLIENTS_HIGH}", "pubsub", high)]
    out += [
        Case(
            f"fanout={n}",
            "pubsub",
            {
                "clients": n,
                "rate": RATE_LOW,
                "seconds": d,
                "settle": 3.0,
                "fresh": False,
                "scaling": True,
                "rounds": min(3, config.rounds),  # the scaling curve: 3 rounds (the layer comparison: all)
            },
        )
        for n in scaling
    ]
    return out


def run(round: int, case: Case, config: Config) -> dict[str, float]:
    p = case.params
    return measure(
        case.variant,
        int(p["clients"]),
        float(p["rate"]),
        float(p["seconds"]),
        settle=float(p["settle"]),
        fresh=bool(p["fresh"]),
    )


def _metrics(result: dict[str, Any], group: str, variant: str) -> dict[str, Any]:
    m: dict[str, Any] = (
        result["groups"].get(group, {}).get("variants", {}).get(variant, {}).get("metrics", {})
    )
    return m


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    high = f"clients={CLIENTS_HIGH}"
    grp = result["groups"].get(high, {}).get("variants", {})
    ratio = grp.get("pubsub", {}).get("ratios", {}).get("delivered_per_s")
    if ratio:
        core = _metrics(result, high, "core")["delivered_per_s"]["median"]
        mine = _metrics(result, high, "pubsub")
        offered = mine["offered_per_s"]["median"]
        out.append(
            {
                "target": "delivered messages/s per ws process >= 5x the channels-redis core layer (same run)",
                "met": ratio["median"] >= 5,
                "detail": f"{CLIENTS_HIGH} clients, {RATE_HIGH:g} ticks/s ({offered:,.0f} msgs/s offered): pub/sub "
                f"{mine['delivered_per_s']['median']:,.0f}/s vs core {core:,.0f}/s = {ratio['median']:.2f}x "
                f"[{ratio['min']:.2f}-{ratio['max']:.2f}]"
                + ("" if ratio["median"] >= 5 else f", short by {5 / max(ratio['median'], 1e-9):.2f}x"),
            }
        )
    big = max(
        (g for g in result["groups"] if g.startswith("fanout=")),
        key=lambda g: int(g.split("=")[1]),
        default=None,
    )
    if big is not None and (m := _metrics(result, big, "pubsub")):
        n = int(big.split("=")[1])
        p99 = m["p99_ms"]["median"]
        out.append(
            {
                "target": "2,000 clients with tick-to-client p99 < 100 ms",
                "met": n >= 2000 and p99 < 100 and m["eq_clients"]["min"] >= 2000,
                "detail": f"{n:,} clients (connected {m['eq_clients']['min']:,.0f}), {RATE_LOW:g} ticks/s over "
                f"{SYMBOLS} symbols = {m['offered_per_s']['median']:,.0f} msgs/s offered, delivered "
                f"{m['delivered_per_s']['median']:,.0f}/s: p50 {m['p50_ms']['median']:,.1f} ms, p99 {p99:,.1f} ms"
                + ("" if p99 < 100 else f" ({p99 / 100:.1f}x over)")
                + (f"; measured at {n:,} clients, not 2,000" if n < 2000 else ""),
            }
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="pubsub")
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--rate", type=float, default=RATE_HIGH, help="ticks per second, all symbols together")
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument(
        "--py-spy", default=None, help="record the ws process over the publish window to this file"
    )
    args = ap.parse_args()
    prepare(Config(rounds=1), long_lived=[])
    got = measure(
        args.variant, args.clients, args.rate, args.duration, settle=1.0, fresh=True, spy=args.py_spy
    )
    print(json.dumps(got, indent=1))


if __name__ == "__main__":
    main()
