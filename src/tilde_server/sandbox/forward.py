"""Runs INSIDE a sandbox (with the image's python3, standard library only): for each PORT
SOCKET pair, listen on 127.0.0.1:PORT and relay every connection to that bind-mounted unix
socket of the server (the API, the egress proxy); then run the sandbox command as a child and
exit with its status.

    python3 -S forward.py PORT SOCKET [PORT SOCKET ...] -- COMMAND...

Subtleties:
1. One thread relays every connection (a selector loop with non-blocking sockets), so a
   program with many connections costs the sandbox no extra threads: threads count against
   its process limit (pids).
2. Backpressure: a side whose peer cannot take more is not read until the peer drained what
   is pending (at most one read, CHUNK bytes, is buffered per direction).
3. Half-close is passed on: EOF from one side becomes shutdown(SHUT_WR) on the other once
   everything before it was written; a pair is closed when both directions ended or on an
   error.
"""

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading

CHUNK = 256 * 1024


class Side:
    def __init__(self, sock):  # type: ignore[no-untyped-def]
        self.sock = sock
        self.peer = None
        self.pending = b""  # read from this side, not yet written to the peer
        self.eof = False  # this side sent EOF
        self.shut = False  # the peer was told (shutdown SHUT_WR)
        self.registered = True  # in the selector


class Relay:
    def __init__(self):  # type: ignore[no-untyped-def]
        self.sel = selectors.DefaultSelector()

    def listen(self, port, path):  # type: ignore[no-untyped-def]
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(128)
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, ("listen", path))

    def run(self):  # type: ignore[no-untyped-def]
        while True:
            for key, _ in self.sel.select():
                kind, obj = key.data
                if kind == "listen":
                    self.accept(key.fileobj, obj)
                else:
                    self.step(obj)

    def accept(self, listener, path):  # type: ignore[no-untyped-def]
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        try:
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(path)
        except OSError:
            conn.close()
            return
        a, b = Side(conn), Side(up)
        a.peer, b.peer = b, a
        for side in (a, b):
            side.sock.setblocking(False)
            self.sel.register(side.sock, selectors.EVENT_READ, ("side", side))

    def step(self, side):  # type: ignore[no-untyped-def]
        """Make progress on both directions of `side`'s pair."""
        try:
            for s in (side, side.peer):
                self.flush(s)
                if not s.pending and not s.eof:
                    self.read(s)
                    self.flush(s)
        except OSError:
            self.close(side)
            return
        a, b = side, side.peer
        if a.shut and b.shut:
            self.close(side)
            return
        for s in (a, b):
            events = 0
            if not s.eof and not s.pending:
                events |= selectors.EVENT_READ
            if s.peer.pending:
                events |= selectors.EVENT_WRITE
            self.watch(s, events)

    def read(self, s):  # type: ignore[no-untyped-def]
        try:
            data = s.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            s.pending = data
        else:
            s.eof = True

    def flush(self, s):  # type: ignore[no-untyped-def]
        """Write what `s` read to its peer; pass EOF on once nothing is pending."""
        while s.pending:
            try:
                n = s.peer.sock.send(s.pending)
            except (BlockingIOError, InterruptedError):
                return
            s.pending = s.pending[n:]
        if s.eof and not s.shut:
            s.shut = True
            try:
                s.peer.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def watch(self, s, events):  # type: ignore[no-untyped-def]
        """Select `s` for `events`; a side waiting for nothing is not selected at all."""
        if events and s.registered:
            self.sel.modify(s.sock, events, ("side", s))
        elif events:
            self.sel.register(s.sock, events, ("side", s))
        elif s.registered:
            self.sel.unregister(s.sock)
        s.registered = bool(events)

    def close(self, side):  # type: ignore[no-untyped-def]
        for s in (side, side.peer):
            if s.registered:
                self.sel.unregister(s.sock)
                s.registered = False
            s.sock.close()


def main():  # type: ignore[no-untyped-def]
    cut = sys.argv.index("--")
    pairs = sys.argv[1:cut]
    argv = sys.argv[cut + 1:]
    relay = Relay()
    for i in range(0, len(pairs) - 1, 2):
        port, path = int(pairs[i]), pairs[i + 1]
        try:
            relay.listen(port, path)
        except OSError as exc:
            sys.stderr.write(f"tilde sandbox: forwarder for port {port} not available: "
                             f"{exc}\n")
    threading.Thread(target=relay.run, daemon=True).start()
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        sys.stderr.write(f"tilde sandbox: cannot run {argv[0]!r}: {exc.strerror}\n")
        sys.exit(127)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, f: child.send_signal(s))
    code = child.wait()
    sys.stdout.flush()
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    main()
