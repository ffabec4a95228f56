"""A real ws process (deploy/ws_server.py → daphne) on a free port; a raw WebSocket client that can stop reading.

``ws_process`` starts the launcher with this test run's database (the pytest test database, so rows a
``transaction=True`` test commits are visible to it), Redis DBs and settings; extra ``env`` overrides settings
(e.g. ``MARKETDATA_WS_SLOW_CLIENT_SECONDS``). ``RawWebSocket`` speaks just enough RFC 6455 to shake hands, send
masked text frames and parse the server's frames, over a socket whose receive buffer is set before connecting.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WsProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=30) as response:  # noqa: S310 (our own URL)
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def metric(self, name: str) -> float:
        """One unlabelled sample from the process's /metrics (0 if absent)."""
        _, body = self.get("/metrics")
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0


@contextmanager
def ws_process(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[WsProcess]:
    db = settings.DATABASES["default"]
    port = free_port()
    log = tmp_path / f"ws-{port}.log"
    full_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "brokerage.settings.test",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        **(env or {}),
    }
    cmd = [sys.executable, "deploy/ws_server.py", "-b", "127.0.0.1", "-p", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*cmd, "brokerage.asgi:application"], cwd=ROOT, env=full_env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"ws server did not start: {log.read_text()}") from None
                time.sleep(0.2)
        yield WsProcess(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


class RawWebSocket:
    """A blocking client over a plain socket: nothing is read unless ``recv_frame`` is called."""

    def __init__(self, port: int, path: str, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the advertised window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.decode(errors="replace"))
        self.received_bytes = 0

    def send_json(self, message: dict[str, Any]) -> None:
        payload = orjson.dumps(message)
        mask = os.urandom(4)
        n = len(payload)
        header = bytes([0x81]) + (
            bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.received_bytes += len(chunk)
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame (the server sends unfragmented, unmasked frames)."""
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read(8))
        return b0 & 0x0F, self._read(n)

    def recv_json(self) -> list[dict[str, Any]]:
        while True:
            opcode, payload = self.recv_frame()
            if opcode == 0x1:
                result: list[dict[str, Any]] = orjson.loads(payload)
                return result
            if opcode == 0x8:
                raise ConnectionError(f"closed {struct.unpack('!H', payload[:2])[0] if payload else None}")

    def close(self) -> None:
        self.sock.close()
