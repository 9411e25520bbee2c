"""Run a `Filesystem` over a real tilde-server without a kernel (`CoreFs`), plus helpers."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from tilde_mount.config import FsConfig, KiB, MiB
from tilde_mount.errors import FsError
from tilde_mount.fs import ROOT_INO, Attr, Filesystem
from tilde_mount.remote import HttpRemote

CHUNK = 128 * 1024  # what the kernel sends per read/write


def small_config(tmp: Path, **kw: Any) -> FsConfig:
    base: dict[str, Any] = dict(
        cache_dir=tmp / "cache", cache_size=64 * MiB, memory_cache_bytes=8 * MiB,
        block_size=64 * KiB, max_request_bytes=512 * KiB, list_page_size=1000,
        attr_ttl=30.0, negative_ttl=30.0)
    base.update(kw)
    return FsConfig(**base)


@asynccontextmanager
async def open_fs(server: Any, repo: Any, tmp: Path, *, session_id: str | None = None,
                  ref: str | None = None, remote_kw: dict[str, Any] | None = None,
                  **config: Any) -> AsyncIterator[Filesystem]:
    remote = HttpRemote(server.endpoint, repo.path, server.api_key, **(remote_kw or {}))
    fs = Filesystem(remote, small_config(tmp, **config), session_id=session_id, ref=ref)
    try:
        async with fs.serving():
            yield fs
    finally:
        await remote.aclose()


def _oserror(e: FsError) -> OSError:
    return OSError(e.errno, os.strerror(e.errno))


class CoreFs:
    """The `FsUnderTest` interface (behaviour.py) over `Filesystem`, as the kernel would call it."""

    def __init__(self, fs: Filesystem) -> None:
        self.fs = fs

    async def _walk(self, path: str) -> Attr:
        attr = await self.fs.getattr(ROOT_INO)
        for part in [p for p in path.split("/") if p]:
            attr = await self.fs.lookup(attr.ino, part.encode())
        return attr

    async def _parent(self, path: str) -> tuple[int, bytes]:
        parent, _, name = path.rpartition("/")
        return (await self._walk(parent)).ino, name.encode()

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except FsError as e:
            raise _oserror(e) from None

    async def write_file(self, path: str, data: bytes) -> None:
        async def go() -> None:
            pino, name = await self._parent(path)
            try:
                ino = (await self.fs.lookup(pino, name)).ino
                fh = (await self.fs.open(ino, os.O_WRONLY | os.O_TRUNC)).fh
            except FsError as e:
                if e.errno != 2:
                    raise
                fh = (await self.fs.create(pino, name, stat.S_IFREG | 0o644,
                                           os.O_WRONLY | os.O_CREAT | os.O_TRUNC))[0].fh
            for off in range(0, len(data), CHUNK):
                await self.fs.write(fh, off, data[off:off + CHUNK])
            await self.fs.flush(fh)
            await self.fs.release(fh)
        await self._call(go())

    async def read_range(self, path: str, offset: int, size: int) -> bytes:
        async def go() -> bytes:
            ino = (await self._walk(path)).ino
            fh = (await self.fs.open(ino, os.O_RDONLY)).fh
            out = bytearray()
            try:
                while len(out) < size:
                    piece = await self.fs.read(fh, offset + len(out), min(CHUNK, size - len(out)))
                    if not piece:
                        break
                    out += piece
            finally:
                await self.fs.release(fh)
            return bytes(out)
        result: bytes = await self._call(go())
        return result

    async def read_file(self, path: str) -> bytes:
        return await self.read_range(path, 0, 1 << 40)

    async def pwrite(self, path: str, offset: int, data: bytes) -> None:
        async def go() -> None:
            ino = (await self._walk(path)).ino
            fh = (await self.fs.open(ino, os.O_WRONLY)).fh
            for off in range(0, len(data), CHUNK):
                await self.fs.write(fh, offset + off, data[off:off + CHUNK])
            await self.fs.flush(fh)
            await self.fs.release(fh)
        await self._call(go())

    async def append(self, path: str, data: bytes) -> None:
        await self.pwrite(path, await self.size(path), data)

    async def truncate(self, path: str, size: int) -> None:
        async def go() -> None:
            await self.fs.setattr((await self._walk(path)).ino, size=size)
        await self._call(go())

    async def unlink(self, path: str) -> None:
        async def go() -> None:
            await self.fs.unlink(*(await self._parent(path)))
        await self._call(go())

    async def mkdir(self, path: str) -> None:
        async def go() -> None:
            pino, name = await self._parent(path)
            await self.fs.mkdir(pino, name, stat.S_IFDIR | 0o755)
        await self._call(go())

    async def rmdir(self, path: str) -> None:
        async def go() -> None:
            await self.fs.rmdir(*(await self._parent(path)))
        await self._call(go())

    async def rename(self, src: str, dst: str) -> None:
        async def go() -> None:
            a, b = await self._parent(src), await self._parent(dst)
            await self.fs.rename(a[0], a[1], b[0], b[1], 0)
        await self._call(go())

    async def listdir(self, path: str) -> list[str]:
        async def go() -> list[str]:
            fh = await self.fs.opendir((await self._walk(path)).ino)
            names: list[str] = []
            start = 0
            while True:  # small batches, like the kernel's buffer, to exercise cookies
                batch: list[tuple[bytes, int]] = []

                def reply(name: bytes, attr: Attr, next_id: int, batch: list = batch) -> bool:
                    if len(batch) >= 7:
                        return False
                    batch.append((name, next_id))
                    return True

                await self.fs.readdir(fh, start, reply)
                if not batch:
                    break
                names.extend(n.decode() for n, _ in batch)
                start = batch[-1][1]
            await self.fs.releasedir(fh)
            # every listing starts with "." and ".."; like os.listdir, leave them out
            assert names[:2] == [".", ".."], names[:2]
            return names[2:]
        result: list[str] = await self._call(go())
        return result

    async def stat(self, path: str) -> Attr:
        result: Attr = await self._call(self._walk(path))
        return result

    async def size(self, path: str) -> int:
        return (await self.stat(path)).size

    async def is_dir(self, path: str) -> bool:
        return stat.S_ISDIR((await self.stat(path)).mode)

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
            return True
        except FileNotFoundError:
            return False

    async def chmod(self, path: str, mode: int) -> None:
        async def go() -> None:
            await self.fs.setattr((await self._walk(path)).ino, mode=mode)
        await self._call(go())

    async def mode(self, path: str) -> int:
        return stat.S_IMODE((await self.stat(path)).mode)

    async def open(self, path: str, flags: int) -> int:
        async def go() -> int:
            pino, name = await self._parent(path)
            try:
                ino = (await self.fs.lookup(pino, name)).ino
            except FsError as e:
                if e.errno != 2 or not flags & os.O_CREAT:
                    raise
                return (await self.fs.create(pino, name, stat.S_IFREG | 0o644, flags))[0].fh
            return (await self.fs.open(ino, flags)).fh
        result: int = await self._call(go())
        return result

    async def hwrite(self, handle: int, offset: int, data: bytes) -> None:
        await self._call(self.fs.write(handle, offset, data))

    async def hread(self, handle: int, offset: int, size: int) -> bytes:
        result: bytes = await self._call(self.fs.read(handle, offset, size))
        return result

    async def close(self, handle: int) -> None:
        async def go() -> None:
            await self.fs.flush(handle)
            await self.fs.release(handle)
        await self._call(go())


class Http:
    """Plain HTTP checks against the server (no tilde_mount code involved)."""

    def __init__(self, server: Any, repo: Any) -> None:
        self.base = f"{server.endpoint}/api/v1/organizations/{repo.org}/repositories/{repo.repo}"
        self.client = httpx.Client(headers={"Authorization": f"Bearer {server.api_key}"},
                                   timeout=30)

    def objects(self, ref: str | None = None, session_id: str | None = None) -> dict[str, bytes]:
        """Every object at the head (or ``ref`` / session) with its bytes."""
        out: dict[str, bytes] = {}
        after = None
        while True:
            params: dict[str, Any] = {"amount": 1000}
            if after:
                params["after"] = after
            if ref:
                params["ref"] = ref
            if session_id:
                params["session_id"] = session_id
            r = self.client.get(f"{self.base}/objects", params=params)
            r.raise_for_status()
            body = r.json()
            for item in body.get("results", []):
                p = {"path": item["path"]}
                if ref:
                    p["ref"] = ref
                if session_id:
                    p["session_id"] = session_id
                # a redirecting server (--downloads redirect) answers 307 to a signed URL
                g = self.client.get(f"{self.base}/object", params=p, follow_redirects=True)
                g.raise_for_status()
                out[item["path"]] = g.content
            pag = body.get("pagination") or {}
            if not pag.get("has_more"):
                return out
            after = pag["next_offset"]

    def log(self) -> list[dict[str, Any]]:
        r = self.client.get(f"{self.base}/log", params={"amount": 100})
        r.raise_for_status()
        return list(r.json()["results"])

    def put(self, path: str, data: bytes, message: str = "seed") -> str:
        """Write ``path`` in a session of its own and commit it; returns the commit id."""
        sid = self.client.post(f"{self.base}/sessions").json()["session_id"]
        self.put_in(sid, path, data)
        r = self.client.post(f"{self.base}/sessions/{sid}", json={"message": message})
        r.raise_for_status()
        return str(r.json()["commit_id"])

    def put_in(self, sid: str, path: str, data: bytes,
               metadata: dict[str, str] | None = None) -> None:
        """Stage one object (with user ``metadata``): today's flow, or the 0.7.2 one where
        the server has only that (tilde-server --wire legacy answers 405 to ``PUT
        {R}/object``)."""
        q = {"session_id": sid, "path": path}
        octet = {"Content-Type": "application/octet-stream"}
        extra = {"metadata": metadata} if metadata else {}
        u = self.client.put(f"{self.base}/object", params=q)
        if u.status_code != 405:
            u.raise_for_status()
            httpx.put(u.json()["upload_url"], content=data, headers=octet).raise_for_status()
            self.client.post(f"{self.base}/object/finalize", params=q, json={
                "upload_token": u.json()["upload_token"],
                "content_type": "application/octet-stream", **extra}).raise_for_status()
            return
        st = self.client.post(f"{self.base}/object/stage", params=q)
        st.raise_for_status()
        s = st.json()
        httpx.put(s["upload_url"], content=data, headers=octet).raise_for_status()
        self.client.put(f"{self.base}/object/finalize",
                        params={**q, "expires_at": s["expires_at"]},
                        json={"physical_address": s["physical_address"],
                              "signature": s["signature"],
                              "content_type": "application/octet-stream", **extra}
                        ).raise_for_status()

    def commit(self, sid: str, message: str) -> httpx.Response:
        return self.client.post(f"{self.base}/sessions/{sid}", json={"message": message})
