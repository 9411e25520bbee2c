"""A capability the server was built without answers 503 with the error body, not 500."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx

from tilde_server.app import build_app
from tilde_server.store import Store

KEY = "tk-admin-key-for-this-test"


def test_sandbox_routes_without_sandboxes_answer_503(tmp_path: Path) -> None:
    store, _ = Store.open(tmp_path / "data", KEY)
    app = build_app(store)  # `tilde-server run` wires sandboxes in; this app has none

    async def scenario() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t/api/v1",
                                     headers={"Authorization": f"Bearer {KEY}"}) as c:
            r = await c.post("/organizations", json={"name": "o1", "display_name": "o"})
            assert r.status_code == 201, r.text
            r = await c.post("/organizations/o1/repositories",
                             json={"name": "r1", "visibility": "private"})
            assert r.status_code == 201, r.text
            return await c.get("/organizations/o1/repositories/r1/sandboxes")

    r = anyio.run(scenario)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "sandboxes_disabled"
    assert body["message"] and body["request_id"]
