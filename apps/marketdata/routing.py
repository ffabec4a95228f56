"""WebSocket routes of the marketdata app (included by brokerage.asgi): Alpaca's data-stream paths ``/v2/{feed}``.

The session middleware is applied here (not globally) so browser users can authenticate with their session.
"""

from channels.auth import AuthMiddlewareStack
from django.urls import URLPattern, URLResolver, re_path

from apps.marketdata.ws import MarketDataStreamConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    re_path(r"^v2/(?P<feed>iex|sip|test)$", AuthMiddlewareStack(MarketDataStreamConsumer.as_asgi())),
]
