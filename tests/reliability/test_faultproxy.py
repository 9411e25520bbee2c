"""The fault-injection proxy itself: every kind does what it says, on a real server.

The fault suite's figures are only worth something if the proxy really resets, answers
503/429, stalls and truncates; this checks each kind with plain httpx, keep-alive
included, and that a seed picks the same faults for the same requests.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from faultproxy import FaultProxy, route_of


def _client(proxy: FaultProxy, server: Any) -> httpx.Client:
    return httpx.Client(base_url=proxy.url + "/api/v1", timeout=10,
                        headers={"Authorization": f"Bearer {server.api_key}"})


def test_each_fault_kind(server: Any, repo_ref: Any) -> None:
    r_path = f"/organizations/{repo_ref.org}/repositories/{repo_ref.repo}"
    with FaultProxy(server.endpoint, stall=0.2) as proxy, _client(proxy, server) as http:
        assert http.get(r_path).status_code == 200
        assert http.get(r_path).status_code == 200  # the same kept-alive connection
        proxy.script("status_503", method="GET", path=r"/repositories/[^/]+$")
        assert http.get(r_path).status_code == 503
        proxy.script("status_429", method="GET", path=r"/repositories/[^/]+$")
        r = http.get(r_path)
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        proxy.script("reset_before", method="POST", path=r"/sessions$")
        with pytest.raises(httpx.TransportError):
            http.post(r_path + "/sessions")
        proxy.script("reset_after", method="POST", path=r"/sessions$")
        with pytest.raises(httpx.TransportError):
            http.post(r_path + "/sessions")
        proxy.script("truncate", method="GET", path=r"/log$")
        with pytest.raises(httpx.TransportError):
            http.get(r_path + "/log", params={"amount": 10})
        proxy.script("stall", method="GET", path=r"/log$")
        assert http.get(r_path + "/log", params={"amount": 10}).status_code == 200
        r = http.head(r_path + "/object", params={"path": "missing"})
        assert r.status_code == 404
        proxy.script("status_503", method="HEAD")  # no body after a HEAD's answer
        assert http.head(r_path + "/object", params={"path": "x"}).status_code == 503
        assert http.head(r_path + "/object", params={"path": "x"}).status_code == 404
        assert proxy.summary() == {
            "requests": 11, "faults_injected": 7, "reset_before": 1, "reset_after": 1,
            "status_503": 2, "status_429": 1, "stall": 1, "long_stall": 0, "truncate": 1}
        assert proxy.by_route[("POST /api/v1{R}/sessions", "reset_after")] == 1


def test_seed_decides_the_same_faults(server: Any, repo_ref: Any) -> None:
    r_path = f"/organizations/{repo_ref.org}/repositories/{repo_ref.repo}"
    outcomes = []
    for _ in range(2):
        with FaultProxy(server.endpoint, seed=3, rate=0.3,
                        mix={"status_503": 1, "status_429": 1}) as proxy, \
                _client(proxy, server) as http:
            outcomes.append([http.get(r_path + "/log", params={"amount": 1}).status_code
                             for _ in range(40)])
    assert outcomes[0] == outcomes[1]
    assert {200, 503} <= set(outcomes[0]) or {200, 429} <= set(outcomes[0])


def test_route_names() -> None:
    assert route_of("POST", "/api/v1/organizations/o/repositories/r/sessions/abc") == \
        "POST /api/v1{R}/sessions/{id}"
