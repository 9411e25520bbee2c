"""A capability the server was built without answers 503 with the error body, not 500."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from tilde_server.app import build_app
from tilde_server.store import Store


def test_sandbox_routes_without_sandboxes_answer_503(tmp_path: Path) -> None:
    store, _ = Store.open(tmp_path / "data", "tk-admin-key-for-this-test")
    app = build_app(store)  # `tilde-server run` wires sandboxes in; this app has none
    h = {"Authorization": "Bearer tk-admin-key-for-this-test"}
    with TestClient(app) as c:
        assert c.post("/api/v1/organizations", json={"name": "o1", "display_name": "o"},
                      headers=h).status_code == 201
        assert c.post("/api/v1/organizations/o1/repositories",
                      json={"name": "r1", "visibility": "private"}, headers=h).status_code == 201
        r = c.get("/api/v1/organizations/o1/repositories/r1/sandboxes", headers=h)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["code"] == "sandboxes_disabled"
    assert body["message"] and body["request_id"]
