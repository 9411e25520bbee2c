"""The "own server, directly" side of every comparison: the limit each mount is held to.

- tilde-server through the bundled client (`tilde.Client`): one streaming GET, parallel
  ranged GETs, 4 KiB range GETs, first byte of a GET, an upload made durable (put + commit);
- rclone's webdav and s3 servers through httpx with the same access patterns (these serve
  the peers; s3 runs without auth, so plain GETs/PUTs work);
- the local file system (bindfs's "server") with plain reads and writes.

Every function returns seconds (or a list of per-operation seconds); nothing here prints.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

MiB = 1024 * 1024
CHUNK = MiB
PAR_RANGE = 8 * MiB


class Direct:
    """One server, read and written without a mount in between."""

    name = "?"

    def get(self, path: str) -> int: ...
    def get_range(self, path: str, start: int, end: int) -> bytes: ...
    def first_byte(self, path: str) -> None: ...
    def put(self, path: str, local: Path) -> None: ...
    def close(self) -> None: ...

    # -- derived measurements
    def seq(self, path: str, size: int) -> float:
        t0 = time.perf_counter()
        n = self.get(path)
        dt = time.perf_counter() - t0
        assert n == size, (self.name, path, n, size)
        return dt

    def parallel(self, path: str, size: int, streams: int = 4) -> float:
        ranges = [(s, min(s + PAR_RANGE, size)) for s in range(0, size, PAR_RANGE)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            got = sum(len(b) for b in pool.map(lambda r: self.get_range(path, *r), ranges))
        dt = time.perf_counter() - t0
        assert got == size, (self.name, got, size)
        return dt

    def random_4k(self, path: str, size: int, n: int, seed: int) -> list[float]:
        rnd = random.Random(seed)
        out = []
        for _ in range(n):
            off = rnd.randrange(0, size // 4096) * 4096
            t0 = time.perf_counter()
            data = self.get_range(path, off, off + 4096)
            out.append(time.perf_counter() - t0)
            assert len(data) == 4096
        return out

    def ttfb(self, paths: list[str]) -> list[float]:
        out = []
        for p in paths:
            t0 = time.perf_counter()
            self.first_byte(p)
            out.append(time.perf_counter() - t0)
        return out

    def upload(self, path: str, local: Path) -> float:
        t0 = time.perf_counter()
        self.put(path, local)
        return time.perf_counter() - t0


class TildeDirect(Direct):
    name = "tilde-server (bundled client)"

    def __init__(self, endpoint: str, api_key: str, repo: str) -> None:
        import tilde

        self.client = tilde.Client(endpoint_url=endpoint, api_key=api_key)
        self.repo = self.client.repository(repo)
        self._pool: list[Any] = []
        self._endpoint, self._key, self._repo_path = endpoint, api_key, repo

    def _other(self) -> Any:
        """A repository handle on a client of its own (one connection per thread)."""
        import tilde

        client = tilde.Client(endpoint_url=self._endpoint, api_key=self._key)
        self._pool.append(client)
        return client.repository(self._repo_path)

    def get(self, path: str) -> int:
        n = 0
        with self.repo.objects.get(path, cache=False) as r:
            for chunk in r.iter_bytes(CHUNK):
                n += len(chunk)
        return n

    def get_range(self, path: str, start: int, end: int) -> bytes:
        with self.repo.objects.get(path, byte_range=(start, end - 1), cache=False) as r:
            return bytes(r.read())

    def parallel(self, path: str, size: int, streams: int = 4) -> float:
        repos = [self._other() for _ in range(streams)]
        ranges = [(s, min(s + PAR_RANGE, size)) for s in range(0, size, PAR_RANGE)]
        lanes = [ranges[i::streams] for i in range(streams)]

        def lane(i: int) -> int:
            got = 0
            for s, e in lanes[i]:
                with repos[i].objects.get(path, byte_range=(s, e - 1), cache=False) as r:
                    got += len(r.read())
            return got

        t0 = time.perf_counter()
        with ThreadPoolExecutor(streams) as pool:
            got = sum(pool.map(lane, range(streams)))
        dt = time.perf_counter() - t0
        assert got == size
        return dt

    def first_byte(self, path: str) -> None:
        with self.repo.objects.get(path, cache=False) as r:
            next(iter(r.iter_bytes(4096)))

    def put(self, path: str, local: Path) -> None:
        with self.repo.session() as s:
            s.objects.put(path, local)
            s.commit(f"direct upload {path}")

    def close(self) -> None:
        for c in self._pool:
            c.close()
        self.client.close()


class HttpDirect(Direct):
    """A plain HTTP server of files (rclone serve webdav / s3 without auth)."""

    def __init__(self, name: str, base: str) -> None:
        self.name = name
        self.base = base.rstrip("/")
        self.http = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=16))

    def get(self, path: str) -> int:
        n = 0
        with self.http.stream("GET", f"{self.base}/{path}") as r:
            r.raise_for_status()
            for chunk in r.iter_raw(CHUNK):
                n += len(chunk)
        return n

    def get_range(self, path: str, start: int, end: int) -> bytes:
        r = self.http.get(f"{self.base}/{path}", headers={"Range": f"bytes={start}-{end - 1}"})
        r.raise_for_status()
        return r.content

    def first_byte(self, path: str) -> None:
        with self.http.stream("GET", f"{self.base}/{path}") as r:
            r.raise_for_status()
            next(iter(r.iter_raw(4096)))

    def put(self, path: str, local: Path) -> None:
        def body() -> Any:
            with open(local, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk
        r = self.http.put(f"{self.base}/{path}", content=body(),
                          headers={"Content-Length": str(local.stat().st_size)})
        r.raise_for_status()

    def close(self) -> None:
        self.http.close()


class LocalDirect(Direct):
    name = "local file system"

    def __init__(self, root: Path) -> None:
        self.root = root

    def get(self, path: str) -> int:
        return read_file(self.root / path)

    def get_range(self, path: str, start: int, end: int) -> bytes:
        fd = os.open(self.root / path, os.O_RDONLY)
        try:
            return os.pread(fd, end - start, start)
        finally:
            os.close(fd)

    def parallel(self, path: str, size: int, streams: int = 4) -> float:
        return read_parallel(self.root / path, size, streams)

    def first_byte(self, path: str) -> None:
        fd = os.open(self.root / path, os.O_RDONLY)
        try:
            os.read(fd, 4096)
        finally:
            os.close(fd)

    def put(self, path: str, local: Path) -> None:
        dst = self.root / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(local, "rb") as src, open(dst, "wb") as out:
            while chunk := src.read(CHUNK):
                out.write(chunk)


# --------------------------------------------------------------------------- file reads


def read_file(path: Path, start: int = 0, end: int | None = None,
              bufsize: int = CHUNK) -> int:
    """Read [start, end) with ``bufsize`` reads into one buffer; returns bytes read."""
    buf = bytearray(bufsize)
    view = memoryview(buf)
    n = 0
    with open(path, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        left = None if end is None else end - start
        while left is None or left > 0:
            want = bufsize if left is None else min(bufsize, left)
            got = f.readinto(view[:want])
            if not got:
                break
            n += got
            if left is not None:
                left -= got
    return n


def read_parallel(path: Path, size: int, readers: int) -> float:
    """``readers`` threads, each reading its own contiguous share with its own descriptor."""
    share = -(-size // readers)
    parts = [(i * share, min(size, (i + 1) * share)) for i in range(readers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(readers) as pool:
        got = sum(pool.map(lambda p: read_file(path, *p), parts))
    dt = time.perf_counter() - t0
    assert got == size, (path, got, size)
    return dt


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


