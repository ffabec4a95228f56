"""A TCP link the test opens and cuts: a real listening socket that forwards to a real service, or refuses.

For a dependency outage in process, without touching the shared service: point a client at ``link.port``; while
the link is cut nothing listens there (connections are refused, live ones are closed), and ``restore()`` listens
and forwards again.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.procs import free_port


class TcpLink:
    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()  # released again until the link is restored
        self._listener: socket.socket | None = None
        self._live: list[socket.socket] = []
        self._lock = threading.Lock()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            live, self._live = self._live, []
        for sock in ([listener] if listener is not None else []) + live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._live += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
