"""`tilde org create|list` and `tilde repo create|list|show|delete` (docs/cli.md)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from clihelpers import cli_env, client, failed, ok, tilde

from conftest import ServerHandle, unique


@pytest.fixture
def env(server: ServerHandle, tmp_path: Path) -> dict[str, str]:
    return cli_env(server, tmp_path / "home")


def _orgs(server: ServerHandle) -> dict[str, str]:
    with client(server) as c:
        return {o.name: o.display_name for o in c.organizations.list()}


def test_org_create_and_list(server: ServerHandle, env: dict[str, str]) -> None:
    plain, fancy = unique("cliorg"), unique("cliorg")
    assert ok(tilde("org", "create", plain, env=env)) == plain + "\n"
    created = json.loads(ok(tilde("org", "create", fancy, "--display-name", "Fancy Corp",
                                  "--json", env=env)))
    assert created["name"] == fancy and created["display_name"] == "Fancy Corp"
    assert created["id"]
    orgs = _orgs(server)
    assert orgs[plain] == plain and orgs[fancy] == "Fancy Corp"

    line = failed(tilde("org", "create", plain, env=env), 1)
    assert "exists" in line

    listed = ok(tilde("org", "list", env=env)).splitlines()
    assert plain in listed and fancy in listed
    as_json = json.loads(ok(tilde("org", "list", "--json", env=env)))
    by_name = {o["name"]: o for o in as_json}
    assert by_name[fancy]["display_name"] == "Fancy Corp"
    assert by_name[fancy]["id"] == created["id"]


def test_repo_create_list_show_delete(server: ServerHandle, env: dict[str, str]) -> None:
    org = unique("cliorg")
    ok(tilde("org", "create", org, env=env))
    lake, pond = f"{org}/lake", f"{org}/pond"
    assert ok(tilde("repo", "create", lake, "--description", "raw and curated",
                    env=env)) == lake + "\n"
    made = json.loads(ok(tilde("repo", "create", pond, "--visibility", "public", "--json",
                               env=env)))
    assert made["name"] == pond and made["visibility"] == "public"

    with client(server) as c:
        got = c.organization(org).repositories.get("lake")
        assert got.description == "raw and curated" and got.visibility == "private"
        lake_id = got.id

    assert sorted(ok(tilde("repo", "list", org, env=env)).splitlines()) == [lake, pond]
    listed = json.loads(ok(tilde("repo", "list", org, "--json", env=env)))
    assert sorted(r["name"] for r in listed) == [lake, pond]

    in_org = tilde("ls", f"tilde://{org}", env=env)
    assert sorted(ok(in_org).splitlines()) == [lake + "/", pond + "/"]

    shown = ok(tilde("repo", "show", lake, env=env))
    rows = dict(line.split(":", 1) for line in shown.splitlines())
    assert rows["repository"].strip() == lake
    assert rows["id"].strip() == lake_id
    assert rows["description"].strip() == "raw and curated"
    assert rows["visibility"].strip() == "private"
    shown_json = json.loads(ok(tilde("repo", "show", f"tilde://{pond}", "--json", env=env)))
    assert shown_json["name"] == pond and shown_json["visibility"] == "public"

    line = failed(tilde("repo", "show", f"{org}/missing", env=env), 1)
    assert "not found" in line

    # stdin is not a terminal: --yes is required, and nothing is deleted without it
    line = failed(tilde("repo", "delete", lake, env=env), 2)
    assert "--yes" in line
    r = httpx.get(f"{server.endpoint}/api/v1/organizations/{org}/repositories/lake",
                  headers={"Authorization": f"Bearer {server.api_key}"})
    assert r.status_code == 200

    ok(tilde("repo", "delete", lake, "--yes", env=env))
    r = httpx.get(f"{server.endpoint}/api/v1/organizations/{org}/repositories/lake",
                  headers={"Authorization": f"Bearer {server.api_key}"})
    assert r.status_code == 404
