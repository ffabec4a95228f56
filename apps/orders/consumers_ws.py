"""Alpaca's ``trade_updates`` stream at ``/stream``.

Handshake (as alpaca-py's ``TradingStream`` speaks it):
``{"action":"authenticate","data":{"key_id":K,"secret_key":S}}`` →
``{"stream":"authorization","data":{"status":"authorized","action":"authenticate"}}``;
``{"action":"listen","data":{"streams":["trade_updates"]}}`` → ``{"stream":"listening","data":{"streams":[...]}}``;
then ``{"stream":"trade_updates","data":{"event","order","timestamp","seq",...}}``.
A browser ``Origin`` not in ``MARKETDATA_WS_ALLOWED_ORIGINS`` (the one WebSocket origin list) is refused at the
handshake; programs send no Origin. While the process drains (SIGTERM) new connections are refused too.
Failed key checks count towards the API-key brute-force limits, as on REST.
Several connections per account each join the account's group. Delivery is at most once: every update
carries the account's gap-free ``seq`` so a client detects a gap and resyncs over REST.
Slow clients: trade updates cannot be conflated, so a connection whose transport holds more than
``MARKETDATA_WS_MAX_BACKLOG_BYTES`` unsent bytes (ASGI extension ``x-brokerage.write-backlog`` from
deploy/ws_server.py) is closed with 4407 instead of buffering without bound; the client reconnects and resyncs.
"""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from prometheus_client import Counter

from apps.core.health import is_draining
from apps.core.ws import DbFreeLayerEventsMixin
from apps.orders.projection import group_name

BACKLOG_EXTENSION = "x-brokerage.write-backlog"  # set by deploy/ws_server.py: {"bytes": () -> int | None}
CLOSE_SLOW_CLIENT = 4407  # as the data stream's 407 "slow client"
SLOW_CLIENT_CLOSES = Counter(
    "trade_updates_ws_slow_client_closes", "trade_updates connections closed as slow"
)


def _account_for_keys(key_id: str, secret: str, ip: str | None = None) -> str | None:
    """The account id of an API key pair, checked by apps.accounts' ApiKeyAuthentication; None if invalid.

    Locked key ids/IPs are refused and every failure is counted (else the stream would be an unthrottled
    oracle for guessing secrets, one connection per guess).
    """
    from apps.accounts import authentication, bruteforce
    from apps.accounts.models import BrokerageAccount

    # The same check the REST API runs (constant-time, revoked/expired keys refused). TODO(accounts): a
    # public ``api_key_verify(key_id, secret)`` selector would replace this reach into the class.
    valid_key = getattr(authentication.ApiKeyAuthentication, "_valid_key", None)
    if valid_key is None or not key_id or not secret:
        return None
    try:
        bruteforce.attempt_check(path=bruteforce.PATH_API_KEY, account=key_id, ip=ip)
    except bruteforce.LockedOut:
        return None
    api_key = valid_key(key_id, secret)
    if api_key is None:
        bruteforce.attempt_failed(path=bruteforce.PATH_API_KEY, account=key_id, ip=ip)
        return None
    account = BrokerageAccount.objects.filter(owner_id=api_key.owner_id).first()
    return str(account.id) if account is not None else None


class TradeUpdatesConsumer(DbFreeLayerEventsMixin, AsyncWebsocketConsumer):  # type: ignore[misc]
    # trade_update only sends the pushed payload: no database, so no per-message connection-closing hop.
    db_free_events = frozenset({"trade.update"})

    account_id: str | None = None
    listening: bool = False

    async def connect(self) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope.get("headers", [])}
        origin = headers.get("origin")
        if origin is not None and origin not in set(getattr(settings, "MARKETDATA_WS_ALLOWED_ORIGINS", [])):
            await self.close(code=4003)  # before accept: the handshake is refused (HTTP 403)
            return
        if is_draining():  # shutting down (deploy/ws_server.py): the client should connect to another task
            await self.close(code=4003)
            return
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.account_id is not None and self.channel_layer is not None:
            await self.channel_layer.group_discard(group_name(self.account_id), self.channel_name)

    async def _send(self, stream: str, data: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"stream": stream, "data": data}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        raw = text_data if text_data is not None else (bytes_data or b"").decode("utf-8", "replace")
        try:
            msg = json.loads(raw)
            action = msg.get("action")
            data = msg.get("data") or {}
            if not isinstance(data, dict):
                raise ValueError("data must be an object")
        except (ValueError, AttributeError):
            await self._send("authorization", {"status": "unauthorized", "action": "unknown"})
            return
        if action in ("authenticate", "auth"):
            client = self.scope.get("client") or [None]
            account_id = await database_sync_to_async(_account_for_keys)(
                str(data.get("key_id", "")), str(data.get("secret_key", "")), client[0]
            )
            if account_id is None:
                await self._send("authorization", {"status": "unauthorized", "action": "authenticate"})
                await self.close(code=4001)
                return
            self.account_id = account_id
            await self._send("authorization", {"status": "authorized", "action": "authenticate"})
        elif action == "listen":
            if self.account_id is None:
                await self._send("authorization", {"status": "unauthorized", "action": "listen"})
                return
            streams = [s for s in (data.get("streams") or []) if s == "trade_updates"]
            if streams and not self.listening and self.channel_layer is not None:
                await self.channel_layer.group_add(group_name(self.account_id), self.channel_name)
                self.listening = True
            await self._send("listening", {"streams": streams})

    def _backlog_bytes(self) -> int | None:
        probe = (self.scope.get("extensions") or {}).get(BACKLOG_EXTENSION)
        return None if probe is None else probe["bytes"]()

    async def trade_update(self, event: dict[str, Any]) -> None:
        if not self.listening:
            return
        backlog = self._backlog_bytes()
        if backlog is not None and backlog > int(
            getattr(settings, "MARKETDATA_WS_MAX_BACKLOG_BYTES", 1 << 20)
        ):
            self.listening = False  # nothing more for this socket; the close frame queues behind its backlog
            SLOW_CLIENT_CLOSES.inc()
            await self.close(code=CLOSE_SLOW_CLIENT)
            return
        await self._send("trade_updates", event["data"])
