"""``group_send_many``: the layer's own messages, on the layer's own channels, in order, against real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import channel_layers, get_channel_layer
from django.conf import settings as django_settings

from apps.core.pubsub import _publisher, group_send_many


@pytest.fixture
def layer_config(settings: Any) -> Iterator[None]:
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _messages() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = [
        ("acct.one", {"type": "trade.update", "data": {"seq": i, "price": "100.25", "qty": "0.000000001"}})
        for i in range(1, 41)
    ]
    out.insert(17, ("acct.two", {"type": "trade.update", "data": {"seq": 1, "event": "fill"}}))
    return out


def _receive_all(layer: Any, send: Any, counts: dict[str, int]) -> dict[str, list[dict[str, Any]]]:
    async def scenario() -> dict[str, list[dict[str, Any]]]:
        channels = {group: await layer.new_channel() for group in counts}
        for group, channel in channels.items():
            await layer.group_add(group, channel)
        await send()
        got = {
            group: [await asyncio.wait_for(layer.receive(channels[group]), 5) for _ in range(n)]
            for group, n in counts.items()
        }
        for group, channel in channels.items():
            await layer.group_discard(group, channel)
        return got

    return async_to_sync(scenario)()


def test_the_redis_layer_receives_what_group_send_would_send_in_order(
    settings: Any, layer_config: None
) -> None:
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [django_settings.REDIS_URL], "prefix": f"t{uuid.uuid4().hex[:8]}"},
        }
    }
    layer = get_channel_layer()
    assert _publisher(layer) is not None  # the one-round-trip path, not the fallback
    messages = _messages()
    counts = {"acct.one": 40, "acct.two": 1}

    fast = _receive_all(layer, lambda: sync_to_async(group_send_many)(messages), counts)

    async def reference() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    stock = _receive_all(layer, reference, counts)
    assert fast == stock
    assert [m["data"]["seq"] for m in fast["acct.one"]] == list(range(1, 41))
    assert fast["acct.two"] == [{"type": "trade.update", "data": {"seq": 1, "event": "fill"}}]


def test_another_layer_gets_its_own_group_send(settings: Any, layer_config: None) -> None:
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    assert _publisher(layer) is None
    messages = _messages()
    got = _receive_all(
        layer, lambda: sync_to_async(group_send_many)(messages), {"acct.one": 40, "acct.two": 1}
    )
    assert [m["data"]["seq"] for m in got["acct.one"]] == list(range(1, 41))
    assert got["acct.two"] == [messages[17][1]]
