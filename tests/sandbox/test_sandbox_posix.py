"""A sandbox sees the repository's POSIX attributes, and what it changes comes back.

Objects are written with the bundled client's ``put(..., metadata=...)`` (the attributes a
mount stores, docs/semantics.md "What is stored"); the sandbox (real bubblewrap over a real
tilde-mount of its session) runs ordinary programs on them; what it commits is read back
with the client and ``tilde.posix``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sbhelpers import SandboxApi, require_bwrap

import tilde
import tilde.posix as posix

pytestmark = pytest.mark.timeout(180)

SCRIPT = b"#!/bin/sh\necho \"run.sh ran with $# args: $*\"\n"


@pytest.fixture
def api(server: Any, repo_ref: Any) -> SandboxApi:
    require_bwrap()
    return SandboxApi(server, repo_ref)


@pytest.fixture
def repo(server: Any, repo_ref: Any) -> Iterator[Any]:
    with tilde.Client(endpoint_url=server.endpoint, api_key=server.api_key) as c:
        yield c.repository(repo_ref.path)


@pytest.fixture
def committed(repo: Any) -> None:
    """An executable script, a plain file, a symlink to the script and a dangling one."""
    with repo.session() as s:
        s.objects.put("run.sh", SCRIPT, metadata=posix.posix_metadata(mode=0o755))
        s.objects.put("data.txt", b"just data\n", metadata=posix.posix_metadata(mode=0o644))
        s.objects.put("bin/go", b"../run.sh", metadata=posix.symlink_metadata())
        s.objects.put("dangling", b"/no/such/target", metadata=posix.symlink_metadata())
        s.commit("posix fixtures")


def rows(repo: Any) -> dict[str, Any]:
    return {item.path: item for item in repo.objects.list()}


@pytest.mark.usefixtures("committed")
def test_an_executable_runs_and_a_plain_file_is_not_executable(api: SandboxApi) -> None:
    st, out = api.run({"image": "ubuntu", "command": ["sh", "-c", (
        "./run.sh a b; echo rc=$?; "
        "test -x run.sh && echo run.sh:x || echo run.sh:-; "
        "test -x data.txt && echo data.txt:x || echo data.txt:-; "
        "stat -c '%n %a' run.sh data.txt")]})
    assert (st["status"], st["status_reason"], st["exit_code"]) == (
        "committed", "no_changes", 0), (st, out)
    assert out.decode().splitlines() == [
        "run.sh ran with 2 args: a b", "rc=0", "run.sh:x", "data.txt:-",
        "run.sh 755", "data.txt 644"]


@pytest.mark.usefixtures("committed")
def test_symlinks_are_symlinks_inside(api: SandboxApi) -> None:
    st, out = api.run({"image": "ubuntu", "command": ["sh", "-c", (
        "readlink bin/go; readlink dangling; test -L bin/go && echo L; "
        "bin/go through-link; cat bin/go | head -1")]})
    assert st["exit_code"] == 0 and st["status"] == "committed", (st, out)
    assert out.decode().splitlines() == [
        "../run.sh", "/no/such/target", "L", "run.sh ran with 1 args: through-link",
        "#!/bin/sh"]


@pytest.mark.usefixtures("committed")
def test_chmod_inside_is_committed_as_posix_mode(api: SandboxApi, repo: Any) -> None:
    st, out = api.run({"image": "ubuntu", "command": ["sh", "-c", (
        "chmod +x data.txt; chmod 600 run.sh; "
        "printf '#!/bin/sh\\necho new\\n' > new.sh; chmod 755 new.sh; ./new.sh; "
        "ln -s data.txt made-link")]})
    assert (st["status"], st["status_reason"], st["exit_code"]) == (
        "committed", "committed", 0), (st, out)
    assert out == b"new\n"
    after = rows(repo)
    assert after["data.txt"].entry.metadata["posix-mode"] == "100755"
    assert posix.attributes(after["data.txt"]).permissions == 0o755
    assert posix.attributes(after["run.sh"]).permissions == 0o600
    assert posix.attributes(after["new.sh"]).permissions == 0o755
    assert posix.is_symlink(after["made-link"])
    assert posix.symlink_target(repo.objects, "made-link") == "data.txt"
    # a chmod changes attributes, not bytes
    with repo.objects.get("data.txt") as r:
        assert r.read() == b"just data\n"
    with repo.objects.get("run.sh") as r:
        assert r.read() == SCRIPT


def test_the_next_sandbox_sees_what_the_last_one_chmodded(api: SandboxApi) -> None:
    st, out = api.run({"image": "ubuntu", "command": ["sh", "-c", (
        "printf '#!/bin/sh\\necho second\\n' > tool; chmod 750 tool; mkdir -p empty/dir")]})
    assert st["status_reason"] == "committed", (st, out)
    st, out = api.run({"image": "ubuntu", "command": ["sh", "-c", (
        "stat -c '%n %a' tool; ./tool; test -d empty/dir && echo dir")]})
    assert st["exit_code"] == 0, (st, out)
    assert out.decode().splitlines() == ["tool 750", "second", "dir"]
