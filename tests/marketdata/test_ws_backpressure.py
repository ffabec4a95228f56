"""Issue #6, slow consumers: a client that stops reading is bounded, then dropped with 407; others keep receiving.

Against the real ws process (deploy/ws_server.py → daphne → Redis pub/sub channel layer). The feed is this test
process publishing through ``apps.marketdata.stream`` (the path the ``marketdata`` consumer uses), with symbols
unique to the run (Redis pub/sub ignores DB numbers, so other runs on the same server must not reach us).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
import websockets.exceptions
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from websockets.sync.client import ClientConnection, connect

from apps.accounts.services import api_key_create
from apps.marketdata.stream import Update, publish, publisher
from apps.orders.projection import group_name
from tests.marketdata.live_ws import RawWebSocket, ws_process
from tests.orders.factories import funded_account

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 64 * 1024
PAD = "x" * 16 * 1024
SYMBOLS = [f"ZQ{uuid.uuid4().hex[:5].upper()}{i}" for i in range(20)]


class Reader(threading.Thread):
    """Reads a normal client's stream as fast as it comes: the trade ``seq`` values seen, and how it ended."""

    def __init__(self, client: ClientConnection) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.seqs: dict[str, list[int]] = {s: [] for s in SYMBOLS}
        self.marked: set[str] = set()
        self.marker = threading.Event()  # every symbol's marker trade arrived
        self.closed: websockets.exceptions.ConnectionClosed | None = None

    def run(self) -> None:
        try:
            for raw in self.client:
                for message in orjson.loads(raw):
                    if message.get("T") == "t":
                        self.seqs[message["S"]].append(message["seq"])
                        if message.get("marker"):
                            self.marked.add(message["S"])
                            if len(self.marked) == len(SYMBOLS):
                                self.marker.set()
        except websockets.exceptions.ConnectionClosed as exc:
            self.closed = exc


def _publish_round(seq: int, **extra: Any) -> int:
    """One trade per symbol; returns the bytes published (the message's JSON size)."""
    updates = [Update("t", s, {"T": "t", "S": s, "i": seq, "seq": seq, "pad": PAD, **extra}) for s in SYMBOLS]
    publish(updates)
    publisher().flush()
    return sum(len(orjson.dumps(u.message)) for u in updates)


def test_slow_client_is_bounded_then_closed_407_while_a_normal_client_keeps_receiving(tmp_path: Path) -> None:
    owner = get_user_model().objects.create_user(
        username="ws-slow", email="slow@example.com", password="x" * 16
    )
    key, secret = api_key_create(owner=owner, name="stream", scopes=["read"])
    auth = {"action": "auth", "key": key.key_id, "secret": secret}
    subscribe = {"action": "subscribe", "trades": SYMBOLS}
    env = {"MARKETDATA_WS_MAX_BACKLOG_BYTES": str(LIMIT), "MARKETDATA_WS_SLOW_CLIENT_SECONDS": "1"}
    # The slow client must still find its 407 when it finally reads: a long close handshake timeout here.
    with (
        ws_process(tmp_path, "--close-handshake-timeout", "300", env=env) as ws,
        connect(ws.ws + "/v2/test", open_timeout=30, max_size=None) as normal_ws,
    ):
        assert orjson.loads(normal_ws.recv(timeout=30)) == [{"T": "success", "msg": "connected"}]
        normal_ws.send(orjson.dumps(auth).decode())
        assert orjson.loads(normal_ws.recv(timeout=30)) == [{"T": "success", "msg": "authenticated"}]
        normal_ws.send(orjson.dumps(subscribe).decode())
        assert orjson.loads(normal_ws.recv(timeout=30))[0]["T"] == "subscription"
        normal = Reader(normal_ws)
        normal.start()

        slow = RawWebSocket(ws.port, "/v2/test", rcvbuf=4096)
        assert slow.recv_json() == [{"T": "success", "msg": "connected"}]
        slow.send_json(auth)
        assert slow.recv_json() == [{"T": "success", "msg": "authenticated"}]
        slow.send_json(subscribe)
        assert slow.recv_json()[0]["T"] == "subscription"
        read_before_stop = slow.received_bytes  # from here on the slow client reads nothing

        # Publish until the server gives up on the slow client, then as much again: none of it may pile up.
        seq, published = 0, 0
        deadline = time.monotonic() + 180
        while ws.metric("marketdata_ws_slow_client_closes_total") < 1:
            assert time.monotonic() < deadline, ws.log.read_text()[-3000:]
            seq += 1
            published += _publish_round(seq)
        assert ws.metric("marketdata_ws_backpressure_pauses_total") >= 1
        wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        rcvbuf = slow.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        one_batch = len(SYMBOLS) * (len(PAD) + 200)
        # What the server may have handed out: its backlog limit plus the batch that crossed it, the kernel's
        # send buffer (at most tcp_wmem max) and the client's receive buffer; headers and the error: slack.
        bound = LIMIT + one_batch + wmem_max + rcvbuf + 64 * 1024
        while published <= 2 * bound:
            seq += 1
            published += _publish_round(seq)
        seq += 1
        _publish_round(seq, marker=True)

        # The normal client got everything up to the marker and is still connected.
        assert normal.marker.wait(120), ws.log.read_text()[-3000:]
        assert normal.closed is None
        assert all(seqs and seqs[-1] == seq for seqs in normal.seqs.values())

        # Now the slow client reads what was sent to it: old data, the 407, and the close frame.
        texts: list[list[dict[str, Any]]] = []
        while True:
            opcode, payload = slow.recv_frame()
            if opcode == 0x1:
                texts.append(orjson.loads(payload))
            elif opcode == 0x8:
                close_code = struct.unpack("!H", payload[:2])[0]
                break
        slow.close()
        assert texts[-1] == [{"T": "error", "code": 407, "msg": "slow client"}]
        assert close_code == 4407
        got = slow.received_bytes - read_before_stop
        assert got <= bound < published / 2
        slow_seqs = sorted({m["seq"] for batch in texts[:-1] for m in batch if m["S"] == SYMBOLS[0]})
        assert slow_seqs
        assert slow_seqs[-1] < seq  # it never saw the end: dropped, not queued
        normal_ws.close()
        normal.join(30)


