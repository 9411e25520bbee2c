"""Plain-httpx helpers for the sandbox tests (no bundled client involved)."""

from __future__ import annotations

import shutil
import time
from typing import Any

import httpx

from bypath import root_conftest

_root = root_conftest()
RepoRef = _root.RepoRef
ServerHandle = _root.ServerHandle
start_server = _root.start_server
stop_server = _root.stop_server
unique = _root.unique

TERMINAL = {"committed", "awaiting_approval", "failed", "error", "cancelled"}


def require_bwrap() -> None:
    """A missing bubblewrap is a failure of the environment, not a reason to skip."""
    assert shutil.which("bwrap"), "bubblewrap (bwrap) is not installed: run scripts/setup.sh"


class SandboxApi:
    def __init__(self, server: Any, repo: Any) -> None:
        self.server = server
        self.repo = repo
        self.base = f"{server.endpoint}/api/v1/organizations/{repo.org}/repositories/{repo.repo}"
        self.headers = {"Authorization": f"Bearer {server.api_key}"}
        self.http = httpx.Client(headers=self.headers, timeout=30)

    def create(self, body: dict[str, Any], **kw: Any) -> httpx.Response:
        return self.http.post(f"{self.base}/sandboxes", json=body, **kw)

    def start(self, body: dict[str, Any]) -> str:
        r = self.create(body)
        assert r.status_code == 201, r.text
        return str(r.json()["sandbox_id"])

    def status(self, sid: str, **kw: Any) -> dict[str, Any]:
        r = self.http.get(f"{self.base}/sandboxes/{sid}/status", **kw)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def wait(self, sid: str, states: set[str] | None = None, timeout: float = 60) -> dict[str, Any]:
        states = states or TERMINAL
        deadline = time.monotonic() + timeout
        while True:
            st = self.status(sid)
            if st["status"] in states:
                return st
            assert time.monotonic() < deadline, f"sandbox {sid} stuck in {st}"
            time.sleep(0.2)

    def run(self, body: dict[str, Any], timeout: float = 60) -> tuple[dict[str, Any], bytes]:
        sid = self.start(body)
        st = self.wait(sid, timeout=timeout)
        return st, self.stdout(sid)

    def stdout(self, sid: str) -> bytes:
        r = self.http.get(f"{self.base}/sandboxes/{sid}/logs/stdout")
        assert r.status_code == 200, r.text
        return r.content

    def objects(self, ref: str | None = None) -> dict[str, bytes]:
        params: dict[str, Any] = {"amount": 1000}
        if ref:
            params["ref"] = ref
        r = self.http.get(f"{self.base}/objects", params=params)
        assert r.status_code == 200, r.text
        out = {}
        for item in r.json()["results"]:
            g = self.http.get(f"{self.base}/object", params={**params, "path": item["path"]})
            out[item["path"]] = g.content
        return out

    def log(self) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.base}/log", params={"amount": 1000})
        assert r.status_code == 200, r.text
        return list(r.json()["results"])

    def put(self, path: str, data: bytes) -> str:
        """Commit one object through a session; returns the commit id."""
        sid = self.http.post(f"{self.base}/sessions").json()["session_id"]
        st = self.http.post(f"{self.base}/object/stage",
                            params={"session_id": sid, "path": path}).json()
        assert httpx.put(st["upload_url"], content=data).status_code == 200
        r = self.http.put(f"{self.base}/object/finalize",
                          params={"session_id": sid, "path": path,
                                  "expires_at": st["expires_at"]},
                          json={"physical_address": st["physical_address"],
                                "signature": st["signature"]})
        assert r.status_code == 200, r.text
        r = self.http.post(f"{self.base}/sessions/{sid}", json={"message": "put " + path})
        assert r.status_code == 200, r.text
        return str(r.json()["commit_id"])

    def ws_url(self, sid: str, kind: str = "terminal") -> str:
        return self.base.replace("http://", "ws://") + f"/sandboxes/{sid}/{kind}"
