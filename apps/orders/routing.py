"""WebSocket routes of the orders app (included by brokerage.asgi)."""

from django.urls import URLPattern, URLResolver, path

from apps.orders.consumers_ws import TradeUpdatesConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("stream", TradeUpdatesConsumer.as_asgi()),
]