def test_closing_errors_reach_the_client_through_daphne_as_4000_plus_code(tmp_path: Path) -> None:
    # Autobahn refuses an application close code like 1008 (the consumer would crash and the client see 1011).
    with ws_process(tmp_path) as ws, connect(ws.ws + "/v2/test", open_timeout=30) as client:
        assert orjson.loads(client.recv(timeout=30)) == [{"T": "success", "msg": "connected"}]
        client.send(orjson.dumps({"action": "auth", "key": "PKNOSUCHKEY", "secret": "wrong"}).decode())
        assert orjson.loads(client.recv(timeout=30)) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
            client.recv(timeout=30)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4402


def test_slow_trade_updates_client_is_closed_4407_not_buffered(tmp_path: Path) -> None:
    account = funded_account(cash=Decimal(0))
    key, secret = api_key_create(owner=account.owner, name="ws", scopes=["read", "trade"])
    env = {"MARKETDATA_WS_MAX_BACKLOG_BYTES": str(LIMIT)}
    with ws_process(tmp_path, "--close-handshake-timeout", "300", env=env) as ws:
        slow = RawWebSocket(ws.port, "/stream", rcvbuf=4096)
        slow.send_json({"action": "authenticate", "data": {"key_id": key.key_id, "secret_key": secret}})
        assert orjson.loads(slow.recv_frame()[1])["data"]["status"] == "authorized"
        slow.send_json({"action": "listen", "data": {"streams": ["trade_updates"]}})
        assert orjson.loads(slow.recv_frame()[1]) == {
            "stream": "listening",
            "data": {"streams": ["trade_updates"]},
        }
        read_before_stop = slow.received_bytes

        async def flood() -> int:
            layer = get_channel_layer()
            assert layer is not None
            n, deadline = 0, time.monotonic() + 180
            while await asyncio.to_thread(ws.metric, "trade_updates_ws_slow_client_closes_total") < 1:
                assert time.monotonic() < deadline, ws.log.read_text()[-3000:]
                for _ in range(20):
                    n += 1
                    data = {"event": "fill", "seq": n, "pad": PAD}
                    await layer.group_send(
                        group_name(str(account.id)), {"type": "trade.update", "data": data}
                    )
            return n

        sent = async_to_sync(flood)()
        seqs: list[int] = []
        while True:
            opcode, payload = slow.recv_frame()
            if opcode == 0x1:
                seqs.append(orjson.loads(payload)["data"]["seq"])
            elif opcode == 0x8:
                assert struct.unpack("!H", payload[:2])[0] == 4407
                break
        slow.close()
        # In order, without a gap up to where the server stopped; then nothing more was queued for it.
        assert seqs == list(range(1, len(seqs) + 1))
        assert len(seqs) < sent
        wmem_max = int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
        assert slow.received_bytes - read_before_stop <= LIMIT + wmem_max + 4 * len(PAD) + 64 * 1024
