"""Alpaca data-stream protocol over Channels (``/v2/iex``, ``/v2/sip``, ``/v2/test``), plus our additions.

Protocol: on connect ``[{"T":"success","msg":"connected"}]``; ``{"action":"auth","key":K,"secret":S}`` →
``[{"T":"success","msg":"authenticated"}]`` (an API key, or — with no key — the session user);
``{"action":"subscribe"|"unsubscribe","trades":[...],"quotes":[...],"bars":[...],"orderbooks":[...]}`` (``"*"``
= all symbols) → ``[{"T":"subscription",...}]``. Data arrive as arrays of ``{"T":"t"|"q"|"b"|"o",...}``.
Errors use Alpaca's codes: 400 invalid syntax, 401 not authenticated, 402 auth failed, 403 already
authenticated, 404 auth timeout, 405 symbol limit exceeded, 407 slow client; ours: 503 orderbook snapshot
unavailable (Redis down). An error that ends the connection (402, 404, 407) is followed by close code 4000 + code.

Invariants:
- Every data message has ``seq``: per (channel, symbol), +1 per update, so a gap means loss (channel layer
  drop, or conflation here); the client resyncs from REST (``/orderbook`` returns the same ``seq``).
- ``orderbooks``: subscribing sends a snapshot (``"r": true``) with the book's ``seq``; deltas with a lower or
  equal ``seq`` are dropped, later ones follow in order (a level with ``"s": "0"`` is removed).
- Fan-out: connections do not join channel-layer groups themselves. The process's ``hub.FanoutHub`` is the one
  member per group, serializes each update once and hands it to the subscribed connections (``deliver``), then
  sends each of them one frame (``flush``).
- Conflation: outgoing messages (already serialized) wait in one dict per connection keyed by (channel,
  symbol[, side, price]); a newer message replaces an unsent older one (moved to the end, so order by ``seq``
  is kept). The buffer is bounded by the number of keys, never by the message rate. Everything pending goes as
  one array frame: from the hub's flush for data, from the connection's writer task for control messages and
  after a backlog pause.
- Slow clients: daphne's ``websocket.send`` never blocks, so a client that does not read makes Twisted buffer
  without bound. Before each frame the writer reads the transport's unsent bytes (ASGI extension
  ``x-brokerage.write-backlog``, provided by deploy/ws_server.py). Above ``MARKETDATA_WS_MAX_BACKLOG_BYTES`` it
  sends nothing and lets ``pending`` conflate (the client gets only the latest state, with ``seq`` gaps, once it
  catches up); if the backlog is still above the limit after ``MARKETDATA_WS_SLOW_CLIENT_SECONDS``, the client
  gets Alpaca's ``[{"T":"error","code":407,"msg":"slow client"}]`` and close code 4407. As Alpaca documents,
  the 407 may not arrive: the close handshake times out (ws_server ``--close-handshake-timeout``) and the TCP
  connection is aborted, which frees its buffer. So per connection the server holds at most the limit plus one
  frame, plus ``pending`` (bounded by keys). Without the extension (another ASGI server) there is no bound.
- Draining (SIGTERM, ``apps.core.health.is_draining``): new connections are refused at the handshake; open ones
  keep streaming until the server closes them with 1012.
- Origin: a browser ``Origin`` not in ``MARKETDATA_WS_ALLOWED_ORIGINS`` is refused at the handshake; programs
  (no Origin) are allowed. Connections that do not authenticate within ``MARKETDATA_WS_AUTH_TIMEOUT`` seconds,
  or fail auth, are closed. A user may hold several connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import HttpRequest
from prometheus_client import Counter
from rest_framework.exceptions import APIException
from rest_framework.request import Request

from apps.core.health import is_draining
from apps.marketdata import selectors, shapes
from apps.marketdata.cache import RedisUnavailable
from apps.marketdata.hub import hub_for
from apps.marketdata.stream import CHANNELS, group_name

logger = logging.getLogger(__name__)

SUB_NAMES = tuple(CHANNELS)  # trades, quotes, bars, orderbooks
_SUB_NAME = {c: n for n, c in CHANNELS.items()}  # channel code -> subscription name
MAX_SYMBOLS_PER_CHANNEL = 1000
CLOSE_CODE_BASE = 4000  # the close code after an error is 4000 + its Alpaca code: 4402, 4404, 4407
BACKLOG_EXTENSION = "x-brokerage.write-backlog"  # set by deploy/ws_server.py
PREPARED_EXTENSION = "x-brokerage.prepared-text"  # set by deploy/ws_server.py: frame once, send to many
BACKLOG_POLL_S = 0.05  # while a client is over its backlog limit: how often to look again

BACKPRESSURE_PAUSES = Counter(
    "marketdata_ws_backpressure_pauses", "Data stream writes held back (conflating) because a client is slow"
)
SLOW_CLIENT_CLOSES = Counter(
    "marketdata_ws_slow_client_closes", "Data stream connections closed with 407 slow client"
)


def api_key_user(key: str, secret: str) -> Any | None:
    """The user behind an API key pair, through the accounts app's DRF authentication (headers form)."""
    from apps.accounts.authentication import ApiKeyAuthentication

    django_request = HttpRequest()
    django_request.method = "GET"
    django_request.META = {"HTTP_APCA_API_KEY_ID": key, "HTTP_APCA_API_SECRET_KEY": secret}
    try:
        result = ApiKeyAuthentication().authenticate(Request(django_request))
    except APIException:
        return None
    return None if result is None else result[0]


