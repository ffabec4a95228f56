"""A tiny round-robin HTTP reverse proxy for loopback checks (standard library only).

Each request goes to the next backend in turn (never sticky: there is no session affinity to hide a stateful
web tier) and the response carries ``X-Backend: host:port`` so a client can see who answered. One upstream
connection per request; bodies are buffered (fine for API-sized requests). Hop-by-hop headers are dropped.

    python -m deploy.scale.proxy --listen 19709 --backend 127.0.0.1:19707 --backend 127.0.0.1:19708
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
     "transfer-encoding", "upgrade"}
)  # fmt: skip


class RoundRobinProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, listen: tuple[str, int], backends: list[tuple[str, int]]) -> None:
        if not backends:
            raise ValueError("the proxy needs at least one backend")
        self.backends = backends
        self._cycle = itertools.cycle(backends)
        self._lock = threading.Lock()
        self.served: dict[str, int] = {f"{h}:{p}": 0 for h, p in backends}
        super().__init__(listen, _Handler)

    def next_backend(self) -> tuple[str, int]:
        with self._lock:
            host, port = next(self._cycle)
            self.served[f"{host}:{port}"] += 1
            return host, port

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="round-robin-proxy", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server: RoundRobinProxy
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        host, port = self.server.next_backend()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-For"] = self.client_address[0]
        upstream = http.client.HTTPConnection(host, port, timeout=30)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response_only(response.status, response.reason)
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Backend", f"{host}:{port}")
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:
            self.send_error(502, f"backend {host}:{port}: {exc}")
        finally:
            upstream.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _forward

    def log_message(self, format: str, *args: object) -> None:
        return  # quiet: the backends log every request


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deploy.scale.proxy", description=__doc__)
    parser.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--backend", action="append", required=True, type=_address, help="host:port")
    args = parser.parse_args(argv)
    RoundRobinProxy(("127.0.0.1", args.listen), args.backend).serve_forever()


if __name__ == "__main__":
    main()
