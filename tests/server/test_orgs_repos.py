"""Organizations and repositories (spec 2.1, 2.3), auth and error bodies."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from serverapi import Api, RepoRef, ServerHandle, assert_error, make_api, unique


@pytest.fixture
def api(server: ServerHandle, repo_ref: RepoRef) -> Iterator[Api]:
    yield from make_api(server, repo_ref)


def test_org_lifecycle(api: Api) -> None:
    name = unique("o")
    r = api.http.post(f"{api.base}/organizations", json={"name": name, "display_name": "Disp"})
    assert r.status_code == 201
    org = r.json()
    assert org["name"] == name and org["display_name"] == "Disp" and org["id"]
    assert org["created_at"].endswith("Z")
    assert api.http.get(f"{api.base}/organizations/{name}").json() == org
    names = [o["name"] for o in api.http.get(f"{api.base}/organizations").json()["results"]]
    assert name in names
    assert_error(api.http.post(f"{api.base}/organizations",
                               json={"name": name, "display_name": "x"}), 409)
    r = api.http.delete(f"{api.base}/organizations/{name}")
    assert r.status_code == 204
    assert_error(api.http.get(f"{api.base}/organizations/{name}"), 404)


@pytest.mark.parametrize("body", [
    {"name": "UPPER", "display_name": "x"},
    {"name": "a", "display_name": "x"},
    {"name": "has space", "display_name": "x"},
    {"name": 5, "display_name": "x"},
    {"display_name": "x"},
    [1, 2],
])
def test_org_bad_input(api: Api, body: object) -> None:
    before = api.http.get(f"{api.base}/organizations").json()
    assert_error(api.http.post(f"{api.base}/organizations", json=body), 400)
    assert api.http.get(f"{api.base}/organizations").json() == before


def test_malformed_json(api: Api) -> None:
    r = api.http.post(f"{api.base}/organizations", content=b"{not json",
                      headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_json")
    r = api.http.post(f"{api.base}/organizations", content=b"\xff\xfe",
                      headers={"Content-Type": "application/json"})
    assert_error(r, 400)


def test_auth_required(server: ServerHandle, api: Api) -> None:
    url = f"{api.base}/organizations"
    assert_error(httpx.get(url), 401)
    assert_error(httpx.get(url, headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(httpx.get(url, headers={"Authorization": "Basic abc"}), 401)
    assert_error(httpx.get(f"{api.R}/objects"), 401)
    assert_error(httpx.get(f"{api.base}/no/such/route"), 401)
    # with a key, unknown routes and methods are 404/405 with the error body
    assert_error(api.http.get(f"{api.base}/no/such/route"), 404)
    assert_error(api.http.patch(f"{api.base}/organizations"), 405)


def test_repo_lifecycle(api: Api) -> None:
    org_url = f"{api.base}/organizations/{api.org}"
    r = api.http.post(f"{org_url}/repositories",
                      json={"name": "second", "visibility": "public", "description": "d",
                            "session_max_duration_days": 3, "retention_days": 9})
    assert r.status_code == 201, r.text
    repo = r.json()
    assert repo["name"] == "second" and repo["visibility"] == "public"
    assert repo["session_max_duration_days"] == 3 and repo["retention_days"] == 9
    assert repo["created_by_type"] == "user" and repo["organization_id"]
    assert_error(api.http.post(f"{org_url}/repositories", json={"name": "second"}), 409)

    # PUT is a partial merge
    r = api.http.put(f"{org_url}/repositories/second", json={"description": "new"})
    assert r.status_code == 200
    assert r.json()["description"] == "new" and r.json()["visibility"] == "public"
    assert r.json()["retention_days"] == 9
    assert_error(api.http.put(f"{org_url}/repositories/second", json={"visibility": "x"}), 400)
    for bad in ("x", 10**30, True, 0):
        assert_error(api.http.put(f"{org_url}/repositories/second",
                                  json={"retention_days": bad}), 400)
    assert api.http.get(f"{org_url}/repositories/second").json()["description"] == "new"

    # paging by name
    names = []
    params: dict[str, object] = {"amount": 1}
    while True:
        body = api.http.get(f"{org_url}/repositories", params=params).json()
        names += [x["name"] for x in body["results"]]
        if not body["pagination"]["has_more"]:
            assert body["pagination"]["next_offset"] is None
            break
        params["after"] = body["pagination"]["next_offset"]
    assert names == sorted([api.repo, "second"])

    assert api.http.delete(f"{org_url}/repositories/second").status_code == 204
    assert_error(api.http.get(f"{org_url}/repositories/second"), 404)
    assert_error(api.http.get(f"{api.base}/organizations/nope-{api.org}/repositories"), 404)


@pytest.mark.parametrize("name", ["", ".", "..", "-x", "a/b", "x" * 101, "sp ace"])
def test_repo_bad_names(api: Api, name: str) -> None:
    org_url = f"{api.base}/organizations/{api.org}"
    before = api.http.get(f"{org_url}/repositories").json()
    assert_error(api.http.post(f"{org_url}/repositories", json={"name": name}), 400)
    assert api.http.get(f"{org_url}/repositories").json() == before


def test_amount_validation(api: Api) -> None:
    org_url = f"{api.base}/organizations/{api.org}/repositories"
    assert_error(api.http.get(org_url, params={"amount": "x"}), 400)
    assert_error(api.http.get(org_url, params={"amount": "-1"}), 400)
    body = api.http.get(org_url, params={"amount": "5000"}).json()
    assert body["pagination"]["max_per_page"] == 1000
