"""The server end of a sandbox's API socket: a unix socket that forwards to the server's TCP
endpoint.

Without network the sandbox has only a loopback interface in its own network namespace. The
socket is bind-mounted into the sandbox at /run/tilde/api.sock, and forward.py (run by the
image's python3 as the parent of the sandbox command) listens on 127.0.0.1:8080 inside and
forwards each connection to that socket, so `TILDE_API_URL=http://127.0.0.1:8080` reaches this
server and nothing else. Every connection here is a pair of blocking pump threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from urllib.parse import urlsplit

log = logging.getLogger("tilde_server.sandbox")


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class ApiSocketProxy:
    def __init__(self, path: str, endpoint: str) -> None:
        self.path = path
        parts = urlsplit(endpoint)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._sock: socket.socket | None = None
        self._stopped = False

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.path)
        # The sandbox uid connects; the socket's directory is 0711 (not listable).
        os.chmod(self.path, 0o666)  # nosec B103
        s.listen(64)
        self._sock = s
        threading.Thread(target=self._accept, daemon=True, name="sandbox-api-proxy").start()

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stopped:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection(self.target, timeout=10)
        except OSError as exc:
            log.warning("sandbox API proxy: cannot reach %s: %s", self.target, exc)
            conn.close()
            return
        up.settimeout(None)
        t = threading.Thread(target=_pump, args=(up, conn), daemon=True)
        t.start()
        _pump(conn, up)
        t.join()
        conn.close()
        up.close()

    def stop(self) -> None:
        self._stopped = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
