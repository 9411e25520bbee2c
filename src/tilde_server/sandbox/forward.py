"""Runs INSIDE a sandbox (with the image's python3, standard library only): for each PORT
SOCKET pair, listen on 127.0.0.1:PORT and forward every connection to that bind-mounted unix
socket of the server (the API, the egress proxy); then run the sandbox command as a child and
exit with its status.

    python3 -S forward.py PORT SOCKET [PORT SOCKET ...] -- COMMAND...
"""

import os
import signal
import socket
import subprocess
import sys
import threading


def pump(src, dst):  # type: ignore[no-untyped-def]
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(conn, path):  # type: ignore[no-untyped-def]
    try:
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(path)
    except OSError:
        conn.close()
        return
    t = threading.Thread(target=pump, args=(up, conn), daemon=True)
    t.start()
    pump(conn, up)
    t.join()
    conn.close()
    up.close()


def accept(listener, path):  # type: ignore[no-untyped-def]
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve, args=(conn, path), daemon=True).start()


def main():  # type: ignore[no-untyped-def]
    cut = sys.argv.index("--")
    pairs = sys.argv[1:cut]
    argv = sys.argv[cut + 1:]
    for i in range(0, len(pairs) - 1, 2):
        port, path = int(pairs[i]), pairs[i + 1]
        try:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            threading.Thread(target=accept, args=(listener, path), daemon=True).start()
        except OSError as exc:
            sys.stderr.write(f"tilde sandbox: forwarder for port {port} not available: "
                             f"{exc}\n")
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
