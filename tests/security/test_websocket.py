"""WebSocket attacks on ``/stream`` (trade_updates) and ``/v2/iex`` (market data) through the real ASGI router.

Foreign browser origins are refused at the handshake; nothing flows without credentials; malformed frames are
answered, not fatal; a customer cannot listen to another account's trade updates; and secret guessing over the
stream counts towards the same brute-force lock as REST.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import override_settings

from apps.orders.projection import group_name
from brokerage.asgi import application
from tests.accounts.factories import api_key
from tests.orders.factories import funded_account

# The consumers reach the database through database_sync_to_async (own connections): committed data.
pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
ALLOWED = "https://app.example.com"


def _ws(path: str, origin: str | None = None) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else []
    return WebsocketCommunicator(application, path, headers=headers)


def _auth(key_id: str, secret: str) -> str:
    return json.dumps({"action": "authenticate", "data": {"key_id": key_id, "secret_key": secret}})


LISTEN = json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}})


@override_settings(MARKETDATA_WS_ALLOWED_ORIGINS=[ALLOWED], CHANNEL_LAYERS=IN_MEMORY)
@pytest.mark.parametrize("path", ["/stream", "/v2/iex"])
def test_foreign_origin_is_refused_at_the_handshake(path: str) -> None:
    async def main() -> tuple[bool, bool, bool]:
        foreign = await _ws(path, "https://evil.example.com").connect()
        null_origin = await _ws(path, "null").connect()
        ws = _ws(path, ALLOWED)
        allowed = await ws.connect()
        await ws.disconnect()
        return foreign[0], null_origin[0], allowed[0]

    assert async_to_sync(main)() == (False, False, True)


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
def test_stream_without_credentials_gets_nothing() -> None:
    async def main() -> list[Any]:
        ws = _ws("/stream")
        await ws.connect()
        await ws.send_to(text_data=LISTEN)
        replies = [json.loads(await ws.receive_from())]
        for frame in ('{"action":"authenticate","data":"x"}', "[1,2]", "not json", '{"action":"auth"}'):
            await ws.send_to(text_data=frame)
            replies.append(json.loads(await ws.receive_from()))
        await ws.disconnect()
        return replies

    replies = async_to_sync(main)()
    assert [r["data"]["status"] for r in replies] == ["unauthorized"] * 5
    assert replies[0]["data"]["action"] == "listen"


@override_settings(CHANNEL_LAYERS=IN_MEMORY, MARKETDATA_WS_AUTH_TIMEOUT=5)
def test_market_data_without_credentials_gets_nothing() -> None:
    async def main() -> list[Any]:
        ws = _ws("/v2/iex")
        await ws.connect()
        hello = json.loads(await ws.receive_from())
        await ws.send_to(text_data='{"action":"subscribe","trades":["AAPL"]}')
        refused = json.loads(await ws.receive_from())
        await ws.disconnect()
        return [hello, refused]

    hello, refused = async_to_sync(main)()
    assert hello == [{"T": "success", "msg": "connected"}]
    assert refused == [{"T": "error", "code": 401, "msg": "not authenticated"}]


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
def test_no_one_listens_to_another_accounts_stream() -> None:
    a, b = funded_account(), funded_account()
    key_b, secret_b = api_key(b.owner)

    async def main() -> list[Any]:
        ws = _ws("/stream")
        await ws.connect()
        await ws.send_to(text_data=_auth(key_b.key_id, secret_b))
        assert json.loads(await ws.receive_from())["data"]["status"] == "authorized"
        # The account to listen to is never taken from the client: extra fields are ignored.
        await ws.send_to(
            text_data=json.dumps(
                {"action": "listen", "data": {"streams": ["trade_updates"], "account_id": str(a.pk)}}
            )
        )
        await ws.receive_from()
        layer = get_channel_layer()
        await layer.group_send(group_name(str(a.pk)), {"type": "trade.update", "data": {"for": "a"}})
        await layer.group_send(group_name(str(b.pk)), {"type": "trade.update", "data": {"for": "b"}})
        got = [json.loads(await ws.receive_from())]
        assert await ws.receive_nothing(timeout=0.2)
        await ws.disconnect()
        return got

    assert async_to_sync(main)() == [{"stream": "trade_updates", "data": {"for": "b"}}]


@override_settings(
    CHANNEL_LAYERS=IN_MEMORY,
    ACCOUNTS_BRUTE_FORCE={"ACCOUNT_LIMIT": 3, "IP_LIMIT": 1000, "WINDOW_SECONDS": 60, "LOCKOUT_SECONDS": 300},
)
def test_stream_secret_guessing_is_throttled() -> None:
    from django.core.cache import cache

    cache.clear()
    account = funded_account()
    key, secret = api_key(account.owner)

    async def attempt(secret_guess: str) -> str:
        ws = _ws("/stream")
        await ws.connect()
        await ws.send_to(text_data=_auth(key.key_id, secret_guess))
        status = str(json.loads(await ws.receive_from())["data"]["status"])
        await ws.disconnect()
        return status

    async def main() -> list[str]:
        return [await attempt("wrong") for _ in range(3)] + [await attempt(secret)]

    assert async_to_sync(main)() == ["unauthorized"] * 4
    cache.clear()
