"""Fan-out of market data updates to the WebSocket consumers through the Channels layer.

Groups: ``md.{channel}.{symbol}`` and ``md.{channel}.__all__`` (the ``"*"`` subscription), channel one of
``t`` (trades), ``q`` (quotes), ``b`` (bars), ``o`` (orderbooks). Each group message is
``{"type": "md.update", "ch": channel, "S": symbol, "via": "symbol"|"all", "msg": <message with "seq">}``.

Invariants:
- Publishing is at most once (channels-redis drops silently when full); clients detect loss by ``seq`` and
  resync over REST, which is the truth. So publishing never blocks the consumer: messages go to one background
  event loop per process, in order, and are dropped (counted) if that loop falls ``MAX_PENDING`` behind.
- Publish only after the effect is durable (callers use ``transaction.on_commit``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

CHANNELS = {"trades": "t", "quotes": "q", "bars": "b", "orderbooks": "o"}
ALL = "__all__"
MAX_PENDING = 10_000
_GROUP_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def group_name(channel: str, symbol: str) -> str:
    return f"md.{channel}.{ALL if symbol == '*' else _GROUP_UNSAFE.sub('_', symbol)}"


@dataclass(frozen=True, slots=True)
class Update:
    channel: str  # t | q | b | o
    symbol: str
    message: dict[str, Any]


class Publisher:
    """One asyncio loop thread per process that owns the channel layer's connections; one worker keeps order."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[list[Update] | Future[None]] = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, name="md-publisher", daemon=True)
        self._pending = 0
        self._lock = threading.Lock()
        self.dropped = 0
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._worker())

    async def _worker(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, Future):
                item.set_result(None)
                continue
            try:
                await self._send(item)
            finally:
                with self._lock:
                    self._pending -= 1

    async def _send(self, updates: list[Update]) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            for u in updates:
                event = {"type": "md.update", "ch": u.channel, "S": u.symbol, "msg": u.message}
                # "via" tells a consumer subscribed to both "*" and the symbol which copy to keep.
                await layer.group_send(group_name(u.channel, u.symbol), {**event, "via": "symbol"})
                await layer.group_send(group_name(u.channel, "*"), {**event, "via": "all"})
        except Exception:  # the layer is best effort: a Redis hiccup must not kill the worker
            logger.warning("market data fan-out failed", exc_info=True)

    def submit(self, updates: list[Update]) -> None:
        if not updates:
            return
        with self._lock:
            if self._pending >= MAX_PENDING:
                self.dropped += len(updates)
                return
            self._pending += 1
        self._loop.call_soon_threadsafe(self._queue.put_nowait, updates)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything submitted so far was handed to the layer (tests, benchmarks)."""
        done: Future[None] = Future()
        self._loop.call_soon_threadsafe(self._queue.put_nowait, done)
        done.result(timeout)


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def publisher() -> Publisher:
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = Publisher()
        return _publisher


def publish(updates: list[Update]) -> None:
    publisher().submit(updates)
