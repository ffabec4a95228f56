"""ASGI application of the fan-out benchmark's ``pubsub-nohop`` variant; never used by the platform.

It is ``brokerage.asgi:application`` with one change to ``MarketDataStreamConsumer``: a channel-layer
``md.update`` is handled without Channels' per-message ``aclose_old_connections()`` (channels >= 4.2 runs
``close_old_connections`` through ``sync_to_async`` before every handler, i.e. one hop through the single
thread-sensitive executor thread per message per client; ``md_update`` touches no database). Every other
message type keeps the stock dispatch. ``bench/marketdata_fanout.py`` serves it with ``deploy/ws_server.py``
next to the stock application, so the effect of the change is measured in the same run.
"""

from __future__ import annotations

from typing import Any

from brokerage.asgi import application  # first: it sets Django up

# isort: split
from apps.marketdata.ws import MarketDataStreamConsumer

_stock_dispatch = MarketDataStreamConsumer.dispatch


async def _dispatch(self: MarketDataStreamConsumer, message: dict[str, Any]) -> None:
    if message["type"] == "md.update":
        await self.md_update(message)
        return
    await _stock_dispatch(self, message)


MarketDataStreamConsumer.dispatch = _dispatch

__all__ = ["application"]
