"""The ws process: daphne with a graceful drain on SIGTERM and a write-backlog probe for the consumers.

Usage (daphne's own command line, plus three options)::

    python deploy/ws_server.py --bind 0.0.0.0 --port 8001 --proxy-headers \\
        [--drain-seconds 30] [--close-grace-seconds 10] [--close-handshake-timeout 5] brokerage.asgi:application

Shutdown (issue #8), the same contract as the web tier (deploy/gunicorn.conf.py):

1. SIGTERM (or SIGINT): ``apps.core.health.draining_begin()`` — ``/readyz`` answers 503 with
   ``"draining": true`` from now on, ``/healthz`` stays 200; new WebSocket handshakes are refused by the
   consumers; open connections keep streaming. The listener stays open so probes still get an answer.
2. After ``--drain-seconds`` (or at once on a second SIGTERM/SIGINT): every open WebSocket gets a close frame
   with code 1012 ("service restart", RFC 6455 §7.4.1 via the IANA registry) — clients reconnect, and the load
   balancer sends them to another task.
3. The process stops when the last WebSocket finished its closing handshake, or ``--close-grace-seconds``
   after step 2 at the latest; the application instances then get up to another grace period to finish their
   cancellation, and the process exits 0 without waiting for executor threads (a request cut off at shutdown
   leaves one blocked for good: seen in a 2,000-client bench run). drain + 2 × grace must stay below the ECS
   ``stopTimeout`` (60 s for ws): the defaults are 30 + 2 × 10.

Backpressure (issue #6): every WebSocket scope gets the ASGI extension ``x-brokerage.write-backlog`` =
``{"bytes": callable}``; the callable returns how many bytes this connection's Twisted transport holds that the
kernel has not taken yet (the client is not reading), or ``None`` if unknown. daphne's ``websocket.send`` never
blocks, so without this probe a consumer cannot see a slow client at all. Under another server the extension
is absent and consumers fall back to no bound (``apps.marketdata.ws`` documents the policy).

Broadcast (market data fan-out): every WebSocket scope also gets ``x-brokerage.prepared-text`` =
``{"prepare": callable(text) -> message, "send": callable(message) -> bool}``: Autobahn's public
``prepareMessage`` / ``sendPreparedMessage``, so a frame sent to many connections is encoded and framed once
(``apps.marketdata.hub``). ``send`` returns False when the connection is not open; the caller then falls back to
``websocket.send``. A connection that negotiated compression gets the message compressed as usual (Autobahn).

Writes: Twisted's ``FileDescriptor.write`` buffers every write until the reactor reports the socket writable: an
epoll registration, a second pass of the loop and a deregistration per frame, which was about half of the ws
process's samples in the 1,000-client fan-out (py-spy). ``write_now`` wraps each WebSocket transport's ``write``:
while Twisted's buffer is empty, the bytes go to the kernel at once; what the kernel does not take goes
through Twisted's buffer as before (so order is kept, and the backlog probe still sees a slow client).

Invariant: Twisted's asyncio reactor must be installed before anything imports ``twisted.internet.reactor``,
so ``daphne.server`` is imported first, and Django (via the application) only after.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from functools import partial
from pathlib import Path
from typing import Any, cast

import daphne.server  # isort:skip  (installs the asyncio reactor)
from daphne.cli import CommandLineInterface
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer
from twisted.internet import reactor as _reactor

reactor: Any = cast(Any, _reactor)  # the installed asyncio reactor; Twisted's stubs type the module, not it
logger = logging.getLogger("brokerage.ws_server")

BACKLOG_EXTENSION = "x-brokerage.write-backlog"
PREPARED_EXTENSION = "x-brokerage.prepared-text"
CLOSE_SERVICE_RESTART = 1012


def transport_backlog_bytes(protocol: Any) -> int | None:
    """Bytes written to this connection's transport and not yet taken by the kernel (Twisted's buffer)."""
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return 0
    try:
        return _unsent_bytes(transport)
    except AttributeError:  # a wrapping transport (TLS): unknown, so no bound is applied
        return None


def _unsent_bytes(transport: Any) -> int:
    """twisted.internet.abstract.FileDescriptor: a flushed buffer plus the pending writes."""
    return len(transport.dataBuffer) - int(transport.offset) + int(transport._tempDataLen)


def write_now(transport: Any, buffered_write: Any, data: bytes) -> None:
    """``transport.write``, sending at once while nothing is buffered (see the module docstring)."""
    if (
        transport.connected
        and not transport.disconnecting
        and not getattr(transport, "_writeDisconnected", True)
        and not getattr(transport, "TLS", True)
        and _unsent_bytes(transport) == 0
    ):
        try:
            sent = transport.socket.send(data)
        except OSError:  # would block, or a broken connection: Twisted's own write path finds and reports it
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    buffered_write(data)


def prepared_send(protocol: Any, prepared: Any) -> bool:
    """Send a message made by ``prepare`` on this connection; False (nothing sent) unless the socket is open."""
    if protocol.state != protocol.STATE_OPEN:
        return False
    if protocol._perMessageCompress is None and not protocol.send_queue:
        # What sendPreparedMessage does on an uncompressed connection, without the debug-log arguments Autobahn's
        # sendData formats on every call (about a tenth of the fan-out's CPU in py-spy).
        protocol.transport.write(prepared.payloadHybi)
    else:
        protocol.sendPreparedMessage(prepared)
    return True


class DrainingServer(daphne.server.Server):  # type: ignore[misc]
    """daphne's Server that drains on SIGTERM instead of stopping the reactor at once."""

    def __init__(
        self,
        *args: Any,
        drain_seconds: float = 30.0,
        close_grace_seconds: float = 10.0,
        close_handshake_timeout: float = 5.0,
        **kwargs: Any,
    ) -> None:
        kwargs["signal_handlers"] = False  # ours replace Twisted's (which stop the reactor immediately)
        super().__init__(*args, **kwargs)
        self.drain_seconds = drain_seconds
        self.close_grace_seconds = close_grace_seconds
        self.close_handshake_timeout = close_handshake_timeout
        self.draining = False
        self.restart_sent = False
        self._drain_call: Any = None
        self._stopping = False

    def run(self) -> None:
        reactor.callWhenRunning(self._started)
        super().run()

    def _started(self) -> None:
        # Everything loaded so far (Django, the application, its modules) lives as long as the process: keep it
        # out of the garbage collector's full passes, which otherwise traverse it on every one (a 0.65 s pause
        # was measured in the 2,000-client fan-out; tick-to-client latency takes every pause in full).
        from apps.core.runtime import heap_freeze  # the project is on sys.path once the app is loaded

        heap_freeze()
        # How long a closed-by-us connection may take to answer the close frame before the TCP connection is
        # aborted: this is what frees a slow client's buffer (Autobahn's default is 1 s).
        self.ws_factory.setProtocolOptions(closeHandshakeTimeout=self.close_handshake_timeout)
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.drain_begin)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket":
            extensions = dict(scope.get("extensions") or {})
            extensions[BACKLOG_EXTENSION] = {"bytes": partial(transport_backlog_bytes, protocol)}
            transport = protocol.transport
            if transport is not None and hasattr(transport, "dataBuffer") and hasattr(transport, "socket"):
                transport.write = partial(write_now, transport, transport.write)
            extensions[PREPARED_EXTENSION] = {
                "prepare": lambda text: self.ws_factory.prepareMessage(text.encode()),
                "send": partial(prepared_send, protocol),
            }
            scope["extensions"] = extensions
        return super().create_application(protocol, scope)

    # ------------------------------------------------------------------ shutdown
    def websockets_open(self) -> list[Any]:
        return [
            p
            for p, details in self.connections.items()
            if isinstance(p, WebSocketProtocol) and "disconnected" not in details
        ]

    def drain_begin(self) -> None:
        if self.draining:  # a second signal: do not wait for the rest of the drain period
            self.restart_notify()
            return
        self.draining = True
        from apps.core.health import draining_begin

        draining_begin()
        logger.info(
            "draining: /readyz is 503, %d WebSocket(s) open, restart notice in %ss",
            len(self.websockets_open()),
            self.drain_seconds,
        )
        self._drain_call = reactor.callLater(self.drain_seconds, self.restart_notify)

    def restart_notify(self) -> None:
        if self.restart_sent:
            return
        self.restart_sent = True
        if self._drain_call is not None and self._drain_call.active():
            self._drain_call.cancel()
        sockets = self.websockets_open()
        logger.info("closing %d WebSocket(s) with 1012 service restart", len(sockets))
        for protocol in sockets:
            try:
                if protocol.state == protocol.STATE_OPEN:
                    # sendClose() allows applications only 1000 and 3000-4999; 1012 is a server's code, so the
                    # frame goes out one level lower (as daphne itself sends 1011).
                    protocol.sendCloseFrame(code=CLOSE_SERVICE_RESTART, reasonUtf8=b"service restart")
                else:  # still in the handshake or already closing: nothing to tell, just go
                    protocol.dropConnection(abort=True)
            except Exception:  # one broken connection must not keep the others from being told
                logger.exception("could not close %r", protocol)
        reactor.callLater(self.close_grace_seconds, self.stop)
        self._stop_when_closed()

    def _stop_when_closed(self) -> None:
        if self._stopping:
            return
        if not self.websockets_open():
            self.stop()
            return
        reactor.callLater(0.1, self._stop_when_closed)

    def kill_all_applications(self) -> Any:
        """daphne's cancel-and-wait, bounded: a consumer stuck in its cancellation cleanup (seen with ~2,000
        channels-redis pub/sub consumers at once) would otherwise hold the reactor's shutdown, and the process,
        until ECS's SIGKILL."""
        waiting = super().kill_all_applications()
        done: defer.Deferred[None] = defer.Deferred()

        def finish(_: object = None) -> None:
            if not done.called:
                done.callback(None)

        def give_up() -> None:
            if not done.called:
                stuck = sum(
                    1
                    for d in self.connections.values()
                    if d.get("application_instance") is not None and not d["application_instance"].done()
                )
                logger.warning("%d application instance(s) still finishing; exiting anyway", stuck)
                done.callback(None)

        waiting.addBoth(finish)
        reactor.callLater(self.close_grace_seconds, give_up)
        return done

    def stop(self) -> None:
        if self._stopping:  # the grace timer and the last close may both get here
            return
        self._stopping = True
        logger.info("ws server stopping")
        super().stop()


