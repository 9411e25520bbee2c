"""`tilde auth login|status|logout` and the config file they manage (docs/cli.md)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import yaml
from clihelpers import cli_env, failed, ok, out, tilde

from conftest import ServerHandle


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def _no_key_in(server: ServerHandle, *results: object) -> None:
    for r in results:
        text = repr(r)
        assert server.api_key not in text
        assert server.api_key[8:-4] not in text  # not even the middle of it


def test_login_status_logout_round_trip(server: ServerHandle, tmp_path: Path) -> None:
    home = tmp_path / "home"
    keyless = cli_env(server, home, key=False)
    cfg = home / ".tilde" / "config.yaml"

    # no key anywhere: status says so and exits 4
    line = failed(tilde("auth", "status", env=keyless), 4)
    assert "auth login" in line

    # a refused key: exit 4, nothing written
    wrong = "tk-wrong-" + "x" * 24
    line = failed(tilde("auth", "login", env=keyless, input=wrong + "\n"), 4)
    assert wrong not in line
    assert not cfg.exists() and not (home / ".tilde").exists()

    # the right key on stdin
    login = tilde("auth", "login", env=keyless, input=server.api_key + "\n")
    assert ok(login) == ""
    assert "logged in to " + server.endpoint in login.stderr.decode()
    assert "as admin" in login.stderr.decode()
    assert _mode(cfg) == 0o600
    assert _mode(cfg.parent) == 0o700
    saved = yaml.safe_load(cfg.read_text())
    assert saved == {"api_key": server.api_key, "endpoint_url": server.endpoint}

    # status (text) with the endpoint from the environment and the key from the file
    status = tilde("auth", "status", env=keyless)
    text = ok(status)
    assert f"{server.endpoint} (TILDE_ENDPOINT_URL)" in text
    masked = f"tk-…{server.api_key[-4:]}"
    assert f"{masked} (config file)" in text
    assert "admin (user)" in text

    # nothing from the environment at all: the config file alone is enough
    bare = cli_env(server, home, key=False, endpoint=False)
    status_json = tilde("auth", "status", "--json", env=bare)
    doc = json.loads(ok(status_json))
    assert doc["endpoint_url"] == server.endpoint
    assert doc["endpoint_source"] == "config file"
    assert doc["key"] == masked and doc["key_source"] == "config file"
    assert doc["identity"] == {"name": "admin", "type": "user"}
    org_list = tilde("org", "list", "--json", env=bare)
    assert isinstance(json.loads(ok(org_list)), list)

    # the environment's key wins over the file's, and status says where it came from
    env_key = tilde("auth", "status", "--json", env=cli_env(server, home))
    doc = json.loads(ok(env_key))
    assert doc["key_source"] == "TILDE_API_KEY" and doc["key"] == masked

    _no_key_in(server, login, status, status_json, env_key)

    # logout removes the file; then there is no key again
    logout = tilde("auth", "logout", env=bare)
    assert ok(logout) == ""
    assert not cfg.exists()
    failed(tilde("org", "list", env=bare), 4)


def test_login_keeps_other_keys_and_a_refused_key_changes_nothing(
        server: ServerHandle, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(server, home, key=False)
    cfg = home / ".tilde" / "config.yaml"
    cfg.parent.mkdir(parents=True, mode=0o700)
    before = (b"# my settings\napi_key: tk-old-0000000000000000\n"
              b"endpoint_url: http://127.0.0.1:9/\ndefault_org: acme\nextra:\n  depth: 2\n")
    cfg.write_bytes(before)
    cfg.chmod(0o600)

    failed(tilde("auth", "login", "--endpoint-url", server.endpoint, env=env,
                 input="tk-refused-1234567890abcdef\n"), 4)
    assert cfg.read_bytes() == before

    login = tilde("auth", "login", "--endpoint-url", server.endpoint, env=env,
                  input=server.api_key + "\n")
    assert out(login) == ""
    ok(login)
    saved = yaml.safe_load(cfg.read_text())
    assert saved == {"api_key": server.api_key, "endpoint_url": server.endpoint,
                     "default_org": "acme", "extra": {"depth": 2}}
    assert _mode(cfg) == 0o600
    _no_key_in(server, login)
