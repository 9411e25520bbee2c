"""Reads through a redirecting server (tilde-server --wire current --downloads redirect, signed
URLs on another origin): one redirect per object version, concurrent first reads sharing
it, expired URLs resolved again, and nothing read wrong on the way."""

from __future__ import annotations

import os
from typing import Any

import pytest
import trio

from tilde_mount.remote import HttpRemote, View

from .harness import Http


@pytest.fixture
def repo(redirecting_server: Any) -> Any:
    return redirecting_server.new_repo()


def test_one_redirect_per_object_and_expired_urls_resolved_again(redirecting_server: Any,
                                                                 repo: Any) -> None:
    redirecting, ref = redirecting_server, repo
    files = {name: os.urandom(1 << 20) for name in ("a.bin", "b.bin")}
    http = Http(redirecting, ref)
    for name, data in files.items():
        http.put(name, data)

    async def main() -> None:
        remote = HttpRemote(redirecting.endpoint, ref.path, redirecting.api_key)
        try:
            assert bytes(await remote.read_range("a.bin", 0, 10, View())) == files["a.bin"][:10]
            assert remote.redirects == 1
            got: dict[int, bytes] = {}

            async def read(i: int) -> None:
                got[i] = bytes(await remote.read_range("b.bin", i << 16, (i + 1) << 16, View()))

            async with trio.open_nursery() as nursery:  # eight first reads at once
                for i in range(8):
                    nursery.start_soon(read, i)
            assert b"".join(got[i] for i in range(8)) == files["b.bin"][:8 << 16]
            assert remote.redirects == 2, "the concurrent misses shared one redirect"
            kinds = remote.stats()["by_kind"]
            assert kinds["read"] == 2 and kinds["read_url"] == 9, kinds
            # the signed URLs expire (--download-url-ttl 2, valid 2 to 3 s: rounded up): 403
            await trio.sleep(3.2)
            assert bytes(await remote.read_range("b.bin", 100, 200, View())) \
                == files["b.bin"][100:200]
            assert remote.redirects == 3, "an expired URL is resolved once more"
        finally:
            await remote.aclose()

    trio.run(main)


def test_an_etag_other_than_the_cached_urls_version_resolves_again(
        redirecting_server: Any, repo: Any) -> None:
    redirecting, ref = redirecting_server, repo
    http = Http(redirecting, ref)
    http.put("f.bin", b"old" * 1000)

    async def main() -> None:
        remote = HttpRemote(redirecting.endpoint, ref.path, redirecting.api_key)
        try:
            old = await remote.head("f.bin", View())
            assert bytes(await remote.read_range("f.bin", 0, 3, View(), etag=old.etag)) == b"old"
            http.put("f.bin", b"new" * 1000)
            new = await remote.head("f.bin", View())
            assert new.etag != old.etag
            # the new version is another key: a new redirect, the new bytes
            assert bytes(await remote.read_range("f.bin", 0, 3, View(), etag=new.etag)) == b"new"
            assert remote.redirects == 2
        finally:
            await remote.aclose()

    trio.run(main)
