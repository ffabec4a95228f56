"""The trade_updates WebSocket: Alpaca's handshake, per-account fan-out to several connections, seq numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.db import transaction

from apps.accounts.services import api_key_create
from apps.orders.consumers_ws import TradeUpdatesConsumer
from apps.orders.models import Order, TradeUpdate
from apps.orders.projection import trade_update_emit
from tests.orders.factories import asset_create, funded_account

# The consumer reaches the database through database_sync_to_async, which closes connections: a committed DB.
pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def _handshake(key_id: str, secret: str) -> tuple[WebsocketCommunicator, list[Any]]:
    comm = WebsocketCommunicator(TradeUpdatesConsumer.as_asgi(), "/stream")
    connected, _ = await comm.connect()
    assert connected
    await comm.send_to(
        text_data=json.dumps({"action": "authenticate", "data": {"key_id": key_id, "secret_key": secret}})
    )
    auth = json.loads(await comm.receive_from())
    await comm.send_to(text_data=json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    listening = json.loads(await comm.receive_from())
    return comm, [auth, listening]


def test_handshake_and_fan_out_with_seq(settings: Any) -> None:
    settings.CHANNEL_LAYERS = IN_MEMORY
    asset = asset_create(symbol="AAPL")
    account = funded_account(cash=Decimal(0))
    key, secret = api_key_create(owner=account.owner, name="ws", scopes=["read", "trade"])
    now = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    order = Order.objects.create(
        client_order_id="ws-1",
        account=account,
        asset=asset,
        symbol="AAPL",
        side="buy",
        type="limit",
        time_in_force="day",
        qty=Decimal("1"),
        limit_price=Decimal("100"),
        status="new",
        created_at=now,
        updated_at=now,
        submitted_at=now,
    )

    async def scenario() -> list[Any]:
        a, a_hello = await _handshake(key.key_id, secret)
        b, b_hello = await _handshake(key.key_id, secret)
        bad = WebsocketCommunicator(TradeUpdatesConsumer.as_asgi(), "/stream")
        await bad.connect()
        await bad.send_to(
            text_data=json.dumps(
                {"action": "authenticate", "data": {"key_id": key.key_id, "secret_key": "wrong"}}
            )
        )
        refused = json.loads(await bad.receive_from())
        assert refused == {
            "stream": "authorization",
            "data": {"status": "unauthorized", "action": "authenticate"},
        }
        from channels.db import database_sync_to_async

        def emit() -> None:
            with transaction.atomic():
                trade_update_emit(order=order, event="new", source_id="s-1", timestamp=now)
                trade_update_emit(order=order, event="canceled", source_id="s-2", timestamp=now)

        await database_sync_to_async(emit)()
        got = [json.loads(await c.receive_from()) for c in (a, a, b, b)]
        for c in (a, b, bad):
            await c.disconnect()
        return [a_hello, b_hello, got]

    a_hello, b_hello, got = async_to_sync(scenario)()
    assert (
        a_hello
        == b_hello
        == [
            {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}},
            {"stream": "listening", "data": {"streams": ["trade_updates"]}},
        ]
    )
    assert [(m["stream"], m["data"]["event"], m["data"]["seq"]) for m in got] == [
        ("trade_updates", "new", 1),
        ("trade_updates", "canceled", 2),
        ("trade_updates", "new", 1),
        ("trade_updates", "canceled", 2),
    ]
    assert got[0]["data"]["order"]["id"] == str(order.id)
    assert TradeUpdate.objects.count() == 2
