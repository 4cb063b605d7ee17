"""Loopback networking for tests: a free port for a server to start on, and a TCP relay that
puts something between a client and a real server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpProxy:
    """Listens on `host`:`port` (port 0: a free one, then in `self.port`) and relays every
    connection to 127.0.0.1:`target`. With `chunk`, each answer (server to client) goes back
    `chunk` bytes every `pause` seconds while requests pass at once: every receive is then well
    inside a per-operation timeout, the whole answer is not."""

    def __init__(self, target: int, host: str = "127.0.0.1", port: int = 0, chunk: int = 0,
                 pause: float = 0.0) -> None:
        self.target, self.chunk, self.pause = target, chunk, pause
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for src, dst, drip in ((client, upstream, False), (upstream, client, self.chunk > 0)):
                threading.Thread(target=self._pipe, args=(src, dst, drip), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, drip: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if not drip:
                    dst.sendall(data)
                    continue
                for i in range(0, len(data), self.chunk):
                    dst.sendall(data[i:i + self.chunk])
                    time.sleep(self.pause)
        except OSError:
            pass
        finally:
            # shut both down first: that ends the other direction's blocked recv too
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self.closed = True
        self.sock.close()
