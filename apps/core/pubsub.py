"""Many Channels group messages from synchronous code in one Redis round trip per shard.

The projection pushes every committed chunk's trade updates (about two per order) to the accounts' groups.
Through the channel layer from sync code that is ``async_to_sync`` (a thread hop and an event loop per chunk)
and one awaited ``PUBLISH`` per message on redis-py's asyncio client: about 250 µs of CPU per message, a sixth
of the projection's CPU per order (docs/PERFORMANCE.md). ``group_send_many`` sends the very same ``PUBLISH``
commands (the layer's own channel names, shard choice and serializer) through one pipeline of a synchronous
client per shard, in order.

Invariants:
- Same bytes on the same Redis channel as ``layer.group_send`` (tests/core/test_pubsub.py receives them with a
  real subscribed layer), and per shard the messages are published in the order given (one connection, one
  pipeline), so a client's trade updates keep their ``seq`` order.
- Only for ``channels_redis.pubsub.RedisPubSubChannelLayer`` with plain hosts (an address or host/port); any
  other layer or a sentinel host goes through ``layer.group_send`` as before. The named dependency (ADR 0006):
  ``RedisPubSubLoopLayer._get_group_channel_name``/``_get_shard`` and the shard's ``host``; channels-redis is
  pinned and the test fails if they change meaning.
- Best effort, as the layer's push is: the caller decides what a failure means.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer


class _Publisher:
    """The layer's naming and serializer, and one synchronous client per shard."""

    def __init__(self, layer: RedisPubSubChannelLayer, names: RedisPubSubLoopLayer) -> None:
        self.layer = layer
        self.names = names  # a loop layer only for its names and shards: it opens nothing until awaited
        self.clients: list[redis.Redis] = []
        for shard in names._shards:
            host = dict(shard.host)
            # A hung Redis must not hold the caller (the projection, after its commit) for long: bounded waits.
            host.setdefault("socket_timeout", 5.0)
            host.setdefault("socket_connect_timeout", 2.0)
            if "address" in host:
                pool = redis.ConnectionPool.from_url(host.pop("address"), **host)
            else:
                pool = redis.ConnectionPool(**host)
            self.clients.append(redis.Redis(connection_pool=pool))

    def send_many(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
        pipes: dict[int, Any] = {}
        shards = self.names._shards
        for group, message in messages:
            channel = self.names._get_group_channel_name(group)
            index = shards.index(self.names._get_shard(channel))
            pipe = pipes.get(index)
            if pipe is None:
                pipe = pipes[index] = self.clients[index].pipeline(transaction=False)
            pipe.publish(channel, self.layer.serialize(message))
        for pipe in pipes.values():
            pipe.execute()


_publishers: dict[int, _Publisher | None] = {}  # id(layer) -> its publisher (None: not supported)
_lock = threading.Lock()


def _publisher(layer: Any) -> _Publisher | None:
    key = id(layer)
    if key in _publishers:
        found = _publishers[key]
        if found is None or found.layer is layer:
            return found
    with _lock:
        made: _Publisher | None = None
        if type(layer) is RedisPubSubChannelLayer:
            names = RedisPubSubLoopLayer(*layer._args, **layer._kwargs, channel_layer=layer)
            if not any("master_name" in shard.host for shard in names._shards):
                made = _Publisher(layer, names)
        _publishers[key] = made
    return made


def group_send_many(messages: Sequence[tuple[str, dict[str, Any]]]) -> None:
    """``layer.group_send(group, message)`` for each pair, in order, from synchronous code."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    publisher = _publisher(layer)
    if publisher is not None:
        publisher.send_many(messages)
        return

    async def send_all() -> None:
        for group, message in messages:
            await layer.group_send(group, message)

    async_to_sync(send_all)()
