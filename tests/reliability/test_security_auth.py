"""Every route of the server, enumerated from its route table (a new route cannot escape),
with credentials that must not work: none, malformed ones, a revoked agent key, an expired
sandbox token (its sandbox ended), and another organization's agent key.

/api/v1 routes answer 401 for the first four and 401/403/404 for the foreign key (404 where
existence is hidden); the signed /_tilde/ routes, which take no bearer, answer 4xx to all of
them. Afterwards, everything the organization holds reads back exactly as before.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from secutil import Raw, root
from starlette.routing import Route, WebSocketRoute

from figures import record
from tilde_server.app import API_PREFIX
from tilde_server.routes import api_routes_for, upload_routes

pytestmark = pytest.mark.timeout(240)

TOKEN_SCRIPT = (
    "import json, os, urllib.request\n"
    "with urllib.request.urlopen(os.environ['TILDE_SANDBOX_CREDENTIALS_URI'], timeout=10) as r:\n"
    "    print('TOKEN ' + json.load(r)['access_token'])\n")


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Any]:
    h = root.start_server(tmp_path)
    try:
        yield h
    finally:
        root.stop_server(h)
    log = h.log()
    assert "Traceback" not in log, log[-6000:]


def all_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route the server serves, API and signed."""
    served, refused = api_routes_for("all")
    out: list[tuple[str, str]] = []
    for r in [*served, *refused]:
        path = API_PREFIX + r.path
        if isinstance(r, WebSocketRoute):
            out.append(("GET", path))
        elif isinstance(r, Route):
            out += [(m, path) for m in sorted(r.methods or ())]
        else:
            raise AssertionError(f"a route of an unknown kind: {r!r}")
    for r in upload_routes:
        assert isinstance(r, Route)
        out += [(m, r.path) for m in sorted(r.methods or ())]
    return out


class Admin:
    def __init__(self, h: Any) -> None:
        self.http = Raw(h.endpoint, h.api_key)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        a = self.http.request(method, API_PREFIX + path,
                              json.dumps(body).encode() if body is not None else None)
        assert a.status in (200, 201, 202, 204), (method, path, a.status, a.body[:400])
        return a.json() if a.body else None


def _agent_key(admin: Admin, org: str) -> tuple[str, str, str]:
    """(agent name, key id, token) of a fresh agent of ``org``."""
    name = root.unique("agent")
    admin.ok("POST", f"/organizations/{org}/agents", {"name": name, "description": "x"})
    k = admin.ok("POST", f"/organizations/{org}/agents/{name}/auth/keys", {"name": "k"})
    return name, k["id"], k["token"]


def _ended_sandbox_token(admin: Admin, R: str) -> tuple[str, str]:
    """(sandbox id, its token) of a sandbox that has ended: the token is dead now."""
    sid = admin.ok("POST", f"{R}/sandboxes", {"image": "ubuntu", "timeout_seconds": 60,
                                              "command": ["python3", "-c", TOKEN_SCRIPT]})
    sid = sid["sandbox_id"]
    deadline = time.monotonic() + 60
    while admin.ok("GET", f"{R}/sandboxes/{sid}/status")["status"] in ("starting", "running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    out = admin.http.request("GET", f"{API_PREFIX}{R}/sandboxes/{sid}/logs/stdout").body
    tokens = [ln[6:] for ln in out.decode().splitlines() if ln.startswith("TOKEN ")]
    assert tokens, out
    return sid, tokens[0]


def _code(body: bytes) -> str:
    try:
        return str(json.loads(body).get("code"))
    except ValueError:
        return ""


def _state(admin: Admin, org: str, R: str, session: str) -> list[Any]:
    """What the organization holds, as the admin reads it."""
    reads = ["/organizations", f"/organizations/{org}", f"/organizations/{org}/repositories",
             R, f"{R}/log", f"{R}/objects", f"{R}/changes?session_id={session}",
             f"/organizations/{org}/agents", f"/organizations/{org}/members",
             f"/organizations/{org}/connectors", f"/organizations/{org}/groups",
             f"/organizations/{org}/policies", f"{R}/secrets", f"{R}/sandboxes",
             f"{R}/sandbox-triggers", f"{R}/connectors"]
    out = []
    for path in reads:
        value = admin.ok("GET", path)
        out.append(_strip_volatile(value))
    return out


def _strip_volatile(value: Any) -> Any:
    """Without `last_used_at`: refused requests may update it (docs/api.md says so)."""
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items() if k != "last_used_at"}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


def test_every_route_refuses_bad_credentials(srv: Any) -> None:
    admin = Admin(srv)
    ref = root.new_repo(srv)
    org, R = ref.org, f"/organizations/{ref.org}/repositories/{ref.repo}"
    other = root.new_repo(srv)
    session = admin.ok("POST", f"{R}/sessions")["session_id"]
    agent, key_id, revoked = _agent_key(admin, org)
    admin.ok("DELETE", f"/organizations/{org}/agents/{agent}/auth/keys/{key_id}")
    _, _, foreign = _agent_key(admin, other.org)
    sandbox_id, expired = _ended_sandbox_token(admin, R)
    values = {"org": org, "repo": ref.repo, "session_id": session, "sandbox_id": sandbox_id,
              "agent": agent, "key_id": key_id, "commit_id": "0" * 64, "secret": "S1",
              "name": "n1", "role": "r1", "user_id": "u1", "group_id": "g1",
              "policy_id": "p1", "connector_id": "c1", "job_id": "j1", "trigger_id": "t1"}
    before = _state(admin, org, R, session)
    creds: dict[str, str | None] = {
        "none": None, "empty bearer": "", "malformed": "not-a-key",
        "wrong prefix": "tk-" + "0" * 32,
        "revoked": revoked, "expired sandbox token": expired, "other organization": foreign}
    routes = all_routes()
    bad: list[str] = []
    raw = Raw(srv.endpoint, None)
    for method, template in routes:
        missing = set(re.findall(r"\{(\w+)(?::\w+)?\}", template)) - set(values)
        assert not missing, f"{template}: no test value for {missing}"
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values[m.group(1)], template)
        signed = not path.startswith(API_PREFIX)
        for what, key in creds.items():
            if what == "other organization" and f"/organizations/{org}" not in path \
                    and not signed:
                continue  # routes outside the organization answer for the caller's own
            headers = {} if key is None else {"Authorization": f"Bearer {key}"}
            if what == "malformed":
                headers = {"Authorization": "Basic dXNlcjpwYXNz"}
            a = raw.request(method, path, b"{}" if method in ("POST", "PUT", "PATCH") else None,
                            headers=headers, key=None)
            allowed = ({401} if what != "other organization" else {401, 403, 404})
            ok = 400 <= a.status < 500 if signed else a.status in allowed
            if not ok and what == "other organization" and a.status == 400:
                # Input checked before the path-based decision (batch upload, part URL:
                # docs/api.md): harmless if an organization that does not exist gets the
                # same answer, i.e. nothing about this one leaks.
                ghost = raw.request(method, path.replace(org, "org-does-not-exist"),
                                    b"{}" if method in ("POST", "PUT", "PATCH") else None,
                                    headers=headers, key=None)
                ok = (ghost.status, _code(ghost.body)) == (a.status, _code(a.body))
            if not ok:
                bad.append(f"{what}: {method} {path} -> {a.status} {a.body[:160]!r}")
    assert not bad, f"{len(bad)} of {raw.count}:\n" + "\n".join(bad[:40])
    assert _state(admin, org, R, session) == before
    record("security", auth_routes=len(routes), requests=raw.count, refused_4xx=raw.count)
