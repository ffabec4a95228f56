"""Issue 6, second half: a private Redis is killed and restarted under a live WebSocket subscriber.

What is shown (against a private ``redis-server``, never the shared one):
- while Redis is down the REST latest-quote answers 503 ``marketdata_cache_unavailable`` and publishing a trade
  neither raises nor kills the fan-out worker (``flush`` still returns);
- after Redis returns on the same port, the breaker (``reset_timeout=0``: the next call probes) closes again and
  a new trade reaches the SAME subscribed WebSocket client, without it reconnecting: the Channels pub/sub layer
  re-subscribes its connection by itself. Pub/sub is at-most-once, so trades published before the re-subscribe
  are lost (the client sees a ``seq`` gap and resyncs over REST); the test therefore republishes, with a
  growing ``seq``, until one arrives.
"""

from __future__ import annotations

import functools
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from django.test import override_settings
from rest_framework.test import APIClient

from apps.marketdata import cache
from apps.marketdata.stream import Update, publish, publisher
from tests.marketdata.test_stream import frames, in_thread, open_authenticated, run, session_cookie

pytestmark = [pytest.mark.django_db(transaction=True)]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class PrivateRedis:
    """One ``redis-server`` on a fixed port that the test may kill and start again."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        for _ in range(100):  # the server needs a moment to listen
            try:
                if probe.ping():
                    probe.close()
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    cache._breaker.cache_clear()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.kill()
        cache._breaker.cache_clear()


def trade(seq: int) -> Update:
    return Update("t", "AAPL", {"T": "t", "S": "AAPL", "i": seq, "p": "100", "s": "1", "seq": seq})


def publish_flushed(update: Update) -> None:
    publish([update])
    publisher().flush()


def test_stream_and_rest_recover_after_redis_restart(private_redis: PrivateRedis) -> None:
    cookie = session_cookie()
    api = APIClient()
    url = private_redis.url
    layers = {
        "default": {"BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer", "CONFIG": {"hosts": [url]}}
    }
    with override_settings(
        REDIS_URL=url,
        MARKETDATA_REDIS_URL=url,
        CHANNEL_LAYERS=layers,
        MARKETDATA_REDIS_BREAKER={"fail_max": 1, "reset_timeout": 0},
        MARKETDATA_REST_PUBLIC=True,
    ):
        cache.client().hset(cache.quote_key("AAPL"), mapping={"seq": 1, "cseq": 1, "data": b'{"bp":"99"}'})

        async def main() -> None:
            ws = await open_authenticated(cookie, {"trades": ["AAPL"]})
            assert (await frames(ws, lambda got: bool(got)))[0]["trades"] == ["AAPL"]
            await in_thread(lambda: publish_flushed(trade(1)))
            assert [m["seq"] for m in await frames(ws, lambda got: bool(got))] == [1]

            private_redis.kill()
            down = await in_thread(lambda: api.get("/v2/stocks/AAPL/quotes/latest"))
            assert down.status_code == 503
            assert (down.json()["code"], down.json()["error"]) == (50310001, "marketdata_cache_unavailable")
            await in_thread(lambda: publish_flushed(trade(2)))  # lost, but the worker survives
            assert await ws.receive_nothing(timeout=0.3)

            private_redis.start()  # same port, empty (no persistence): the cache is rebuilt from Kafka later
            cache.client().hset(
                cache.quote_key("AAPL"), mapping={"seq": 1, "cseq": 1, "data": b'{"bp":"98"}'}
            )
            up = await in_thread(lambda: api.get("/v2/stocks/AAPL/quotes/latest"))
            assert up.status_code == 200
            assert up.json()["quote"]["bp"] == "98"

            received: list[dict[str, Any]] = []
            for seq in range(3, 33):  # until the layer's pub/sub connection has re-subscribed
                await in_thread(functools.partial(publish_flushed, trade(seq)))
                if not await ws.receive_nothing(timeout=0.5):
                    received = orjson.loads(await ws.receive_from())
                    break
            assert len(received) == 1  # one frame, one trade: nothing lost earlier is replayed
            assert received[0] == trade(seq).message  # the newest one published, to the same connection
            await ws.disconnect()

        run(main)
