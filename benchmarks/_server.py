"""Starting a tilde-server for a benchmark (shared by the benchmarks that need one).

`start(data, key, env=..., args=..., wrap=...)` runs `tilde-server run` on a free loopback
port with `key` as its admin key and waits until it answers that key; `wrap` prefixes the
command (e.g. an `eatmydata` or `strace` run)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(data: Path, key: str, env: dict[str, str] | None = None, args: Sequence[str] = (),
          wrap: Sequence[str] = ()) -> tuple[subprocess.Popen[bytes], str]:
    """(the server process, its base URL); SystemExit when it does not come up in 60 s."""
    exe = shutil.which("tilde-server", path=str(Path(sys.executable).parent))
    cmd = [exe] if exe else [sys.executable, "-m", "tilde_server"]
    port = free_port()
    full = dict(os.environ, HOME=str(data.parent), TILDE_SERVER_ADMIN_KEY=key, **(env or {}))
    proc = subprocess.Popen([*wrap, *cmd, "run", "--data", str(data), "--port", str(port),
                             "--log-level", "warning", *args], env=full,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/organizations",
                         headers={"Authorization": f"Bearer {key}"}).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("tilde-server did not come up")
