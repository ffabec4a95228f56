"""Per-process fan-out of market data: one channel-layer membership per group, one serialization per update.

The stock Channels pattern makes every WebSocket connection a member of the groups it subscribes to, so each
update is copied, received, dispatched and serialized once per connection. Here each ws process (each event
loop) has one ``FanoutHub`` with one layer channel of its own: the hub joins a group when its first local
connection subscribes and leaves it when the last one goes (with no subscriber at all it stops receiving, and
the next join starts a new channel). For each update it receives it serializes the
message once (``orjson``), hands it to every local subscriber of that group (``Subscriber.deliver``: filter and
conflate, no I/O), and then flushes each subscriber that got something: one array frame per connection.

Batching: the flush runs as its own task, so it starts only when the reader has drained everything the layer
had already received. An idle server sends one frame per update; a busy one sends one frame per connection
with every update that arrived meanwhile (conflated per key, as before). Invariants kept from the consumer:
delivery is at most once and ordered per (channel, symbol) by ``seq``; a subscriber that is over its backlog
limit is skipped by the flush and left conflating until its own writer sees the backlog drain.

The group an update belongs to is derived from the update itself (``stream.group_name`` of its channel and, for
``via == "all"``, ``"*"``), because one layer channel receives every group the hub joined.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, Protocol

import orjson

from apps.marketdata.stream import group_name

logger = logging.getLogger(__name__)

RECEIVE_RETRY_S = 0.5  # after a layer error (Redis restarting): wait, then receive again


class Subscriber(Protocol):
    def deliver(self, event: dict[str, Any], text: str) -> bool:
        """Queue ``event`` (its message already serialized as ``text``); True if anything is now pending."""

    async def flush(self, prepared: dict[str, Any] | None = None) -> None:
        """Send what is pending as one frame, unless the connection is closed or held back (slow client).

        ``prepared``: frames already encoded in this flush round, by text (shared across connections)."""


class FanoutHub:
    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.members: dict[str, set[Subscriber]] = {}
        self._channel: str | None = None
        self._lock = asyncio.Lock()  # group_add / group_discard of one group never interleave
        self._reader: asyncio.Task[None] | None = None
        self._dirty: dict[Subscriber, None] = {}  # insertion-ordered set: flushed in the order they got data
        self._flusher: asyncio.Task[None] | None = None

    async def join(self, group: str, subscriber: Subscriber) -> None:
        async with self._lock:
            members = self.members.get(group)
            if members is None:
                if self._channel is None:
                    self._channel = await self.layer.new_channel("md-hub.")
                    self._reader = asyncio.create_task(self._read(), name="md-hub-reader")
                await self.layer.group_add(group, self._channel)
                members = self.members[group] = set()
            members.add(subscriber)

    async def leave(self, group: str, subscriber: Subscriber) -> None:
        async with self._lock:
            members = self.members.get(group)
            if members is None or subscriber not in members:
                return
            members.discard(subscriber)
            self._dirty.pop(subscriber, None)
            if not members:
                del self.members[group]
                await self.layer.group_discard(group, self._channel)
            if not self.members and self._reader is not None:
                # Nothing subscribed in this process: stop receiving (the next join starts a new channel). A
                # receive left pending would also block another event loop's receive on channels-redis's
                # core layer (tests run one loop each).
                reader, self._reader, self._channel = self._reader, None, None
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self._channel is not None
        while True:
            try:
                event = await self.layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # the layer is best effort: a Redis hiccup must not end the stream
                logger.warning("market data hub: layer receive failed", exc_info=True)
                await asyncio.sleep(RECEIVE_RETRY_S)
                continue
            try:
                self.dispatch(event)
            except Exception:  # one malformed update must not stop every other one
                logger.exception("market data hub: update not dispatched: %r", event)

    def dispatch(self, event: dict[str, Any]) -> None:
        if event.get("type") != "md.update":
            return
        group = group_name(event["ch"], "*" if event.get("via") == "all" else event["S"])
        members = self.members.get(group)
        if not members:
            return
        text = orjson.dumps(event["msg"]).decode()  # once per update per process, not per connection
        dirty = self._dirty
        for subscriber in members:
            if subscriber.deliver(event, text):
                dirty[subscriber] = None
        if dirty and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        # Runs once the reader has nothing more at hand (it only yields to the loop on an empty layer queue).
        try:
            while self._dirty:
                batch = list(self._dirty)
                self._dirty.clear()
                prepared: dict[
                    str, Any
                ] = {}  # an idle server sends every connection the same text: frame it once
                for subscriber in batch:
                    try:
                        await subscriber.flush(prepared)
                    except Exception:  # a connection that broke mid-send must not starve the others
                        logger.warning("market data hub: flush failed", exc_info=True)
        finally:
            self._flusher = None


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FanoutHub] = weakref.WeakKeyDictionary()


def hub_for(layer: Any) -> FanoutHub:
    """The hub of the running event loop (one per ws process; tests run one loop per test)."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None or hub.layer is not layer:
        if hub is not None and hub._reader is not None:  # the layer was replaced (tests overriding settings)
            hub._reader.cancel()
        hub = _hubs[loop] = FanoutHub(layer)
    return hub
