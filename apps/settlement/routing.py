"""WebSocket routes of the settlement app (included by brokerage.asgi)."""

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
