"""Every request the mount must not repeat blindly, with its answer lost (tests/faultproxy).

Each case drives the daemon's `HttpRemote` (no kernel: fast) through the proxy with one
scripted fault on one route: the connection reset after the server applied the request,
the answer cut short, or (commit) the answer delayed past the client's read timeout.
The call must report what the server did, and the server must hold it exactly once
(remote.py, subtlety 10).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import trio

from faultproxy import FaultProxy
from figures import record
from tilde import exceptions as exc
from tilde_mount.remote import BytesSource, HttpRemote, View

Case = Callable[[HttpRemote, str], Awaitable[None]]


class Server:
    """Plain-HTTP checks of one repository (no proxy)."""

    def __init__(self, server: Any, repo: Any) -> None:
        self.base = (f"{server.endpoint}/api/v1/organizations/{repo.org}/repositories/"
                     f"{repo.repo}")
        self.h = {"Authorization": f"Bearer {server.api_key}"}

    def get(self, route: str, **params: Any) -> httpx.Response:
        return httpx.get(self.base + route, params=params, headers=self.h, timeout=30,
                         follow_redirects=True)

    def object(self, path: str, sid: str) -> bytes | None:
        r = self.get("/object", path=path, session_id=sid)
        return None if r.status_code == 404 else r.content

    def commits(self) -> list[dict[str, Any]]:
        return list(self.get("/log", amount=100).json()["results"])


def _run(server: Any, kind: str, method: str, path: str,
         case: Callable[[HttpRemote, str, Server], Awaitable[None]], *,
         timeout: float = 30.0, long_stall: float = 35.0, **remote_kw: Any) -> FaultProxy:
    repo = server.new_repo()
    check = Server(server, repo)
    with FaultProxy(server.endpoint, long_stall=long_stall) as proxy:
        async def main() -> None:
            remote = HttpRemote(proxy.url, repo.path, server.api_key, backoff_base=0.01,
                                timeout=timeout, **remote_kw)
            try:
                sid = await remote.create_session()
                await remote.upload("seed.txt", BytesSource(b"seed\n"), session_id=sid)
                rule = proxy.script(kind, method=method, path=path)
                await case(remote, sid, check)
                assert rule.fired == 1, proxy.by_route
            finally:
                await remote.aclose()

        trio.run(main)
    return proxy


BIG = bytes(range(256)) * 10_000  # 2.5 MB: three parts of 1 MiB when multipart


async def _finalize(remote: HttpRemote, sid: str, check: Server) -> None:
    etag = await remote.upload("f.bin", BytesSource(BIG), session_id=sid)
    assert etag == hashlib.md5(BIG).hexdigest()
    assert check.object("f.bin", sid) == BIG


async def _complete(remote: HttpRemote, sid: str, check: Server) -> None:
    await remote.upload("m.bin", BytesSource(BIG), session_id=sid)
    assert check.object("m.bin", sid) == BIG


async def _delete(remote: HttpRemote, sid: str, check: Server) -> None:
    await remote.delete("seed.txt", session_id=sid)
    assert check.object("seed.txt", sid) is None


async def _copy(remote: HttpRemote, sid: str, check: Server) -> None:
    await remote.copy("seed.txt", "copy.txt", session_id=sid)
    assert check.object("copy.txt", sid) == b"seed\n"


async def _delete_many(remote: HttpRemote, sid: str, check: Server) -> None:
    await remote.delete_many(["seed.txt"], session_id=sid)
    assert check.object("seed.txt", sid) is None


async def _create(remote: HttpRemote, sid: str, check: Server) -> None:
    other = await remote.create_session()
    await remote.upload("x.txt", BytesSource(b"x"), session_id=other)
    assert check.object("x.txt", other) == b"x"


async def _commit(remote: HttpRemote, sid: str, check: Server) -> None:
    outcome = await remote.commit(sid, "lost answer", {"k": "v"})
    commits = check.commits()
    assert [c["message"] for c in commits] == ["lost answer"]
    assert outcome.status == "committed" and outcome.commit_id == commits[0]["id"]


async def _rollback(remote: HttpRemote, sid: str, check: Server) -> None:
    await remote.rollback(sid)
    r = check.get("/changes", session_id=sid, amount=1)
    assert r.status_code == 404  # closed
    assert check.commits() == []


MULTIPART = {"single_upload_limit": 1024 * 1024, "part_size": 1024 * 1024}
CASES: dict[str, tuple[str, str, str, Any, dict[str, Any]]] = {
    "finalize reset": ("reset_after", "POST", r"/object/finalize$", _finalize, {}),
    "finalize cut": ("truncate", "POST", r"/object/finalize$", _finalize, {}),
    "multipart complete": ("reset_after", "POST", r"/object/multipart/complete$",
                           _complete, MULTIPART),
    "delete": ("reset_after", "DELETE", r"/object$", _delete, {}),
    "copy": ("reset_after", "POST", r"/object/copy$", _copy, {}),
    "delete many": ("truncate", "POST", r"/objects/delete$", _delete_many, {}),
    "session create": ("reset_after", "POST", r"/sessions$", _create, {}),
    "commit reset": ("reset_after", "POST", r"/sessions/[^/]+$", _commit, {}),
    "commit cut": ("truncate", "POST", r"/sessions/[^/]+$", _commit, {}),
    "commit never sent": ("reset_before", "POST", r"/sessions/[^/]+$", _commit, {}),
    "commit 503": ("status_503", "POST", r"/sessions/[^/]+$", _commit, {}),
    "rollback": ("reset_after", "DELETE", r"/sessions/[^/]+$", _rollback, {}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_lost_answer(server: Any, name: str) -> None:
    kind, method, path, case, kw = CASES[name]
    proxy = _run(server, kind, method, path, case, **kw)
    assert proxy.counts[kind] == 1
    record("faults", lost_answer_cases=1)


def test_commit_answer_later_than_the_timeout(server: Any) -> None:
    """The server applied the commit, the answer came after the client gave up."""
    proxy = _run(server, "long_stall", "POST", r"/sessions/[^/]+$", _commit,
                 timeout=1.0, long_stall=2.0)
    assert proxy.counts["long_stall"] == 1


def test_commit_of_a_session_closed_meanwhile_is_not_reported_committed(server: Any) -> None:
    """Lost answer, then the probe finds the session closed with no commit of it (another
    client rolled it back): an error, never a made-up commit id."""
    async def case(remote: HttpRemote, sid: str, check: Server) -> None:
        r = await trio.to_thread.run_sync(
            lambda: httpx.delete(f"{check.base}/sessions/{sid}", headers=check.h))
        assert r.status_code == 204
        with pytest.raises(exc.NotFoundError) as info:
            await remote.commit(sid, "never", None)
        assert "closed without a commit" in str(info.value)
        assert check.commits() == []

    _run(server, "reset_before", "POST", r"/sessions/[^/]+$", case)


@pytest.fixture(scope="module")
def legacy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A 0.7.4-era server: stage, PUT, then PUT .../finalize (no checksum in it)."""
    from bypath import root_conftest

    root = root_conftest()
    h = root.start_server(tmp_path_factory.mktemp("legacy"), args=["--wire", "legacy"])
    yield h
    root.stop_server(h)
    assert "Traceback" not in h.log(), h.log()[-6000:]


@pytest.mark.parametrize("kind", ["reset_after", "truncate"])
def test_lost_legacy_finalize(legacy_server: Any, kind: str) -> None:
    proxy = _run(legacy_server, kind, "PUT", r"/object/finalize$", _finalize)
    assert proxy.counts[kind] == 1
    assert proxy.by_route[("POST /api/v1{R}/object/stage", "ok")] >= 1


def test_reads_survive_cut_and_reset_answers(server: Any) -> None:
    async def case(remote: HttpRemote, sid: str, check: Server) -> None:
        await remote.upload("r.bin", BytesSource(BIG), session_id=sid)
        got = await remote.read_range("r.bin", 1000, 600_000, View(session_id=sid))
        assert got == BIG[1000:600_000]

    _run(server, "truncate", "GET", r"/object$", case)
