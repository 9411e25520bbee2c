"""A sandbox's scratch /tmp and `pip install` (bwrap.py, subtleties 6 and 7), for real.

/tmp is one host directory per sandbox, shared by all its processes and removed with it; pip
installs into the user site there (/tmp/.local), from a local index reached through the
egress proxy (tests/conftest.py, `pip_index_server`). tzdata is the wheel installed here: pure
Python and small, so these checks stay cheap (the README's pandas is the scenarios' job).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from sbhelpers import SandboxApi, require_bwrap
from websockets.sync.client import connect

from tilde_server.sandbox.manager import default_runtime_root

pytestmark = pytest.mark.timeout(180)

SITE = "/tmp/.local/lib/python3.11/site-packages"


def _exec(api: SandboxApi, sid: str, script: str) -> tuple[str, str, int]:
    """One `/exec` run (a bwrap process of its own) of `sh -c script`."""
    out, err, code = b"", b"", None
    headers = {"Authorization": f"Bearer {api.server.api_key}"}
    with connect(api.ws_url(sid, "exec"), additional_headers=headers) as ws:
        ws.send(b"\x00" + json.dumps({"cmd": ["sh", "-c", script]}).encode())
        while code is None:
            msg = ws.recv(timeout=60)
            assert isinstance(msg, bytes)
            if msg[:1] == b"\x03":
                out += msg[1:]
            elif msg[:1] == b"\x04":
                err += msg[1:]
            elif msg[:1] == b"\x05":
                code = json.loads(msg[1:])["exit_code"]
    return out.decode(), err.decode(), code


def _service(api: SandboxApi, **body: Any) -> str:
    sid = api.start({"image": "python:3.12", "mode": "service", **body})
    assert api.wait(sid, {"running", "failed", "error"})["status"] == "running"
    return sid


def _finish(api: SandboxApi, sid: str) -> dict[str, Any]:
    r = api.http.post(f"{api.base}/sandboxes/{sid}/finish")
    assert r.status_code in (200, 202), r.text
    return api.wait(sid)


@pytest.fixture
def pip_api(pip_index_server: Any) -> SandboxApi:
    """A fresh repository on the pip index server, holding the test CA pip trusts."""
    require_bwrap()
    from bypath import root_conftest

    api = SandboxApi(pip_index_server.server, pip_index_server.server.new_repo())
    api.put(root_conftest().PIP_CA_IN_REPO, pip_index_server.ca_file.read_bytes())
    return api


def test_scratch_tmp_is_shared_by_one_sandbox_and_goes_with_it(pip_api: SandboxApi) -> None:
    api = pip_api
    sid, other = _service(api), _service(api)
    scratch = default_runtime_root(api.server.data_dir) / sid / "tmp"
    st = os.stat(scratch)
    assert st.st_mode & 0o777 == 0o700
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert _exec(api, sid, "echo kept > /tmp/f; echo $HOME") == ("/tmp\n", "", 0)
    assert _exec(api, sid, "cat /tmp/f") == ("kept\n", "", 0)  # another bwrap process
    assert (scratch / "f").read_text() == "kept\n"
    assert _exec(api, other, "cat /tmp/f")[2] != 0  # each sandbox has its own
    assert _exec(api, sid, "touch /usr/x")[2] != 0  # the system stays read-only
    assert _finish(api, sid)["status"] == "committed"
    assert not scratch.exists()
    assert _finish(api, other)["status"] == "committed"


def test_pip_installs_into_the_user_site_across_runs(pip_api: SandboxApi,
                                                     pip_index_server: Any) -> None:
    api = pip_api
    seen = len(pip_index_server.index.requests)
    sid = _service(api)
    out, err, code = _exec(api, sid, "pip install --no-deps tzdata")
    assert code == 0, (out, err)
    assert "Defaulting to user installation" in out + err
    out, err, code = _exec(api, sid, "python -c 'import tzdata; print(tzdata.__file__)'")
    assert (out, code) == (f"{SITE}/tzdata/__init__.py\n", 0), err
    paths = [r.path for r in pip_index_server.index.requests[seen:]]
    assert "/simple/tzdata/" in paths and any(p.startswith("/files/tzdata-") for p in paths)
    # PIP_COMPILE=0: nothing compiled at install time beyond what the import above wrote
    out, _, _ = _exec(api, sid, f"ls {SITE}/tzdata/zoneinfo/__pycache__ 2>&1 || echo none")
    assert out.strip().endswith("none"), out
    assert _finish(api, sid)["status"] == "committed"
    assert [o for o in api.objects() if o != ".test-ca.pem"] == []  # nothing in the repo


def test_own_env_vars_win_and_a_virtualenv_installs_into_itself(pip_api: SandboxApi) -> None:
    api = pip_api
    st, out = api.run({"image": "python-312", "env_vars": {"PYTHONUSERBASE": "/tmp/mine"},
                       "command": ["sh", "-c",
                                   "pip install -q --no-deps tzdata && python -c "
                                   "'import tzdata; print(tzdata.__file__)'"]}, timeout=120)
    assert st["status"] == "committed", (st, out)
    assert out.decode().splitlines()[-1] == (
        "/tmp/mine/lib/python3.11/site-packages/tzdata/__init__.py")
    # No PIP_USER=1: pip in a virtualenv made inside the sandbox installs into it.
    st, out = api.run({"image": "python-312", "command": ["sh", "-c",
                       "python -m venv --without-pip /tmp/v && /tmp/v/bin/python -m pip "
                       "install -q --no-deps tzdata && /tmp/v/bin/python -c "
                       "'import tzdata; print(tzdata.__file__)'; test -e /tmp/.local || "
                       "echo no-user-site"]}, timeout=120)
    assert st["status"] == "committed", (st, out)
    assert out.decode().splitlines()[-2:] == [
        "/tmp/v/lib/python3.11/site-packages/tzdata/__init__.py", "no-user-site"], out


def test_default_server_environment_for_pip(api_default: SandboxApi) -> None:
    """Without any operator setting, the python defaults are there (and nothing else)."""
    st, out = api_default.run({"image": "python:3.12", "command": [
        "sh", "-c", "echo $PATH; echo $PYTHONUSERBASE; env | grep ^PIP_ | sort"]})
    assert st["status"] == "committed", (st, out)
    lines = out.decode().splitlines()
    assert lines[0].startswith("/tmp/.local/bin:") and lines[1] == "/tmp/.local"
    assert lines[2:] == ["PIP_BREAK_SYSTEM_PACKAGES=1", "PIP_COMPILE=0",
                         "PIP_DISABLE_PIP_VERSION_CHECK=1"]


@pytest.fixture
def api_default(server: Any, repo_ref: Any) -> SandboxApi:
    require_bwrap()
    return SandboxApi(server, repo_ref)


def test_wheelhouse_is_there() -> None:
    """scripts/setup.sh fetched the wheels the pip tests install (cp311, as the host's)."""
    from bypath import root_conftest

    wheels = {p.name.split("-", 1)[0] for p in Path(root_conftest().WHEELHOUSE).glob("*.whl")}
    assert {"pandas", "numpy", "tzdata"} <= wheels, f"{wheels}: run scripts/setup.sh"
