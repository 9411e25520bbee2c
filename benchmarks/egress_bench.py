"""What the sandbox egress proxy costs, side by side in one run: the same client code against
the same local server, from inside a sandbox (through the proxy) and from the host (direct).

    .venv/bin/python benchmarks/egress_bench.py [--requests 200] [--repeat 3] [--tmp DIR]

Starts an "outside" HTTP server on 127.0.0.1 and a tilde-server whose test-only options let
that one port pass the egress baseline (nothing leaves loopback), then measures with the
host's python3 (the interpreter sandboxes run) in both places:

(a) small GETs, a new connection each (urllib): median time per request;
(b) the same through a CONNECT tunnel (a raw TCP echo of 1 KiB per tunnel; no TLS, so the
    figure is the proxy's own cost of opening a tunnel);
(c) one 64 MiB download: MB/s.

Inside, every request is also one decision (baseline + allow-list) and one log line; the
run reports how many lines the network log holds. Prints medians of --repeat runs and the
ratios proxy/direct. Never a timed test and not part of the test suite.
"""

from __future__ import annotations

import argparse
import http.server
import json
import secrets
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mountbench import env as E

BIG = 64 * 1024 * 1024

CLIENT = r'''
import json, os, socket, sys, time, urllib.request
host, port, echo_port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
proxy = os.environ.get("HTTP_PROXY")
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"http": proxy} if proxy else {}))
small = []
for _ in range(n):
    t = time.perf_counter()
    with opener.open(f"http://{host}:{port}/small", timeout=30) as r:
        r.read()
    small.append(time.perf_counter() - t)
tunnel = []
for _ in range(n):
    t = time.perf_counter()
    if proxy:
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(f"CONNECT {host}:{echo_port} HTTP/1.1\r\nHost: {host}:{echo_port}\r\n\r\n"
                  .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
    else:
        s = socket.create_connection((host, echo_port))
    s.sendall(b"x" * 1024)
    got = 0
    while got < 1024:
        got += len(s.recv(4096))
    s.close()
    tunnel.append(time.perf_counter() - t)
t = time.perf_counter()
size = 0
with opener.open(f"http://{host}:{port}/big", timeout=120) as r:
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        size += len(b)
big = time.perf_counter() - t
small.sort(); tunnel.sort()
print(json.dumps({"small_ms": small[len(small) // 2] * 1000,
                  "tunnel_ms": tunnel[len(tunnel) // 2] * 1000,
                  "big_mb_s": size / big / 1e6, "big_bytes": size}))
'''


class _Web(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/big":
            self.send_response(200)
            self.send_header("Content-Length", str(BIG))
            self.end_headers()
            chunk = b"\0" * (1 << 20)
            for _ in range(BIG // len(chunk)):
                self.wfile.write(chunk)
            return
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)


class _Threading(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tmp", type=Path, default=None)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="egress-bench-", dir=args.tmp))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Web)
    echo = _Threading(("127.0.0.1", 0), _Echo)
    for srv in (web, echo):
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    wport, eport = web.server_address[1], echo.server_address[1]
    key = "tk-" + secrets.token_hex(16)
    proc, endpoint = E.start_tilde_server(root, "egress", key, [
        "--sandbox-allow-host", f"bench.test:{wport}",
        "--sandbox-allow-host", f"bench.test:{eport}",
        "--unsafe-egress-test-exempt", f"127.0.0.1:{wport}",
        "--unsafe-egress-test-exempt", f"127.0.0.1:{eport}",
        "--unsafe-egress-test-resolve", "bench.test=127.0.0.1"])
    h = httpx.Client(base_url=f"{endpoint}/api/v1", timeout=60,
                     headers={"Authorization": f"Bearer {key}"})
    try:
        h.post("/organizations", json={"name": "bench", "display_name": "bench"})
        h.post("/organizations/bench/repositories", json={"name": "egress"})
        base = "/organizations/bench/repositories/egress"
        direct: list[dict[str, float]] = []
        proxied: list[dict[str, float]] = []
        lines = 0
        inside: list[float] = []
        for _ in range(args.repeat):
            out = subprocess.run(["/usr/bin/python3", "-c", CLIENT, "127.0.0.1", str(wport),
                                  str(eport), str(args.requests)], capture_output=True,
                                 text=True, check=True, env={"PATH": "/usr/bin:/bin"})
            direct.append(json.loads(out.stdout))
            r = h.post(f"{base}/sandboxes", json={
                "image": "python-312", "timeout_seconds": 600,
                "command": ["python3", "-c", CLIENT, "bench.test", str(wport), str(eport),
                            str(args.requests)]})
            r.raise_for_status()
            sid = r.json()["sandbox_id"]
            while True:
                st = h.get(f"{base}/sandboxes/{sid}/status").json()
                if st["status"] not in ("starting", "running"):
                    break
                time.sleep(0.2)
            text = h.get(f"{base}/sandboxes/{sid}/logs/stdout").text
            if st["status"] != "committed":
                raise SystemExit(f"sandbox ended {st}: {text[-2000:]}")
            proxied.append(json.loads(text.strip().splitlines()[-1]))
            log = [json.loads(x) for x in
                   h.get(f"{base}/sandboxes/{sid}/logs/network").text.splitlines()]
            lines += len(log)
            assert all(x["allowed"] for x in log)
            inside += [x["duration_ms"] for x in log if x["method"] == "GET"
                       and x["path"] == "/small"]
        print(f"egress proxy vs direct, {args.requests} requests per kind, medians of "
              f"{args.repeat} runs (host python3 on both sides)")
        print(f"{'':34}{'direct':>10}{'proxy':>10}{'ratio':>8}{'overhead':>12}")
        for k, label, unit in (("small_ms", "GET, new connection each", "ms"),
                               ("tunnel_ms", "CONNECT + 1 KiB echo", "ms"),
                               ("big_mb_s", "64 MiB download", "MB/s")):
            d = E.median([x[k] for x in direct])
            p = E.median([x[k] for x in proxied])
            extra = f"{p - d:+.3f} {unit}" if unit == "ms" else ""
            print(f"{label:34}{d:>10.3f}{p:>10.3f}{p / d:>8.2f}{extra:>12}")
        print(f"the proxy's own time for one small GET (decision, upstream connection, "
              f"response; its log's duration_ms): median {E.median(inside):.3f} ms")
        per_run = 2 * args.requests + 1
        print(f"network log: {lines} lines for {args.repeat} sandboxes "
              f"({per_run} requests and tunnels each, every one decided and logged)")
    finally:
        h.close()
        proc.proc.terminate()
        proc.proc.wait(30)
        web.shutdown()
        echo.shutdown()
        socket.setdefaulttimeout(None)


if __name__ == "__main__":
    main()
