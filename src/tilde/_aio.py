"""The asyncio side of the client: one ``httpx.AsyncClient`` speaking ``tilde._wire``.

Used by the fsspec filesystem (``tilde.fsspec``); the sync client (``tilde._client``) does
the same work with blocking I/O. Subtleties:

1. One ``AsyncClient`` per (process, event loop): an httpx pool is bound to the loop that
   opened its connections, and a forked or unpickled filesystem must not reuse a parent's
   sockets. Nothing here is pickled.
2. The bearer (the API key, or a sandbox token fetched in a worker thread before each
   request) goes on API requests only. Object GETs follow redirects (signed URLs on
   another origin, tilde-api-changes.md 2.4); httpx drops ``Authorization`` when the origin
   changes, the rule ``tilde._client`` relies on too. Presigned PUTs never carry it.
3. Errors are built by ``_wire.error_for_response`` (the one status table) and translated
   to ``OSError`` subclasses by the caller, with the ``APIError`` chained.
4. The upload plan (``_wire.put_plan``) is a generator; `drive_upload` sends each step and
   throws failures back in so the plan decides fallbacks (legacy routes, 501 -> single).
   Parts of a multipart upload go up concurrently (at most `PART_CONCURRENCY`), each read
   from the source in a worker thread: no blocking file I/O on the loop. When one part
   fails the others are cancelled before the failure reaches the plan (which aborts).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import IO, Any

import httpx

from . import _wire
from ._values import PutObjectResult
from .exceptions import ConfigurationError, SerializationError, TransportError

PART_CONCURRENCY = 4
READ_CHUNK = 1024 * 1024
TIMEOUT = httpx.Timeout(120.0, connect=15.0)


class AsyncAPI:
    """Endpoint, key and the per-loop ``AsyncClient``s of one filesystem instance."""

    def __init__(self, endpoint_url: str, api_key: str | None,
                 token_provider: Callable[[], str] | None = None) -> None:
        """``token_provider``: a blocking ``get_token`` (the sandbox credentials provider,
        thread-safe and cached), called in a worker thread before each request."""
        self.base_url = _wire.base_url(endpoint_url)
        self._api_key = api_key
        self._token_provider = token_provider
        self._clients: dict[tuple[int, int], httpx.AsyncClient] = {}
        self.upload_state = _wire.UploadState()
        self.event_hooks: dict[str, list[Callable[..., Any]]] = {"request": [], "response": []}

    def http(self) -> httpx.AsyncClient:
        """The client of the running loop in this process (subtlety 1)."""
        key = (os.getpid(), id(asyncio.get_running_loop()))
        client = self._clients.get(key)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                headers={"User-Agent": _wire.USER_AGENT}, timeout=TIMEOUT,
                event_hooks={"request": [self._on_request], "response": [self._on_response]})
            self._clients[key] = client
        return client

    async def _on_request(self, request: httpx.Request) -> None:
        for hook in self.event_hooks["request"]:
            await hook(request)

    async def _on_response(self, response: httpx.Response) -> None:
        """``event_hooks`` are read per answer, so hooks added later apply to every
        client (tests count requests this way)."""
        for hook in self.event_hooks["response"]:
            await hook(response)

    async def _auth(self) -> dict[str, str]:
        if self._token_provider is not None:
            token = await asyncio.to_thread(self._token_provider)
            return {"Authorization": f"Bearer {token}"}
        if not self._api_key:
            raise ConfigurationError(
                "no Tilde API key: pass api_key=... in storage_options, set TILDE_API_KEY, "
                "or put api_key in ~/.tilde/config.yaml")
        return {"Authorization": f"Bearer {self._api_key}"}

    async def send(self, wire: _wire.WireRequest, *, follow_redirects: bool = False,
                   stream: bool = False, check: bool = True) -> httpx.Response:
        http = self.http()
        request = http.build_request(
            wire.method, self.base_url + wire.path, params=list(wire.params) or None,
            json=wire.json, headers={**(await self._auth()), **dict(wire.headers)})
        try:
            response = await http.send(request, stream=stream,
                                       follow_redirects=follow_redirects)
        except httpx.TransportError as exc:
            raise TransportError(f"{wire.method} {request.url} failed: {exc}", exc) from exc
        if check and not response.is_success:
            raise await self.error(response)
        return response

    @staticmethod
    async def error(response: httpx.Response) -> Exception:
        try:
            body = await response.aread()
        except httpx.HTTPError:
            body = b""
        finally:
            await response.aclose()
        return _wire.error_for_response(response.status_code, method=response.request.method,
                                        url=str(response.request.url), body=body)

    async def call(self, wire: _wire.WireRequest) -> Any:
        """Send and decode the JSON answer (None for an empty body)."""
        return decode(await self.send(wire))

    async def put_presigned(self, url: str, content: Any, length: int | None) -> httpx.Response:
        headers = {"Content-Type": _wire.UPLOAD_CONTENT_TYPE}
        if length is not None:
            headers["Content-Length"] = str(length)
        try:
            response = await self.http().put(url, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise TransportError(f"PUT {url} failed: {exc}", exc) from exc
        if not response.is_success:
            raise TransportError(f"PUT {url} -> {response.status_code}: {response.text[:200]}")
        return response

    async def aclose(self) -> None:
        key = (os.getpid(), id(asyncio.get_running_loop()))
        client = self._clients.pop(key, None)
        if client is not None:
            await client.aclose()


def decode(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return json.loads(response.content)
    except ValueError as exc:
        raise SerializationError(
            f"{response.request.method} {response.request.url}: response is not JSON") from exc


class UploadSource:
    """The bytes of one upload: a seekable binary file of known size, read in threads.

    A lock serialises seek+read so concurrent parts can share one file object.
    """

    def __init__(self, f: IO[bytes], size: int, part_size: int) -> None:
        self.f, self.size, self.part_size = f, size, part_size
        self._lock = threading.Lock()

    def _read_at(self, offset: int, n: int) -> bytes:
        with self._lock:
            self.f.seek(offset)
            return self.f.read(n)

    async def read_at(self, offset: int, n: int) -> bytes:
        return await asyncio.to_thread(self._read_at, offset, n)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The whole source from its start (again after a fallback)."""
        offset = 0
        while offset < self.size:
            chunk = await self.read_at(offset, min(READ_CHUNK, self.size - offset))
            if not chunk:
                return
            offset += len(chunk)
            yield chunk

    @property
    def part_count(self) -> int:
        return max(1, -(-self.size // self.part_size))


async def drive_upload(api: AsyncAPI, plan: _wire.Plan, source: UploadSource) -> PutObjectResult:
    """Run an upload plan with asyncio I/O (subtlety 4)."""
    reply: _wire.Reply | None = None
    error: BaseException | None = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(reply)  # type: ignore[arg-type]
        except StopIteration as stop:
            result: PutObjectResult = stop.value
            return result
        reply, error = None, None
        try:
            reply = await _perform(api, step, source)
        except Exception as exc:  # thrown into the plan, which decides
            error = exc


async def _call_step(api: AsyncAPI, step: _wire.Call) -> _wire.Reply:
    response = await api.send(step.request, check=False)
    if not (response.is_success or (step.redirect_ok and response.is_redirect)):
        raise await api.error(response)
    body = decode(response) if response.is_success else None
    return _wire.Reply(response.status_code, response.headers, body)


async def _perform(api: AsyncAPI, step: _wire.Step, source: UploadSource) -> _wire.Reply:
    if isinstance(step, _wire.Call):
        return await _call_step(api, step)
    if isinstance(step, _wire.PutBody):
        response = await api.put_presigned(step.url, source.chunks(), source.size)
        return _wire.Reply(response.status_code, response.headers)
    limiter = asyncio.Semaphore(PART_CONCURRENCY)

    async def one(number: int) -> tuple[int, str]:
        async with limiter:
            lookup = await _call_step(api, _wire.Call("part_url", step.lookup(number),
                                                      redirect_ok=True))
            url = _wire.part_upload_url(api.base_url, lookup.status, lookup.headers,
                                        lookup.body)
            offset = (number - 1) * source.part_size
            data = await source.read_at(offset, min(source.part_size, source.size - offset))
            response = await api.put_presigned(url, data, len(data))
            return number, response.headers.get("ETag", "")

    tasks = [asyncio.ensure_future(one(n)) for n in range(1, source.part_count + 1)]
    try:
        parts = await asyncio.gather(*tasks)
    except BaseException:  # the plan aborts the upload: no part may still be going up
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return _wire.Reply(200, {}, (sorted(parts), source.size))
