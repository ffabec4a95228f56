"""ASGI entry point (daphne): HTTP goes to Django, WebSockets to the apps' Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.marketdata.routing import websocket_urlpatterns as marketdata_ws  # noqa: E402
from apps.orders.routing import websocket_urlpatterns as orders_ws  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Each consumer authenticates in its own handshake (Alpaca's protocol) and checks the Origin itself.
        "websocket": URLRouter([*orders_ws, *marketdata_ws]),
    }
)
