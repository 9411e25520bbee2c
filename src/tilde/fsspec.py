"""``tilde://ORG/REPO[@REF]/PATH`` as an fsspec filesystem (docs/fsspec.md).

``fsspec.filesystem("tilde")`` and ``pd.read_parquet("tilde://...")`` find this class through
the ``fsspec.specs`` entry point; nothing needs importing. Subtleties:

1. Paths are ``org/repo[@ref]/key`` after ``_strip_protocol``; the ``@ref`` stays in every
   name this filesystem returns, so a listing at a commit names paths at that commit.
2. Which version a read sees: ``@ref`` -> that commit (``ref=`` on the wire, a unique prefix
   is resolved by the server); otherwise the write session of this filesystem for that
   repository (a transaction's, or the ``session_id`` storage option), so a transaction
   reads its own staged writes; otherwise the latest commit.
3. Writes: inside ``with fs.transaction`` every write goes to one session per repository,
   committed at exit (rolled back on an exception). With ``session_id=`` nothing is ever
   committed by us. Otherwise each write call (pipe, put_file, a closed "wb" file, one rm
   call, cp) is its own session and commit. A URL with ``@ref`` is read-only.
4. Directories are key prefixes: listings use ``delimiter=/`` and ``type: "prefix"`` rows
   are directories. There are no empty directories, so ``mkdir`` sends nothing.
5. Listing cache: entries listed at an ``@ref`` are kept for the instance's life (a commit
   never changes); the latest commit and session views expire after ``listings_ttl``
   seconds. Every write through this instance drops the repository's entries.
6. ``e_tag`` is the md5 hex of the content for objects stored by a single upload (tilde-server
   and the service); ``put_file`` skips a file whose md5 and size match the target's, a
   multipart ETag (``...-N``) never matches so such files are always sent.
7. Pickling keeps only the constructor arguments (fsspec's ``__reduce__``): no client, no
   transaction. An unpickled instance in another process opens its own ``AsyncClient``.
8. Reads opened with ``open`` check each range answer's ETag against the one seen at open,
   so a file replaced between two range reads raises instead of splicing two versions.
9. ``read_parts_at_once=N`` (storage option, default 1) fetches a large read of an open file
   (above 2 x ``READ_PART``) as 8 MiB parts, N at a time, and joins them: for links where
   one stream is bounded by latency. On loopback it is slower (pyarrow already reads
   column chunks concurrently; docs/performance.md), hence off by default.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import hashlib
import io
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fsspec.asyn import AsyncFileSystem, sync
from fsspec.caching import BaseCache, register_cache
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.spec import AbstractBufferedFile
from fsspec.transaction import Transaction

from . import _aio, _config, _wire
from ._values import ListingEntry
from ._wire.urls import TildeURL
from .exceptions import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    NotFoundError,
)

__all__ = ["TildeFile", "TildeFileSystem", "TildeTransaction"]

LIST_PAGE = 1000
DELETE_BATCH = 1000
DEFAULT_BLOCK_SIZE = 1024 * 1024
#: write-mode files stay in memory up to this size, then spill to a temporary file
SPOOL_MEMORY = 8 * 1024 * 1024
# With read_parts_at_once > 1, a read of an open file larger than two of these is fetched
# as parts at once (subtlety 9).
READ_PART = 8 * 1024 * 1024


#: the sessions of the write call running in this context (`TildeFileSystem._batched`)
_CALL_SESSIONS: contextvars.ContextVar[dict[tuple[str, str], asyncio.Task[str]] | None] = \
    contextvars.ContextVar("tilde_fsspec_call_sessions", default=None)


def translate(err: Exception, path: str) -> Exception:
    """The one table from API errors to the ``OSError``s fsspec users catch; the API error
    stays attached as ``__cause__`` (the ``tilde`` CLI tells a refused key by it)."""
    out: Exception
    if isinstance(err, NotFoundError):
        out = FileNotFoundError(errno.ENOENT, err.message or "not found", path)
    elif isinstance(err, (AuthenticationError, ForbiddenError)):
        out = PermissionError(errno.EACCES, err.message or "permission denied", path)
    elif isinstance(err, ConflictError):
        out = FileExistsError(errno.EEXIST, err.message or "conflict", path)
    else:
        return err
    out.__cause__ = err
    return out


def _read_only(path: str) -> PermissionError:
    return PermissionError(errno.EROFS, "a tilde:// URL at a commit (@ref) is read-only", path)


class TildeTransaction(Transaction):
    """One session per repository written, one commit each at exit (subtlety 3).

    ``message`` and ``metadata`` may be set before the block ends; after it,
    ``commit_ids`` maps ``"org/repo"`` to the commit made.
    """

    def __init__(self, fs: TildeFileSystem, message: str | None = None,
                 metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(fs)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.commit_ids: dict[str, str] = {}
        self.tfs = fs

    def start(self) -> None:
        if not self.tfs._intrans:
            self.tfs._tx_sessions = {}
        super().start()

    def complete(self, commit: bool = True) -> None:
        fs = self.tfs
        try:
            super().complete(commit)  # files: no-ops, they uploaded at close
        finally:
            sessions, fs._tx_sessions = fs._tx_sessions, {}
            try:
                self.commit_ids = sync(fs.loop, fs._finish_sessions, sessions, commit,
                                       self.message, self.metadata)
            finally:  # a failed commit still ends the transaction
                fs._intrans = False
                fs._transaction = None


class TildeFileSystem(AsyncFileSystem):
    """fsspec filesystem over a Tilde endpoint (see the module docstring and docs/fsspec.md).

    Storage options: ``api_key``, ``endpoint_url`` (else env, then ``~/.tilde/config.yaml``),
    ``session_id`` (write into, and read from, an existing session; never commit),
    ``commit_message`` (message of the commits this instance makes), ``listings_ttl``
    (seconds; latest-commit listings), ``block_size``, ``cache_type`` (of ``open`` in read
    mode), ``multipart_threshold``/``part_size`` (uploads), plus fsspec's own.
    """

    protocol = ("tilde",)
    root_marker = ""
    async_impl = True
    transaction_type = TildeTransaction
    _transaction: TildeTransaction | None

    def __init__(self, api_key: str | None = None, endpoint_url: str | None = None, *,
                 session_id: str | None = None, commit_message: str | None = None,
                 listings_ttl: float = 10.0, block_size: int = DEFAULT_BLOCK_SIZE,
                 cache_type: str = "tilde-readahead",
                 multipart_threshold: int = _wire.SINGLE_UPLOAD_LIMIT,
                 part_size: int = _wire.MULTIPART_PART_SIZE,
                 read_parts_at_once: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        settings = _config.resolve(endpoint_url=endpoint_url, api_key=api_key)
        self.endpoint_url = settings.endpoint_url
        provider = None
        if settings.api_key is None and settings.credentials_uri:
            # inside a sandbox (spec 1.2 step 3): short-lived tokens from its endpoint
            from ._credentials import SandboxCredentialsProvider

            provider = SandboxCredentialsProvider(settings.credentials_uri).get_token
        self.api = _aio.AsyncAPI(settings.endpoint_url, settings.api_key, provider)
        self.session_id = session_id
        self.commit_message = commit_message
        self.listings_ttl = listings_ttl
        self.blocksize = block_size
        self.cache_type = cache_type
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.read_parts_at_once = max(1, int(read_parts_at_once))
        self._listings: dict[tuple[str, str, str | None, str | None, str],
                             tuple[float, list[dict[str, Any]]]] = {}
        self._tx_sessions: dict[tuple[str, str], asyncio.Task[str]] = {}

    # --- paths --------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return _wire.strip_scheme(str(path)).strip("/")

    @staticmethod
    def _url(path: str) -> TildeURL:
        return _wire.parse_url(path)

    @staticmethod
    def _name(url: TildeURL, key: str) -> str:
        ref = f"@{url.ref}" if url.ref else ""
        return f"{url.org}/{url.repo}{ref}" + (f"/{key}" if key else "")

    def __reduce__(self) -> Any:
        """Constructor arguments only (subtlety 7); fsspec's instance cache applies."""
        from fsspec.spec import make_instance

        return make_instance, (type(self), self.storage_args, self.storage_options)

    # --- sessions and requests ------------------------------------------------------

    def _read_view(self, url: TildeURL) -> tuple[str | None, str | None]:
        """(session_id, ref) for a read (subtlety 2)."""
        if url.ref:
            return None, url.ref
        if self.session_id:
            return self.session_id, None
        task = self._tx_sessions.get((url.org, url.repo))
        if task is not None and task.done() and not task.cancelled() and not task.exception():
            return task.result(), None
        return None, None

    async def _send(self, wire: _wire.WireRequest, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self.api.send(wire, **kw)
        except APIError as err:
            raise translate(err, path) from err

    async def _call(self, wire: _wire.WireRequest, path: str) -> Any:
        try:
            return await self.api.call(wire)
        except APIError as err:
            raise translate(err, path) from err

    async def _shared_session(self, sessions: dict[tuple[str, str], asyncio.Task[str]],
                              org: str, repo: str) -> str:
        """The session of this repository in ``sessions``, created on first use (one
        creation even when many writes start at once)."""
        key = (org, repo)
        task = sessions.get(key)
        if task is None:
            task = asyncio.ensure_future(self._create_session(org, repo))
            sessions[key] = task
        return await task

    async def _batched(self, what: str, run: Callable[[], Awaitable[Any]]) -> Any:
        """Run one write call (many files) as one session and one commit per repository,
        unless a transaction or a named session already decides (subtlety 3)."""
        if self.session_id or self._intrans or _CALL_SESSIONS.get() is not None:
            return await run()
        sessions: dict[tuple[str, str], asyncio.Task[str]] = {}
        token = _CALL_SESSIONS.set(sessions)
        try:
            result = await run()
        except BaseException:
            _CALL_SESSIONS.reset(token)
            await self._finish_sessions(sessions, False, None, {})
            raise
        _CALL_SESSIONS.reset(token)
        await self._finish_sessions(sessions, True, self.commit_message or f"fsspec: {what}",
                                    {})
        return result

    async def _create_session(self, org: str, repo: str) -> str:
        body = await self._call(_wire.create_session(org, repo), f"{org}/{repo}")
        return _wire.parse_session_id(body)

    @asynccontextmanager
    async def _writing(self, path: str, what: str) -> AsyncIterator[tuple[TildeURL, str]]:
        """(url, session id) to stage one write call in, committed after it when it is
        its own session (subtlety 3)."""
        url = self._url(path)
        if url.ref:
            raise _read_only(path)
        self._drop_listings(url)
        if self.session_id:
            yield url, self.session_id
        elif self._intrans:
            yield url, await self._shared_session(self._tx_sessions, url.org, url.repo)
        elif (call := _CALL_SESSIONS.get()) is not None:
            yield url, await self._shared_session(call, url.org, url.repo)
        else:
            sid = await self._create_session(url.org, url.repo)
            try:
                yield url, sid
            except BaseException:
                await self._rollback(url.org, url.repo, sid)
                raise
            message = self.commit_message or f"fsspec: {what} {url.path}".rstrip()
            await self._commit(url.org, url.repo, sid, message, {})
        self._drop_listings(url)

    async def _commit(self, org: str, repo: str, sid: str, message: str,
                      metadata: Mapping[str, str]) -> str:
        """Commit; a session with nothing staged (e.g. every write was a no-op) is rolled
        back instead and gives ""."""
        try:
            body = await self.api.call(_wire.commit_session(org, repo, sid, message, metadata))
        except BadRequestError as err:
            if err.code != "no_changes":
                raise
            await self._rollback(org, repo, sid)
            return ""
        except ConflictError:
            raise  # another commit changed these paths: not a "file exists"
        except APIError as err:
            raise translate(err, f"{org}/{repo}") from err
        return _wire.parse_commit_id(body)

    async def _rollback(self, org: str, repo: str, sid: str) -> None:
        try:
            await self.api.send(_wire.rollback_session(org, repo, sid))
        except Exception:  # the error that made us roll back is the one to report
            pass

    async def _finish_sessions(self, sessions: dict[tuple[str, str], asyncio.Task[str]],
                               commit: bool, message: str | None,
                               metadata: Mapping[str, str]) -> dict[str, str]:
        """Commit (or roll back) each session; {"org/repo": commit id} of the commits made.
        When one commit fails, the sessions not yet committed are rolled back and the
        error is raised: atomic per repository, not across repositories."""
        out: dict[str, str] = {}
        pending = list(sessions.items())
        try:
            while pending:
                (org, repo), task = pending.pop(0)
                try:
                    sid = await task
                except Exception:
                    continue  # never created: nothing staged
                self._drop_listings(TildeURL(org, repo, None, ""))
                if not commit:
                    await self._rollback(org, repo, sid)
                    continue
                msg = message or self.commit_message or "fsspec transaction"
                commit_id = await self._commit(org, repo, sid, msg, metadata)
                if commit_id:
                    out[f"{org}/{repo}"] = commit_id
        except BaseException:
            for (org, repo), task in pending:
                if task.done() and not task.cancelled() and task.exception() is None:
                    await self._rollback(org, repo, task.result())
            raise
        return out

    def start_transaction(self, message: str | None = None,
                          metadata: Mapping[str, str] | None = None) -> TildeTransaction:
        """Begin a transaction (also usable as ``with fs.start_transaction(message=...)``)."""
        tx = TildeTransaction(self, message, metadata)
        self._transaction = tx
        tx.start()
        return tx

    def end_transaction(self) -> None:
        """Commit the current transaction (fsspec's non-context form)."""
        if self._transaction is not None:
            self._transaction.complete(commit=True)

    # --- listing cache ------------------------------------------------------------------

    def _drop_listings(self, url: TildeURL) -> None:
        for k in list(self._listings):  # a snapshot: file closes call this from other threads
            if k[0] == url.org and k[1] == url.repo:
                self._listings.pop(k, None)

    def invalidate_cache(self, path: str | None = None) -> None:
        if path is None:
            self._listings.clear()
            return
        try:
            url = self._url(self._strip_protocol(path))
        except ValueError:
            self._listings.clear()
            return
        self._drop_listings(url)

    def _cached_listing(self, key: tuple[str, str, str | None, str | None, str]
                ) -> list[dict[str, Any]] | None:
        hit = self._listings.get(key)
        if hit is None:
            return None
        stamp, entries = hit
        if key[2] is None and time.monotonic() - stamp > self.listings_ttl:
            del self._listings[key]
            return None
        return entries

    # --- listing ------------------------------------------------------------------------

    def _file_info(self, url: TildeURL, key: str, size: int | None, etag: str,
                   last_modified: Any = None, metadata: Mapping[str, str] | None = None
                   ) -> dict[str, Any]:
        return {"name": self._name(url, key), "size": size or 0, "type": "file",
                "etag": etag.strip('"'), "last_modified": last_modified,
                "metadata": dict(metadata or {})}

    def _dir_info(self, url: TildeURL, key: str) -> dict[str, Any]:
        return {"name": self._name(url, key), "size": 0, "type": "directory"}

    async def _list(self, url: TildeURL, prefix: str, delimiter: str | None
                    ) -> AsyncIterator[ListingEntry]:
        session_id, ref = self._read_view(url)
        after: str | None = None
        while True:
            body = await self._call(_wire.list_objects(
                url.org, url.repo, session_id=session_id, ref=ref, prefix=prefix or None,
                delimiter=delimiter, after=after, amount=LIST_PAGE), self._name(url, prefix))
            page = _wire.parse_page(body, _wire.parse_listing_entry)
            for item in page.items:
                yield item
            after = page.next_after
            if after is None:
                return

    def _entry_info(self, url: TildeURL, item: ListingEntry) -> dict[str, Any]:
        if item.type == "prefix":
            return self._dir_info(url, item.path.rstrip("/"))
        e = item.entry
        return self._file_info(url, item.path, e.size if e else 0, e.e_tag if e else "",
                               e.last_modified if e else None, e.metadata if e else None)

    async def _ls_dir(self, url: TildeURL, refresh: bool) -> list[dict[str, Any]]:
        """The directory's children, [] when it has none (cached, subtlety 5)."""
        session_id, ref = self._read_view(url)
        key = (url.org, url.repo, ref, session_id, url.path)
        if not refresh:
            hit = self._cached_listing(key)
            if hit is not None:
                return hit
        prefix = url.path + "/" if url.path else ""
        entries = [self._entry_info(url, item) async for item in self._list(url, prefix, "/")]
        self._listings[key] = (time.monotonic(), entries)
        return entries

    async def _ls_above_repos(self, path: str) -> list[dict[str, Any]]:
        """``tilde://`` lists the organizations the key sees, ``tilde://ORG`` its
        repositories, as directories (not cached: they are not versioned)."""
        if not path:
            body = await self._call(_wire.list_organizations(), "")
            names = [o.name for o in _wire.parse_page(body, _wire.parse_organization).items]
        else:
            names, after = [], None
            while True:
                body = await self._call(_wire.list_repositories(path, after=after), path)
                page = _wire.parse_page(body, _wire.parse_repository)
                names += [f"{path}/{r.name}" for r in page.items]
                after = page.next_after
                if after is None:
                    break
        return [{"name": n, "size": 0, "type": "directory"} for n in sorted(names)]

    async def _ls(self, path: str, detail: bool = True, refresh: bool = False,
                  **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        if "/" not in path:  # "" or "ORG": above the repositories
            entries = await self._ls_above_repos(path)
            return entries if detail else [e["name"] for e in entries]
        url = self._url(path)
        entries = await self._ls_dir(url, refresh)
        if not entries and url.path:
            info = await self._info(path)  # a file lists as itself, else ENOENT
            if info["type"] == "file":
                entries = [info]
            else:
                raise FileNotFoundError(errno.ENOENT, "no such directory", path)
        return entries if detail else [e["name"] for e in entries]

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        if not path:
            return {"name": "", "size": 0, "type": "directory"}
        if "/" not in path:  # an organization: there if it answers
            await self._call(_wire.get_organization(path), path)
            return {"name": path, "size": 0, "type": "directory"}
        url = self._url(path)
        if not url.path:  # the repository's root: there if the repository is
            await self._ls_dir(url, refresh=False)
            return self._dir_info(url, "")
        parent = url.with_path(url.path.rpartition("/")[0])
        session_id, ref = self._read_view(url)
        cached = self._cached_listing((url.org, url.repo, ref, session_id, parent.path))
        if cached is not None:
            for e in cached:
                if e["name"] == path:
                    return e
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)
        found = await self._head(url)
        if found is not None:
            return found
        body = await self._call(_wire.list_objects(
            url.org, url.repo, session_id=session_id, ref=ref, prefix=url.path + "/",
            delimiter="/", amount=1), path)
        if _wire.parse_page(body, _wire.parse_listing_entry).items:
            return self._dir_info(url, url.path)
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", path)

    async def _head(self, url: TildeURL) -> dict[str, Any] | None:
        """The object's info from one HEAD, None when there is no object at the key."""
        session_id, ref = self._read_view(url)
        response = await self.api.send(_wire.head_object(
            url.org, url.repo, url.path, session_id=session_id, ref=ref), check=False)
        await response.aclose()
        if response.is_success:
            meta = _wire.parse_object_metadata(response.headers)
            return self._file_info(url, url.path, meta.content_length, meta.etag or "")
        if response.status_code != 404:
            raise translate(await self.api.error(response), self._name(url, url.path))
        return None

    async def _find(self, path: str, maxdepth: int | None = None, withdirs: bool = False,
                    **kwargs: Any) -> Any:
        """One recursive listing (no delimiter); directories derived from the keys."""
        detail = kwargs.pop("detail", False)
        path = self._strip_protocol(path)
        url = self._url(path)
        prefix = url.path + "/" if url.path else ""
        out: dict[str, dict[str, Any]] = {}
        async for item in self._list(url, prefix, None):
            if item.type != "object":
                continue
            parts = item.path[len(prefix):].split("/")
            if maxdepth is None or len(parts) <= maxdepth:
                out[self._name(url, item.path)] = self._entry_info(url, item)
            if withdirs:
                for i in range(1, len(parts)):
                    if maxdepth is not None and i > maxdepth:
                        break
                    d = prefix + "/".join(parts[:i])
                    out.setdefault(self._name(url, d), self._dir_info(url, d))
        if out and withdirs and url.path:
            out[path] = self._dir_info(url, url.path)
        if not out and url.path:
            try:
                info = await self._info(path)
            except FileNotFoundError:
                info = {}
            if info.get("type") == "file":
                out[path] = info
        names = sorted(out)
        return {n: out[n] for n in names} if detail else names

    # --- reads --------------------------------------------------------------------------

    async def _cat_file(self, path: str, start: int | None = None, end: int | None = None,
                        **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = (await self._info(path))["size"]
            start = start + size if start is not None and start < 0 else start
            end = end + size if end is not None and end < 0 else end
            start = max(start or 0, 0)
        data, _ = await self._get_range(path, start, end)
        return data

    async def _get_range(self, path: str, start: int | None, end: int | None
                         ) -> tuple[bytes, str]:
        """Bytes [start, end) and the answer's ETag (unquoted)."""
        url = self._url(path)
        start = start or 0
        if end is not None and end <= start:
            return b"", ""
        byte_range = None if start == 0 and end is None else (start, None if end is None
                                                                else end - 1)
        session_id, ref = self._read_view(url)
        response = await self._send(_wire.get_object(
            url.org, url.repo, url.path, session_id=session_id, ref=ref,
            byte_range=byte_range), path, follow_redirects=True, check=False)
        if response.status_code == 416:
            await response.aclose()
            return b"", ""
        if not response.is_success:
            raise translate(await self.api.error(response), path)
        data = response.content
        if response.status_code == 200 and byte_range is not None:  # Range ignored
            data = data[start:end]
        return data, (response.headers.get("ETag") or "").strip('"')

    async def _get_range_parts(self, path: str, start: int, end: int
                               ) -> tuple[bytes, str]:
        """``_get_range`` of a large range as concurrent part GETs (subtlety 9); the parts
        must all come from one version of the object (one ETag), else ESTALE."""
        if end - start <= 2 * READ_PART or self.read_parts_at_once == 1:
            return await self._get_range(path, start, end)
        gate = asyncio.Semaphore(self.read_parts_at_once)

        async def part(lo: int) -> tuple[bytes, str]:
            async with gate:
                return await self._get_range(path, lo, min(end, lo + READ_PART))

        parts = await asyncio.gather(*(part(lo) for lo in range(start, end, READ_PART)))
        etags = {etag for _, etag in parts if etag}
        if len(etags) > 1:
            raise OSError(errno.ESTALE, "the object changed while it was being read", path)
        return b"".join(data for data, _ in parts), etags.pop() if etags else ""

    async def _get_file(self, rpath: str, lpath: str, callback: Any = DEFAULT_CALLBACK,
                        outfile: Any = None, **kwargs: Any) -> None:
        """Stream the object to ``lpath``, writing in a worker thread."""
        rpath = self._strip_protocol(rpath)
        if await asyncio.to_thread(os.path.isdir, lpath):
            return
        url = self._url(rpath)
        session_id, ref = self._read_view(url)
        response = await self._send(_wire.get_object(
            url.org, url.repo, url.path, session_id=session_id, ref=ref), rpath,
            follow_redirects=True, stream=True)
        f = outfile or await asyncio.to_thread(open, lpath, "wb")
        try:
            callback.set_size(int(response.headers.get("Content-Length") or 0) or None)
            async for chunk in response.aiter_bytes(_aio.READ_CHUNK):
                await asyncio.to_thread(f.write, chunk)
                callback.relative_update(len(chunk))
        finally:
            await response.aclose()
            if outfile is None:
                await asyncio.to_thread(f.close)

    def _open(self, path: str, mode: str = "rb", block_size: int | None = None,
              autocommit: bool = True, cache_options: dict[str, Any] | None = None,
              **kwargs: Any) -> TildeFile:
        path = self._strip_protocol(path)
        if mode not in ("rb", "wb", "xb"):
            raise NotImplementedError(f"mode {mode!r}: tilde files open as rb, wb or xb")
        if mode != "rb" and self._url(path).ref:
            raise _read_only(path)
        if mode == "xb" and self.exists(path):
            raise FileExistsError(errno.EEXIST, "file exists", path)
        if mode == "rb":
            info = self.info(path)
            if info["type"] != "file":
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            kwargs["size"] = info["size"]
            kwargs["details"] = info
        return TildeFile(self, path, mode="rb" if mode == "rb" else "wb",
                         block_size=block_size or self.blocksize, autocommit=autocommit,
                         cache_type=kwargs.pop("cache_type", self.cache_type),
                         cache_options=cache_options, **kwargs)

    # --- writes -------------------------------------------------------------------------

    async def _upload(self, url: TildeURL, sid: str, source: _aio.UploadSource) -> None:
        plan = _wire.put_plan(url.org, url.repo, url.path, session_id=sid,
                              base=self.api.base_url, state=self.api.upload_state,
                              size=source.size, single_limit=self.multipart_threshold)
        try:
            await _aio.drive_upload(self.api, plan, source)
        except APIError as err:
            raise translate(err, self._name(url, url.path)) from err

    async def _upload_file(self, path: str, f: Any, size: int, what: str) -> None:
        if not self._url(path).path:
            raise IsADirectoryError(errno.EISDIR, "the repository root is not a file", path)
        async with self._writing(path, what) as (url, sid):
            await self._upload(url, sid, _aio.UploadSource(f, size, self.part_size))

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite",
                         **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if mode == "create" and await self._exists(path):
            raise FileExistsError(errno.EEXIST, "file exists", path)
        data = bytes(value)
        await self._upload_file(path, io.BytesIO(data), len(data), "pipe")

    async def _put_file(self, lpath: str, rpath: str, callback: Any = DEFAULT_CALLBACK,
                        mode: str = "overwrite", **kwargs: Any) -> None:
        rpath = self._strip_protocol(rpath)
        if await asyncio.to_thread(os.path.isdir, lpath):
            return  # no empty directories (subtlety 4)
        if mode == "create" and await self._exists(rpath):
            raise FileExistsError(errno.EEXIST, "file exists", rpath)
        size = await asyncio.to_thread(os.path.getsize, lpath)
        callback.set_size(size)
        if await self._unchanged(lpath, rpath, size):
            callback.relative_update(size)
            return
        f = await asyncio.to_thread(open, lpath, "rb")
        try:
            await self._upload_file(rpath, f, size, "put")
        finally:
            await asyncio.to_thread(f.close)
        callback.relative_update(size)

    async def _unchanged(self, lpath: str, rpath: str, size: int) -> bool:
        """True when the target holds these bytes already (subtlety 6)."""
        url = self._url(rpath)
        info = await self._head(url) if url.path else None
        etag = (info or {}).get("etag") or ""
        if info is None or info["size"] != size or len(etag) != 32:
            return False
        return await asyncio.to_thread(_md5_file, lpath) == etag

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        await self._rm([self._strip_protocol(path)])

    async def _rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None,
                  **kwargs: Any) -> None:
        """Batched deletes (``objects/delete``), one commit per repository and call."""
        paths = await self._expand_path(path, recursive=recursive, maxdepth=maxdepth)
        await self._batched(_describe("rm", path), lambda: self._rm_paths(paths))

    async def _rm_paths(self, paths: list[str]) -> None:
        """Directory names in ``paths`` are sent too: deleting a key that does not exist
        changes nothing, and sparing an ``info`` per path is worth more. Nothing deleted
        at all means the paths did not exist: FileNotFoundError (the session rolls back)."""
        by_repo: dict[str, list[str]] = {}
        for p in paths:
            url = self._url(p)
            by_repo.setdefault(self._name(url, ""), []).append(url.path)
        deleted = 0
        for root, keys in by_repo.items():
            async with self._writing(root, "rm") as (url, sid):
                for i in range(0, len(keys), DELETE_BATCH):
                    deleted += _wire.parse_deleted_count(await self._call(_wire.delete_objects(
                        url.org, url.repo, keys[i:i + DELETE_BATCH], session_id=sid), root))
                if not deleted:
                    raise FileNotFoundError(errno.ENOENT, "no such file", paths[0])

    async def _pipe(self, path: Any, value: Any = None, **kwargs: Any) -> Any:
        return await self._batched(_describe("pipe", path), lambda: super(
            TildeFileSystem, self)._pipe(
            path, value, **kwargs))

    async def _put(self, lpath: Any, rpath: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._batched(_describe("put", rpath), lambda: super(
            TildeFileSystem, self)._put(
            lpath, rpath, *args, **kwargs))

    async def _copy(self, path1: Any, path2: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._batched(_describe("copy", path2), lambda: super(
            TildeFileSystem, self)._copy(
            path1, path2, *args, **kwargs))

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Server-side copy within one repository; otherwise read then write."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        src, dst = self._url(path1), self._url(path2)
        info = await self._info(path1)
        if info["type"] != "file":
            return  # a directory: its files are copied one by one by fsspec
        if src.ref or (src.org, src.repo) != (dst.org, dst.repo):
            await self._pipe_file(path2, await self._cat_file(path1))
            return
        async with self._writing(path2, "cp") as (url, sid):
            await self._call(_wire.copy_object(url.org, url.repo, src.path, url.path,
                                               session_id=sid), path1)

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Nothing to send: a directory exists while a key lies under it (subtlety 4)."""
        self._url(self._strip_protocol(path))

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if not exist_ok and self._url(path).path and await self._isdir(path):
            raise FileExistsError(errno.EEXIST, "directory exists", path)

    def created(self, path: str) -> Any:
        raise NotImplementedError("objects carry no creation time")

    def modified(self, path: str) -> Any:
        url = self._url(self._strip_protocol(path))
        for e in self.ls(self._name(url, url.path.rpartition("/")[0])):
            if e["name"] == self._strip_protocol(path):
                return e.get("last_modified")
        raise FileNotFoundError(errno.ENOENT, "no such file", path)

    def ukey(self, path: str) -> str:
        """The content hash: equal keys mean equal bytes."""
        info = self.info(path)
        return str(info.get("etag") or info["name"])

    def checksum(self, path: str) -> int:
        etag = str(self.info(path).get("etag") or "").split("-")[0]
        try:
            return int(etag, 16)
        except ValueError:
            return super().checksum(path)


class FloorReadAheadCache(BaseCache):
    """The default cache of ``open("rb")``: keeps the last range fetched; a miss fetches
    from the read's start to its end, or one ``blocksize`` when the read is shorter.

    fsspec's "readahead" adds a whole block *after* every read, which for a columnar
    reader (pyarrow coalesces the column chunks it needs into large reads) fetches about
    a block too much per read; here small sequential reads still cost one GET per block,
    while a large or footer read fetches exactly what it asks for.
    """

    name = "tilde-readahead"

    def __init__(self, blocksize: int, fetcher: Any, size: int) -> None:
        super().__init__(blocksize, fetcher, size)
        self.data = b""
        self.start = 0

    def _fetch(self, start: int | None, end: int | None) -> bytes:
        start = 0 if start is None else start
        end = self.size if end is None else min(end, self.size)
        if start >= end:
            return b""
        stop = self.start + len(self.data)
        if self.start <= start and end <= stop:
            self.hit_count += 1
            return self.data[start - self.start:end - self.start]
        self.miss_count += 1
        head = b""
        if self.start <= start < stop:  # the cached tail is the read's head
            head, start = self.data[start - self.start:], stop
        fetch_end = min(self.size, max(end, start + self.blocksize))
        self.total_requested_bytes += fetch_end - start
        self.data = self.fetcher(start, fetch_end)
        self.start = start
        return head + self.data[:end - start]


register_cache(FloorReadAheadCache, clobber=True)


def _describe(op: str, target: Any) -> str:
    """The default commit message's tail: the operation and its target(s)."""
    if isinstance(target, str):
        try:
            return f"{op} {_wire.parse_url(target).path}".rstrip()
        except ValueError:
            return op
    if isinstance(target, Mapping):
        target = list(target)
    return f"{op} {len(target)} paths" if isinstance(target, list) else op


def _md5_file(path: str) -> str:
    """Blocking: call in a thread."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(_aio.READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class TildeFile(AbstractBufferedFile):
    """Read: range GETs through fsspec's block caches. Write: spooled, uploaded at close
    (multipart above the threshold) into the write session of subtlety 3."""

    fs: TildeFileSystem

    def __init__(self, fs: TildeFileSystem, path: str, mode: str = "rb",
                 details: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(fs, path, mode=mode, **kwargs)
        if details is not None:
            self.details = details
        self._etag = str(self.details.get("etag") or "") if mode == "rb" else ""
        self._spool: Any = None

    def _fetch_range(self, start: int, end: int) -> bytes:
        data, etag = sync(self.fs.loop, self.fs._get_range_parts, self.path, start, end)
        if self._etag and etag and etag != self._etag:
            raise OSError(errno.ESTALE, "the object changed while it was being read",
                          self.path)
        return data

    def _initiate_upload(self) -> None:
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115

    def _upload_chunk(self, final: bool = False) -> bool:
        self._spool.write(self.buffer.getvalue())
        if not final:
            return True
        size = self._spool.tell()
        try:
            sync(self.fs.loop, self.fs._upload_file, self.path, self._spool, size, "write")
        finally:
            self._spool.close()
        return True

    def commit(self) -> None:
        """Nothing left to do: the bytes went to the session at close."""

    def discard(self) -> None:
        """Nothing to undo here: the transaction rolls its session back."""