def _error(code: int, msg: str) -> dict[str, Any]:
    return {"T": "error", "code": code, "msg": msg}


Pending = tuple[dict[str, Any], str]  # (message, its JSON text)


class MarketDataStreamConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        headers = {k.decode().lower(): v.decode() for k, v in self.scope.get("headers", [])}
        origin = headers.get("origin")
        allowed = set(getattr(settings, "MARKETDATA_WS_ALLOWED_ORIGINS", []))
        if (origin is not None and origin not in allowed) or is_draining():
            await self.close(code=4003)  # before accept: the handshake is refused (HTTP 403)
            return
        self.user: Any | None = None
        self.subs: dict[str, set[str]] = {name: set() for name in SUB_NAMES}
        self.floors: dict[str, int] = {}
        self.pending: dict[tuple[Any, ...], Pending] = {}
        self.ctl_n = 0
        self.wake = asyncio.Event()
        self.closed = False
        self.held = False  # over the backlog limit: only the writer task sends, once the backlog drained
        # Looked up once, not per frame (the fan-out's per-connection path runs thousands of times per tick).
        extensions = self.scope.get("extensions") or {}
        probe = extensions.get(BACKLOG_EXTENSION)
        self.backlog_probe: Callable[[], int | None] | None = None if probe is None else probe["bytes"]
        self.backlog_limit = int(getattr(settings, "MARKETDATA_WS_MAX_BACKLOG_BYTES", 1 << 20))
        self.prepared_ext: dict[str, Any] | None = extensions.get(PREPARED_EXTENSION)
        await self.accept()
        self.writer = asyncio.create_task(self._writer())
        self.auth_timer = asyncio.create_task(self._auth_deadline())
        self._ctl({"T": "success", "msg": "connected"})

    async def disconnect(self, code: int) -> None:
        self.closed = True
        for task in (getattr(self, "writer", None), getattr(self, "auth_timer", None)):
            if task is not None:
                task.cancel()
        for name, symbols in getattr(self, "subs", {}).items():
            for symbol in symbols:
                await self._leave(group_name(CHANNELS[name], symbol))

    # ---------------------------------------------------------------- group membership (the process's hub)
    async def _join(self, group: str) -> None:
        await hub_for(self.channel_layer).join(group, self)

    async def _leave(self, group: str) -> None:
        await hub_for(self.channel_layer).leave(group, self)

    # ---------------------------------------------------------------- outgoing
    def _ctl(self, message: dict[str, Any]) -> None:
        self.ctl_n += 1
        self.pending[("ctl", self.ctl_n)] = (message, orjson.dumps(message).decode())
        self.wake.set()

    def _data(self, key: tuple[Any, ...], message: dict[str, Any], text: str | None = None) -> None:
        if self.closed:
            return
        self.pending.pop(key, None)  # re-insert at the end: the newest state, in seq order
        self.pending[key] = (message, orjson.dumps(message).decode() if text is None else text)

    def _backlog_bytes(self) -> int | None:
        return None if self.backlog_probe is None else self.backlog_probe()

    async def flush(self, prepared: dict[str, Any] | None = None) -> None:
        """Send everything pending as one frame; over the backlog limit, hand over to the writer task instead.

        ``prepared``: the hub's frames of this flush round by text, shared by every connection that sends the
        same text (each tick's frame is framed once, not once per connection; ``PREPARED_EXTENSION``).
        """
        if self.closed or self.held or not self.pending:
            return
        backlog = self._backlog_bytes()
        if backlog is not None and backlog > self.backlog_limit:
            self.held = True
            self.wake.set()
            return
        frame = "[" + ",".join(text for _message, text in self.pending.values()) + "]"
        self.pending.clear()
        ext = self.prepared_ext
        if ext is not None and prepared is not None:
            message = prepared.get(frame)
            if message is None:
                message = prepared[frame] = ext["prepare"](frame)
            if ext["send"](message):
                return
        await self.send(text_data=frame)

    async def _backlog_ok(self) -> bool:
        """Wait (conflating) while the client is over its backlog limit; False if it was closed as slow."""
        limit = self.backlog_limit
        backlog = self._backlog_bytes()
        if backlog is None or backlog <= limit:
            return True
        BACKPRESSURE_PAUSES.inc()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(getattr(settings, "MARKETDATA_WS_SLOW_CLIENT_SECONDS", 10))
        while not self.closed:
            await asyncio.sleep(BACKLOG_POLL_S)
            backlog = self._backlog_bytes()
            if backlog is None or backlog <= limit:
                return True
            if loop.time() >= deadline:
                SLOW_CLIENT_CLOSES.inc()
                logger.info("closing slow data stream client: %d bytes unsent", backlog)
                await self._close_with(407, "slow client")
                return False
        return False

    async def _writer(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            if not self.pending:
                continue
            if not await self._backlog_ok():
                return
            self.held = False
            await self.flush()
            await asyncio.sleep(0)  # let updates accumulate (conflate) while the loop is busy

    async def _close_with(self, code: int, msg: str) -> None:
        # Nothing more is queued for this socket; the error is its last message.
        self.closed = True
        self.pending.clear()
        await self.send(text_data=orjson.dumps([_error(code, msg)]).decode())
        # 4000 + the Alpaca code: daphne (Autobahn) lets an application close only with 1000 or 3000-4999, so
        # 1008 would crash the consumer and reach the client as 1011.
        await self.close(code=CLOSE_CODE_BASE + code)

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(float(getattr(settings, "MARKETDATA_WS_AUTH_TIMEOUT", 10)))
        if self.user is None and not self.closed:
            await self._close_with(404, "auth timeout")

    # ---------------------------------------------------------------- incoming
    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            msg = orjson.loads(text_data if text_data is not None else bytes_data or b"")
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("action"), str):
            self._ctl(_error(400, "invalid syntax"))
            return
        action = msg["action"]
        if action == "auth":
            await self._auth(msg)
        elif action in ("subscribe", "unsubscribe"):
            if self.user is None:
                self._ctl(_error(401, "not authenticated"))
                return
            await self._subscription(msg, subscribe=action == "subscribe")
        else:
            self._ctl(_error(400, "invalid syntax"))

    async def _auth(self, msg: dict[str, Any]) -> None:
        if self.user is not None:
            self._ctl(_error(403, "already authenticated"))
            return
        key, secret = msg.get("key"), msg.get("secret")
        user: Any | None = None
        if isinstance(key, str) and isinstance(secret, str) and key:
            user = await database_sync_to_async(api_key_user)(key, secret)
        else:
            session_user = self.scope.get("user")
            if session_user is not None and session_user.is_authenticated:
                user = session_user
        if user is None:
            await self._close_with(402, "auth failed")
            return
        self.user = user
        self.auth_timer.cancel()
        self._ctl({"T": "success", "msg": "authenticated"})

    async def _subscription(self, msg: dict[str, Any], *, subscribe: bool) -> None:
        requested: dict[str, list[str]] = {}
        for name in SUB_NAMES:
            raw = msg.get(name, [])
            if not isinstance(raw, list) or not all(isinstance(s, str) for s in raw):
                self._ctl(_error(400, "invalid syntax"))
                return
            requested[name] = sorted({s if s == "*" else s.upper() for s in raw})
        snapshots: list[str] = []
        for name, symbols in requested.items():
            channel, current = CHANNELS[name], self.subs[name]
            for symbol in symbols:
                if subscribe and symbol not in current:
                    if len(current) >= MAX_SYMBOLS_PER_CHANNEL:
                        self._ctl(_error(405, "symbol limit exceeded"))
                        break
                    current.add(symbol)
                    await self._join(group_name(channel, symbol))
                    if name == "orderbooks" and symbol != "*":
                        snapshots.append(symbol)
                elif not subscribe and symbol in current:
                    current.discard(symbol)
                    if name == "orderbooks":
                        self.floors.pop(symbol, None)
                    await self._leave(group_name(channel, symbol))
        self._ctl({"T": "subscription", **{name: sorted(self.subs[name]) for name in SUB_NAMES}})
        for symbol in snapshots:
            await self._book_snapshot(symbol)

    async def _book_snapshot(self, symbol: str) -> None:
        try:
            book = await sync_to_async(selectors.orderbook, thread_sensitive=False)(symbol)
        except RedisUnavailable:
            self._ctl(_error(503, f"orderbook snapshot unavailable for {symbol}"))
            return
        floor = book["seq"]
        self.floors[symbol] = floor
        # Deltas that raced ahead of the snapshot: drop the ones it already contains, keep later ones after it.
        later = {k: m for k, m in self.pending.items() if k[:2] == ("o", symbol) and m[0]["seq"] > floor}
        for k in [k for k in self.pending if k[:2] == ("o", symbol)]:
            del self.pending[k]
        snapshot = {
            "T": "o",
            "S": symbol,
            "t": shapes.rfc3339(datetime.now(UTC)),
            "b": [{"p": lvl["p"], "s": lvl["s"]} for lvl in book["b"]],
            "a": [{"p": lvl["p"], "s": lvl["s"]} for lvl in book["a"]],
            "r": True,
            "book_seq": book["book_seq"],
            "seq": floor,
        }
        self._data(("o", symbol, "snapshot"), snapshot)
        for k, (m, text) in later.items():
            self._data(k, m, text)
        self.wake.set()

    # ---------------------------------------------------------------- from the hub
    def deliver(self, event: dict[str, Any], text: str) -> bool:
        """Filter and queue one update (``text`` = its message serialized); True if it was queued."""
        if self.closed:
            return False
        channel, symbol, msg = event["ch"], event["S"], event["msg"]
        subs = self.subs[_SUB_NAME[channel]]
        if "*" in subs:
            if event.get("via") != "all":
                return False
        elif event.get("via") != "symbol" or symbol not in subs:
            return False
        if channel == "o":
            floor = self.floors.get(symbol)
            if floor is not None and msg["seq"] <= floor:
                return False
            side = "b" if "b" in msg else "a"
            self._data(("o", symbol, side, msg[side][0]["p"]), msg, text)
        else:
            self._data((channel, symbol), msg, text)
        return True
