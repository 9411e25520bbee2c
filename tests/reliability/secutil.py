"""Helpers of the security checks (tests/reliability/test_security_*.py): the root conftest's
server helpers, raw HTTP requests whose query bytes are sent exactly as given, and file-tree
snapshots to prove that nothing was written where it must not be."""

from __future__ import annotations

import http.client
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bypath import root_conftest

root = root_conftest()


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Raw:
    """HTTP/1.1 requests with the request target sent byte for byte (httpx would normalize a
    hostile query), one connection per request (a refused request must not poison the next)."""

    def __init__(self, endpoint: str, key: str | None) -> None:
        u = urlsplit(endpoint)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.key = key
        self.count = 0

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, key: str | None = "") -> Answer:
        """``key``: "" is this client's key, None sends no Authorization header."""
        h = dict(headers or {})
        k = self.key if key == "" else key
        if k is not None:
            h["Authorization"] = f"Bearer {k}"
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for name, value in h.items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body or b"")))
            conn.endheaders(body or b"")
            r = conn.getresponse()
            data = r.read()
            self.count += 1
            return Answer(r.status, r.getheaders(), data)
        finally:
            conn.close()


def tree(root_dir: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file and directory under ``root_dir`` (symlinks not
    followed), for before/after comparisons."""
    out: dict[str, tuple[int, int]] = {}
    if not root_dir.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root_dir, followlinks=False):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
            except FileNotFoundError:
                continue
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def names_under(root_dir: Path, max_entries: int = 200_000) -> set[str]:
    """Every entry name (not path) under ``root_dir``, bounded; unreadable parts skipped."""
    out: set[str] = set()
    seen = 0
    for _dirpath, dirnames, filenames in os.walk(root_dir, followlinks=False):
        for name in dirnames + filenames:
            out.add(name)
            seen += 1
        if seen > max_entries:
            break
    return out
