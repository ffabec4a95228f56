"""The data stream against the real Redis channel layer: delivery, sequence gaps and resync, auth, origins."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client, override_settings
from rest_framework.test import APIClient

from apps.marketdata.routing import websocket_urlpatterns
from engine.engine import Engine
from tests.marketdata.test_pipeline import engine_depth, run_script

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.kafka]

application = URLRouter(websocket_urlpatterns)
T = TypeVar("T")


def session_cookie() -> bytes:
    user = get_user_model().objects.create_user(
        username=f"u{uuid.uuid4().hex[:8]}", email=f"{uuid.uuid4().hex[:8]}@example.com", password="x" * 16
    )
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def connect(cookie: bytes | None = None, origin: str | None = None) -> WebsocketCommunicator:
    headers = [(b"cookie", cookie)] if cookie else []
    if origin:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, "/v2/test", headers=headers)


async def frames(
    ws: WebsocketCommunicator, until: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Collect messages (arrays are flattened) until ``until(all so far)`` holds."""
    got: list[dict[str, Any]] = []
    while not until(got):
        got += orjson.loads(await ws.receive_from(timeout=15))
    return got


async def open_authenticated(cookie: bytes, subscribe: dict[str, list[str]]) -> WebsocketCommunicator:
    ws = connect(cookie)
    connected, _ = await ws.connect()
    assert connected
    assert orjson.loads(await ws.receive_from()) == [{"T": "success", "msg": "connected"}]
    await ws.send_to(text_data=orjson.dumps({"action": "auth"}).decode())
    assert orjson.loads(await ws.receive_from()) == [{"T": "success", "msg": "authenticated"}]
    await ws.send_to(text_data=orjson.dumps({"action": "subscribe", **subscribe}).decode())
    return ws


def run(main: Callable[[], Awaitable[None]]) -> None:
    async_to_sync(main)()


async def in_thread(fn: Callable[[], T]) -> T:
    """Run sync work (Kafka, DB) off the loop, closing the worker thread's DB connection afterwards."""

    def call() -> T:
        try:
            return fn()
        finally:
            connection.close()

    return await sync_to_async(call, thread_sensitive=False)()


def test_trade_reaches_subscribed_clients_cache_and_bars(
    md_redis: Any, engine_publish: Any, md_consume: Any
) -> None:
    cookie = session_cookie()

    async def main() -> None:
        # Two connections of the same user: both are served.
        one = await open_authenticated(cookie, {"trades": ["AAPL"], "bars": ["AAPL"], "quotes": ["*"]})
        two = await open_authenticated(cookie, {"trades": ["*"]})
        sub_one = (await frames(one, lambda got: bool(got)))[0]
        assert sub_one == {
            "T": "subscription",
            "trades": ["AAPL"],
            "quotes": ["*"],
            "bars": ["AAPL"],
            "orderbooks": [],
        }
        await frames(two, lambda got: bool(got))

        def pipeline() -> None:
            sent, _ = run_script(Engine(), engine_publish)
            assert md_consume(sent) == sent

        await in_thread(pipeline)

        def done(got: list[dict[str, Any]]) -> bool:
            return (
                any(m["T"] == "t" and m["seq"] == 4 for m in got)
                and any(m["T"] == "b" and m["n"] == 4 for m in got)
                and any(m["T"] == "q" and (m["bp"], m["ap"]) == ("99", "100.5") for m in got)
            )

        got = await frames(one, done)
        trades = [m for m in got if m["T"] == "t"]
        assert [m["seq"] for m in trades] == sorted({m["seq"] for m in trades})  # in order, no duplicates
        cached = orjson.loads(md_redis.hget("md:AAPL:trade", "data"))
        assert trades[-1] == {"T": "t", "S": "AAPL", **cached, "seq": 4}
        assert (trades[-1]["p"], trades[-1]["s"]) == ("99", "10")
        bar = [m for m in got if m["T"] == "b"][-1]
        assert (bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["n"]) == (
            "100.5",
            "100.5",
            "99",
            "99",
            "100",
            4,
        )
        assert orjson.loads(md_redis.hget("md:AAPL:bar:1Min", "data")) == {
            k: v for k, v in bar.items() if k not in ("T", "S", "seq")
        }
        assert not [m for m in got if m["T"] == "o"]  # not subscribed to orderbooks

        got_two = await frames(two, lambda got: any(m["T"] == "t" and m["seq"] == 4 for m in got))
        assert {m["T"] for m in got_two} == {"t"}
        await one.disconnect()
        await two.disconnect()

    run(main)


