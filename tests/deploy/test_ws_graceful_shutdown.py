"""Issue #8, the ws process: SIGTERM drains (readyz 503 while streams continue), then close 1012, then exit 0.

The real launcher (deploy/ws_server.py → daphne) runs as a subprocess; clients are the ``websockets`` package.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
import websockets.exceptions
from django.contrib.auth import get_user_model
from websockets.sync.client import ClientConnection, connect

from apps.accounts.services import api_key_create
from tests.marketdata.live_ws import WsProcess, ws_process

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def _stream_client(ws: WsProcess) -> Iterator[ClientConnection]:
    owner = get_user_model().objects.create_user(
        username="ws-drain", email="drain@example.com", password="x" * 16
    )
    key, secret = api_key_create(owner=owner, name="stream", scopes=["read"])
    with connect(ws.ws + "/v2/test", open_timeout=30) as client:
        assert orjson.loads(client.recv(timeout=30)) == [{"T": "success", "msg": "connected"}]
        client.send(orjson.dumps({"action": "auth", "key": key.key_id, "secret": secret}).decode())
        assert orjson.loads(client.recv(timeout=30)) == [{"T": "success", "msg": "authenticated"}]
        yield client


def _wait_draining(ws: WsProcess) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        status, body = ws.get("/readyz")
        if status == 503 and orjson.loads(body)["draining"] is True:
            return dict(orjson.loads(body))
        assert time.monotonic() < deadline, (status, body)
        time.sleep(0.1)


def _close_code(client: ClientConnection) -> tuple[int | None, str | None]:
    """Read until the server closes (a TimeoutError fails the test); the close frame's code and reason."""
    try:
        while True:
            client.recv(timeout=60)
    except websockets.exceptions.ConnectionClosed as closed:
        rcvd = closed.rcvd
        return (rcvd.code, rcvd.reason) if rcvd is not None else (None, None)


def test_sigterm_drains_keeps_streams_then_closes_1012_and_exits_0(tmp_path: Path) -> None:
    # A drain period no test would wait for: the second SIGTERM ends it, so nothing here depends on timing.
    with ws_process(tmp_path, "--drain-seconds", "600", "--close-grace-seconds", "60") as ws:
        status, body = ws.get("/readyz")
        assert (status, orjson.loads(body)["draining"]) == (200, False)
        with _stream_client(ws) as client:
            ws.proc.send_signal(signal.SIGTERM)
            assert _wait_draining(ws)["status"] == "not_ready"
            assert ws.get("/healthz")[0] == 200
            # The open stream is still served: a request gets its answer on the same socket.
            client.send(orjson.dumps({"action": "subscribe", "trades": ["AAPL"]}).decode())
            assert orjson.loads(client.recv(timeout=30))[0]["T"] == "subscription"
            # New handshakes, on either stream, are refused: the load balancer's other tasks take them.
            for path in ("/v2/test", "/stream"):
                with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
                    connect(ws.ws + path, open_timeout=30).close()
                assert refused.value.response.status_code == 403
            assert ws.proc.poll() is None

            ws.proc.send_signal(signal.SIGTERM)  # the second one: tell clients now
            assert _close_code(client) == (1012, "service restart")
        assert ws.proc.wait(60) == 0


def test_drain_period_ends_on_its_own_with_1012_and_exit_0(tmp_path: Path) -> None:
    with ws_process(tmp_path, "--drain-seconds", "1", "--close-grace-seconds", "60") as ws:
        with _stream_client(ws) as client:
            ws.proc.send_signal(signal.SIGTERM)
            assert _close_code(client) == (1012, "service restart")
        assert ws.proc.wait(60) == 0
        log = ws.log.read_text()
        assert "draining: /readyz is 503, 1 WebSocket(s) open" in log
        assert "closing 1 WebSocket(s) with 1012 service restart" in log
