"""The fan-out baseline: the data stream as the stock Channels pattern serves it (bench only, never deployed).

Every connection joins the layer's groups itself and gets each update as a layer message of its own, which it
filters, serializes and sends (one layer receive, one dispatch and one ``orjson.dumps`` per update per
connection). This is the platform's consumer before ``apps.marketdata.hub`` (already without Channels'
per-message database hop, ``apps.core.ws``), kept as the same-run baseline of ``bench/marketdata_fanout.py``.
Served by ``deploy/ws_server.py bench.ws_stock:application``.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")
django_asgi_app = get_asgi_application()

import orjson  # noqa: E402
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from apps.core.ws import DbFreeLayerEventsMixin  # noqa: E402
from apps.marketdata.ws import MarketDataStreamConsumer  # noqa: E402


class PerConnectionStreamConsumer(DbFreeLayerEventsMixin, MarketDataStreamConsumer):
    db_free_events = frozenset({"md.update"})

    async def _join(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)

    async def _leave(self, group: str) -> None:
        await self.channel_layer.group_discard(group, self.channel_name)

    async def md_update(self, event: dict[str, Any]) -> None:
        if self.deliver(event, orjson.dumps(event["msg"]).decode()):
            await self.flush()


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(
            [
                re_path(
                    r"^v2/(?P<feed>iex|sip|test)$", AuthMiddlewareStack(PerConnectionStreamConsumer.as_asgi())
                )
            ]
        ),
    }
)
