"""WebSocket routes of the marketdata app (included by brokerage.asgi)."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
