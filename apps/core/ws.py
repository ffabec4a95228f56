"""WebSocket consumer plumbing shared by the platform's streams.

Channels (>= 4.2) runs ``close_old_connections`` through ``sync_to_async`` before EVERY handler it dispatches: one
hop through the single thread-sensitive executor per message per connection. For a fan-out that hop is most of
the ws process's work (py-spy at saturation: 56 % of samples; ``bench/marketdata_fanout.py``). A handler that
never touches the database does not need it, so layer events named in ``db_free_events`` are dispatched
directly. Invariant: a handler listed there uses no ORM and no ``database_sync_to_async`` (anything that does
goes through Channels' stock dispatch, which keeps closing stale connections as before).
"""

from __future__ import annotations

from typing import Any, ClassVar

from channels.consumer import get_handler_name


class DbFreeLayerEventsMixin:
    """Put before the Channels consumer class in the bases; list the database-free event types."""

    db_free_events: ClassVar[frozenset[str]] = frozenset()

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") in self.db_free_events:
            await getattr(self, get_handler_name(message))(message)
            return
        await super().dispatch(message)  # type: ignore[misc]