class DrainingCommandLineInterface(CommandLineInterface):  # type: ignore[misc]
    server_class: Any = DrainingServer

    def __init__(self) -> None:
        super().__init__()
        env = os.environ
        self.parser.add_argument(
            "--drain-seconds",
            type=float,
            default=float(env.get("WS_DRAIN_SECONDS", "30")),
            help="seconds between SIGTERM (readiness 503) and the 1012 close sent to every WebSocket",
        )
        self.parser.add_argument(
            "--close-grace-seconds",
            type=float,
            default=float(env.get("WS_CLOSE_GRACE_SECONDS", "10")),
            help="seconds after the 1012 close before the process exits regardless",
        )
        self.parser.add_argument(
            "--close-handshake-timeout",
            type=float,
            default=float(env.get("WS_CLOSE_HANDSHAKE_TIMEOUT", "5")),
            help="seconds a client has to answer a close frame before its TCP connection is aborted",
        )
        self._extra: dict[str, float] = {}

    def run(self, args: list[str]) -> None:
        known, _ = self.parser.parse_known_args(args)
        self._extra = {
            "drain_seconds": known.drain_seconds,
            "close_grace_seconds": known.close_grace_seconds,
            "close_handshake_timeout": known.close_handshake_timeout,
        }
        self.server_class = partial(DrainingServer, **self._extra)
        super().run(args)


def main(argv: list[str] | None = None) -> None:
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "brokerage.settings.local")
    DrainingCommandLineInterface().run(sys.argv[1:] if argv is None else argv)
    # The reactor has stopped and every connection is closed. A sync view cut off mid-request (a probe or REST
    # call in flight at shutdown) leaves an executor thread waiting forever for the stopped event loop, and the
    # interpreter would join it at exit: flush the logs and leave without that join.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
