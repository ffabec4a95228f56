"""WebSocket routes of the orders app (included by brokerage.asgi)."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
