"""Helpers for the tilde-server tests: a tiny plain-httpx API client bound to a fresh repo.

Plain httpx on purpose, so these tests do not depend on the bundled client.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import httpx

from bypath import root_conftest

_root = root_conftest()
RepoRef = _root.RepoRef
ServerHandle = _root.ServerHandle
free_port = _root.free_port
server_cli = _root.server_cli
server_command = _root.server_command
start_server = _root.start_server
stop_server = _root.stop_server
unique = _root.unique


class Api:
    def __init__(self, server: ServerHandle, repo: RepoRef) -> None:
        self.server = server
        self.base = f"{server.endpoint}/api/v1"
        self.org, self.repo = repo.org, repo.repo
        self.R = f"{self.base}/organizations/{repo.org}/repositories/{repo.repo}"
        self.http = httpx.Client(headers={"Authorization": f"Bearer {server.api_key}"},
                                 timeout=10)

    def close(self) -> None:
        self.http.close()

    # -- sessions -------------------------------------------------------------------------
    def session(self) -> str:
        r = self.http.post(f"{self.R}/sessions")
        assert r.status_code == 201, r.text
        return str(r.json()["session_id"])

    def commit(self, sid: str, message: str = "m", **extra: Any) -> httpx.Response:
        return self.http.post(f"{self.R}/sessions/{sid}", json={"message": message, **extra})

    def commit_ok(self, sid: str, message: str = "m") -> str:
        r = self.commit(sid, message)
        assert r.status_code == 200, r.text
        return str(r.json()["commit_id"])

    # -- objects --------------------------------------------------------------------------
    def stage(self, sid: str, path: str) -> dict[str, Any]:
        r = self.http.post(f"{self.R}/object/stage", params={"session_id": sid, "path": path})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def finalize(self, sid: str, path: str, st: dict[str, Any], **over: Any) -> httpx.Response:
        body = {"physical_address": st["physical_address"], "signature": st["signature"],
                "content_type": "application/octet-stream", **over}
        return self.http.put(f"{self.R}/object/finalize", json=body,
                             params={"session_id": sid, "path": path,
                                     "expires_at": st["expires_at"]})

    def put(self, sid: str, path: str, data: bytes) -> str:
        st = self.stage(sid, path)
        r = httpx.put(st["upload_url"], content=data,
                      headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        r = self.finalize(sid, path, st)
        assert r.status_code == 200, r.text
        return str(r.json()["etag"])

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(f"{self.R}/object", params={"path": path, **params})

    def read(self, path: str, **params: Any) -> bytes:
        r = self.get(path, **params)
        assert r.status_code == 200, r.text
        return r.content

    def ls(self, **params: Any) -> dict[str, Any]:
        r = self.http.get(f"{self.R}/objects", params=params)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def paths(self, **params: Any) -> list[str]:
        """All paths of a listing, following next_offset."""
        out: list[str] = []
        params.setdefault("amount", 1000)
        while True:
            body = self.ls(**params)
            out += [x["path"] for x in body["results"]]
            if not body["pagination"]["has_more"]:
                return out
            params["after"] = body["pagination"]["next_offset"]

    def delete(self, sid: str, path: str) -> httpx.Response:
        return self.http.delete(f"{self.R}/object", params={"session_id": sid, "path": path})


@contextlib.contextmanager
def one_repo_on(servers: list[ServerHandle]) -> Iterator[list[Api]]:
    """An Api per server of one deployment, all on one new repository (made through the
    first); closed at the end."""
    ref = RepoRef(unique("org"), unique("repo"))
    out = [Api(h, ref) for h in servers]
    a = out[0]
    assert a.http.post(f"{a.base}/organizations",
                       json={"name": ref.org, "display_name": ref.org}).status_code == 201
    assert a.http.post(f"{a.base}/organizations/{ref.org}/repositories",
                       json={"name": ref.repo}).status_code == 201
    try:
        yield out
    finally:
        for api in out:
            api.close()


def blob_ids(server: ServerHandle) -> set[str]:
    """The blob ids a server's deployment holds, on any --backend (files or bucket keys)."""
    from postgres import RUN

    return RUN.blob_ids(server.data_dir)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """An error response: the status, the JSON error body and the request id header."""
    assert r.status_code == status, (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    assert set(body) == {"message", "code", "request_id"}, body
    assert body["request_id"] and r.headers["x-request-id"] == body["request_id"]
    if code is not None:
        assert body["code"] == code, body
    return body


def make_api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    """Body of each test module's `api` fixture."""
    a = Api(server, repo_ref)
    yield a
    a.close()
