"""Per-request cost of authorization: the decision alone, and whole requests side by side.

    .venv/bin/python benchmarks/authz_bench.py [N]

Builds a throw-away data directory, one organization with a member whose effective policies
are the built-in member policy, one direct Rego policy and one through a group; then times
(1) `Authorizer.require` for the server admin (no evaluation) and for the member (a repeated
question, answered from the decision memo, and a new path each time, evaluated), and
(2) `GET {R}` over in-process HTTP with both keys. Prints microseconds per call.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

from tilde_server.app import build_app
from tilde_server.authz.enforce import Authorizer
from tilde_server.store import Store
from tilde_server.store.identity import Identity

POLICY = """package tilde.authz
import rego.v1
deny if {
    input.action == "object:write"
    startswith(input.path, "secret/")
}
"""


def per_call(fn, n: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    with tempfile.TemporaryDirectory() as tmp:
        store, _ = Store.open(Path(tmp) / "data", "tk-bench-admin")
        ident = Identity(store)
        admin = ident.authenticate("tk-bench-admin")
        store.create_org("bench", "bench")
        ident.org_created("bench", admin)
        store.create_repo("bench", "r", {}, admin)
        info, key = ident.add_user("member")
        ident.add_member("bench", username="member", user_id=None, role="member")
        p = ident.create_policy("bench", "no-secret", "", POLICY, admin)["policy"]
        ident.attach("bench", p["id"], "user", info["id"], admin)
        g = ident.create_group("bench", "g", "", admin)
        ident.add_group_member("bench", g["id"], "user", info["id"])
        p2 = ident.create_policy("bench", "p2", "", POLICY.replace("secret/", "x/"), admin)
        ident.attach("bench", p2["policy"]["id"], "group", g["id"], admin)
        member = ident.authenticate(key)
        authz = Authorizer(ident)
        item = [("object:write", "data/file.csv")]
        print(f"effective policies of the member: "
              f"{len(ident.effective_policies(1, 'user', info['id']))}")
        a = per_call(lambda: authz.require(admin, "bench", "r", item), n)
        m = per_call(lambda: authz.require(member, "bench", "r", item), n)
        counter = iter(range(10**9))
        u = per_call(lambda: authz.require(member, "bench", "r",
                                           [("object:write", f"d/{next(counter)}")]), n)
        print(f"decision, server admin:                    {a:8.1f} us")
        print(f"decision, member (3 policies), repeated:   {m:8.1f} us")
        print(f"decision, member (3 policies), new path:   {u:8.1f} us")
        client = TestClient(build_app(store, ident))
        for name, k in (("admin", "tk-bench-admin"), ("member", key)):
            h = {"Authorization": f"Bearer {k}"}
            us = per_call(lambda h=h: client.get("/api/v1/organizations/bench/repositories/r",
                                                 headers=h), n)
            print(f"GET {{R}} in-process HTTP, {name:7s}          {us:8.1f} us")
        store.close()


if __name__ == "__main__":
    main()