@override_settings(MARKETDATA_REST_PUBLIC=True)
def test_client_dropping_messages_detects_gap_and_resyncs_to_rest(
    md_redis: Any, engine_publish: Any, md_consume: Any
) -> None:
    cookie = session_cookie()
    api = APIClient()
    engine = Engine()

    async def main() -> None:
        ws = await open_authenticated(cookie, {"orderbooks": ["AAPL"]})
        first = await frames(ws, lambda got: any(m["T"] == "o" for m in got))
        snapshot = next(m for m in first if m["T"] == "o")
        assert (snapshot["r"], snapshot["b"], snapshot["a"], snapshot["seq"]) == (True, [], [], 0)

        def pipeline() -> int:
            sent, _ = run_script(engine, engine_publish)
            assert md_consume(sent) == sent
            return int(api.get("/v2/stocks/AAPL/orderbook").json()["orderbook"]["seq"])

        final_seq = await in_thread(pipeline)
        deltas = [
            m for m in await frames(ws, lambda g: any(m["seq"] == final_seq for m in g)) if m["T"] == "o"
        ]

        # The client's view: it "loses" the third delta, notices the jump in seq and resyncs from REST.
        view: dict[str, dict[str, str]] = {"b": {}, "a": {}}
        last, gaps = snapshot["seq"], 0
        for n, msg in enumerate(deltas):
            if n == 2:
                continue  # dropped on the floor
            if msg["seq"] <= last:
                continue
            if msg["seq"] != last + 1:
                gaps += 1
                rest = (await in_thread(lambda: api.get("/v2/stocks/AAPL/orderbook"))).json()["orderbook"]
                view = {side: {lvl["p"]: lvl["s"] for lvl in rest[side]} for side in ("b", "a")}
                last = rest["seq"]
                if msg["seq"] <= last:
                    continue
            for side in ("b", "a"):
                for lvl in msg.get(side, []):
                    if lvl["s"] == "0":
                        view[side].pop(lvl["p"], None)
                    else:
                        view[side][lvl["p"]] = lvl["s"]
            last = msg["seq"]

        assert gaps == 1
        rest = (await in_thread(lambda: api.get("/v2/stocks/AAPL/orderbook"))).json()["orderbook"]
        assert view == {side: {lvl["p"]: lvl["s"] for lvl in rest[side]} for side in ("b", "a")}
        depth = engine_depth(engine, "AAPL")
        assert view == {side: {lvl["p"]: lvl["s"] for lvl in depth[side]} for side in ("b", "a")}
        await ws.disconnect()

    run(main)


@override_settings(MARKETDATA_WS_AUTH_TIMEOUT=0.3, MARKETDATA_WS_ALLOWED_ORIGINS=["https://app.example.com"])
def test_auth_protocol_and_origin_checks(md_redis: Any) -> None:
    cookie = session_cookie()

    async def main() -> None:
        # Anonymous and silent: closed after the auth timeout.
        ws = connect()
        assert (await ws.connect())[0]
        await ws.receive_from()
        await ws.send_to(text_data='{"action":"subscribe","trades":["AAPL"]}')
        assert orjson.loads(await ws.receive_from()) == [
            {"T": "error", "code": 401, "msg": "not authenticated"}
        ]
        assert orjson.loads(await ws.receive_from(timeout=5)) == [
            {"T": "error", "code": 404, "msg": "auth timeout"}
        ]
        assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"

        # A key that does not authenticate: 402 and closed.
        ws = connect()
        await ws.connect()
        await ws.receive_from()
        await ws.send_to(text_data='{"action":"auth","key":"nope","secret":"nope"}')
        assert orjson.loads(await ws.receive_from()) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        assert (await ws.receive_output(timeout=5))["type"] == "websocket.close"

        # Invalid syntax is answered, not fatal; a second auth is refused.
        ws = connect(cookie)
        await ws.connect()
        await ws.receive_from()
        await ws.send_to(text_data="not json")
        assert orjson.loads(await ws.receive_from()) == [{"T": "error", "code": 400, "msg": "invalid syntax"}]
        await ws.send_to(text_data='{"action":"auth"}')
        await ws.receive_from()
        await ws.send_to(text_data='{"action":"auth"}')
        assert orjson.loads(await ws.receive_from()) == [
            {"T": "error", "code": 403, "msg": "already authenticated"}
        ]
        await ws.send_to(text_data='{"action":"subscribe","quotes":["aapl","*"]}')
        await ws.send_to(text_data='{"action":"unsubscribe","quotes":["*"]}')
        replies = orjson.loads(await ws.receive_from()) + orjson.loads(await ws.receive_from())
        assert [r["quotes"] for r in replies] == [["*", "AAPL"], ["AAPL"]]
        await ws.disconnect()

        # Browser origins: only the configured ones get a handshake.
        assert (await connect(cookie, origin="https://evil.example.com").connect())[0] is False
        ok = connect(cookie, origin="https://app.example.com")
        assert (await ok.connect())[0] is True
        await ok.disconnect()

    run(main)


def test_one_hub_membership_per_process_serves_every_connection_and_leaves_with_the_last(
    md_redis: Any,
) -> None:
    """The process's hub, not each connection, is the layer's group member: one update from the layer reaches
    every subscribed connection once (each gets the same text), and the hub leaves the group with the last."""
    from channels.layers import get_channel_layer

    from apps.marketdata.hub import hub_for
    from apps.marketdata.stream import group_name

    cookie = session_cookie()
    group = group_name("t", "HUBX")

    async def main() -> None:
        layer = get_channel_layer()
        one = await open_authenticated(cookie, {"trades": ["HUBX"]})
        two = await open_authenticated(cookie, {"trades": ["HUBX", "OTHER"]})
        for ws in (one, two):
            await frames(ws, lambda got: any(m["T"] == "subscription" for m in got))
        hub = hub_for(layer)
        assert len(hub.members[group]) == 2
        seen: list[dict[str, Any]] = []
        dispatch = hub.dispatch

        def counting(event: dict[str, Any]) -> None:
            seen.append(event)
            dispatch(event)

        hub.dispatch = counting  # type: ignore[method-assign]
        msg = {"T": "t", "S": "HUBX", "p": "10.5", "s": "3", "seq": 1}
        await layer.group_send(
            group, {"type": "md.update", "ch": "t", "S": "HUBX", "via": "symbol", "msg": msg}
        )
        for ws in (one, two):
            assert await frames(ws, bool) == [msg]
        assert len(seen) == 1  # one layer message for both connections
        await one.disconnect()
        assert len(hub.members[group]) == 1
        await layer.group_send(
            group, {"type": "md.update", "ch": "t", "S": "HUBX", "via": "symbol", "msg": msg}
        )
        assert await frames(two, bool) == [msg]
        await two.disconnect()
        assert group not in hub.members
        assert group_name("t", "OTHER") not in hub.members
        hub.dispatch = dispatch  # type: ignore[method-assign]

    run(main)
