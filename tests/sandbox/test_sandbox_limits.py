"""Per-sandbox CPU, memory and process-count limits (cgroups): a real server, real bubblewrap,
real cgroups (v1 on the development machines and CI, v2 where the machine has it). A fork
bomb, a memory hog and a CPU spinner each end their sandbox `failed` with the limit as the
reason, while a neighbour sandbox keeps working; the cgroups are gone afterwards.

Without a usable cgroup backend the behaviour tests skip on a workstation and FAIL under CI.
The last tests check the parts that need no kernel: the v2 and v1 file formats against a
directory in tmp, and the validation of the `resources` body field.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sbhelpers import SandboxApi, require_bwrap, start_server, stop_server
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tilde_server.sandbox import cgroups
from tilde_server.sandbox.spec import ResourcePolicy, SandboxSpec, parse_create
from tilde_server.store import BadRequest

pytestmark = pytest.mark.timeout(120)

MiB = 1024 * 1024
# The operator's settings of this module's server: defaults and maxima.
SERVER_ARGS = ["--sandbox-cpus", "0.5", "--sandbox-memory-mb", "768", "--sandbox-pids", "200",
               "--sandbox-memory-mb-max", "1024", "--sandbox-pids-max", "300",
               "--sandbox-cpu-seconds-max", "60"]
DEFAULTS = {"cpus": 0.5, "memory_mb": 768, "pids": 200, "cpu_seconds": 60.0}


@pytest.fixture(scope="module")
def backend() -> str:
    """The cgroup backend this machine offers (as the server will find it)."""
    found, why = cgroups.detect("srv-limits-test-probe")
    if found is None:
        message = f"no usable cgroup backend for sandbox limits: {why}"
        if os.environ.get("CI"):
            pytest.fail(message)  # no silent skips in CI
        pytest.skip(message)
    found.prune()
    return found.name


@pytest.fixture(scope="module")
def limits_server(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Any]:
    require_bwrap()
    h = start_server(tmp_path_factory.mktemp("limits"), args=SERVER_ARGS)
    yield h
    stop_server(h)
    assert "Traceback" not in h.log(), h.log()
    assert "limits are NOT enforced" not in h.log()


@pytest.fixture
def api(limits_server: Any) -> SandboxApi:
    return SandboxApi(limits_server, limits_server.new_repo())


def cgroup_dirs(sid: str) -> list[Path]:
    """The sandbox's cgroup directories, found from the host side (v1: one per hierarchy)."""
    return [Path(p) for p in glob.glob(f"/sys/fs/cgroup/**/{cgroups.SUBTREE}/*/{sid}",
                                       recursive=True)]


def by_file(dirs: list[Path], name: str) -> Path:
    found = [d / name for d in dirs if (d / name).exists()]
    assert len(found) == 1, (name, dirs)
    return found[0]


def procs(dirs: list[Path]) -> set[int]:
    return {int(x) for x in by_file(dirs, "pids.max").with_name("cgroup.procs").read_text()
            .split()}


def assert_gone(sid: str) -> None:
    assert cgroup_dirs(sid) == [], f"the cgroup of sandbox {sid} is still there"


def test_default_limits_are_applied_and_reported(api: SandboxApi, backend: str) -> None:
    sid = api.start({"image": "ubuntu", "timeout_seconds": 60,
                     "command": ["sh", "-c", "sleep 60"]})
    api.wait(sid, {"running"})
    r = api.http.get(f"{api.base}/sandboxes/{sid}")
    assert r.json()["resources"] == DEFAULTS
    deadline = time.monotonic() + 20
    while True:  # the sleep is the last process to start
        dirs = cgroup_dirs(sid)
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in procs(dirs)} if dirs \
            else set()
        if "sleep" in names:
            break
        assert time.monotonic() < deadline, (dirs, names)
        time.sleep(0.1)
    assert {"bwrap", "sleep"} <= names
    if backend == "cgroup v2":
        assert len(dirs) == 1
        d = dirs[0]
        assert int((d / "memory.max").read_text()) == 768 * MiB
        assert (d / "pids.max").read_text().strip() == "200"
        assert (d / "cpu.max").read_text().split() == ["50000", "100000"]
    else:
        assert int(by_file(dirs, "memory.limit_in_bytes").read_text()) == 768 * MiB
        memsw = [d / "memory.memsw.limit_in_bytes" for d in dirs
                 if (d / "memory.memsw.limit_in_bytes").exists()]
        assert all(int(p.read_text()) == 768 * MiB for p in memsw)
        assert by_file(dirs, "pids.max").read_text().strip() == "200"
        assert int(by_file(dirs, "cpu.cfs_quota_us").read_text()) == 50000
        assert int(by_file(dirs, "cpu.cfs_period_us").read_text()) == 100000
        members = {frozenset((d / "cgroup.procs").read_text().split()) for d in dirs}
        assert len(members) == 1  # the same processes in every hierarchy
    assert api.http.delete(f"{api.base}/sandboxes/{sid}").status_code in (200, 202)
    assert api.wait(sid)["status"] == "cancelled"
    assert_gone(sid)


def test_fork_bomb_ends_failed_pids_limit(api: SandboxApi) -> None:
    # Bounded: at most 300 sleeping children, far above the limit of 32.
    bomb = ("echo x > /sandbox/bomb.txt; i=0; while [ $i -lt 300 ]; do sleep 30 & "
            "i=$((i+1)); done; wait")
    sid = api.start({"image": "ubuntu", "timeout_seconds": 60, "resources": {"pids": 32},
                     "command": ["sh", "-c", bomb]})
    st = api.wait(sid)
    assert (st["status"], st["status_reason"]) == ("failed", "pids_limit"), st
    assert "limit of 32 processes" in st["error_message"], st
    assert "bomb.txt" not in api.objects()  # rolled back as any failure
    assert_gone(sid)


def test_memory_hog_ends_failed_memory_limit(api: SandboxApi) -> None:
    hog = "x = []\nwhile True:\n    x.append(b'x' * (1 << 20))\n"
    sid = api.start({"image": "ubuntu", "timeout_seconds": 60, "resources": {"memory_mb": 64},
                     "command": ["sh", "-c", "echo x > /sandbox/hog.txt; python3 -c \"$0\"",
                                 hog]})
    st = api.wait(sid)
    assert (st["status"], st["status_reason"]) == ("failed", "memory_limit"), st
    assert "memory limit of 64 MiB" in st["error_message"], st
    assert "OOM killer" in st["error_message"]
    assert "hog.txt" not in api.objects()
    assert_gone(sid)


def test_cpu_spinner_ends_failed_while_a_neighbour_commits(api: SandboxApi) -> None:
    spinner = api.start({"image": "ubuntu", "timeout_seconds": 60,
                         "resources": {"cpu_seconds": 2, "cpus": 1},
                         "command": ["sh", "-c", "echo x > /sandbox/spin.txt; "
                                                 "while :; do :; done"]})
    api.wait(spinner, {"running"})
    neighbour = api.start({"image": "ubuntu", "timeout_seconds": 60, "command": [
        "sh", "-c", "echo fine > /sandbox/neighbour.txt"]})
    st = api.wait(neighbour)  # the server answers all along
    assert (st["status"], st["status_reason"]) == ("committed", "committed"), st
    spun = api.wait(spinner)
    assert (spun["status"], spun["status_reason"]) == ("failed", "cpu_limit"), spun
    assert "CPU time budget of 2 s" in spun["error_message"], spun
    objs = api.objects()
    assert objs.get("neighbour.txt") == b"fine\n"
    assert "spin.txt" not in objs
    assert_gone(spinner)
    assert_gone(neighbour)


def test_service_sandbox_exec_runs_are_limited(api: SandboxApi, limits_server: Any) -> None:
    """The exec runs of a service sandbox join its cgroup: a fork loop in one ends it."""
    r = api.create({"image": "ubuntu", "mode": "service", "timeout_seconds": 60,
                    "resources": {"pids": 24}})
    assert r.status_code == 201, r.text
    sid = r.json()["sandbox_id"]
    api.wait(sid, {"running"})
    headers = {"Authorization": f"Bearer {limits_server.api_key}"}
    code = None
    with connect(api.ws_url(sid, "exec"), additional_headers=headers) as ws:
        ws.send(b"\x00" + json.dumps({"cmd": ["sh", "-c", "for i in $(seq 200); do "
                                                         "sleep 30 & done; wait"]}).encode())
        with contextlib.suppress(ConnectionClosed):  # the run is killed with its sandbox
            while code is None:
                msg = ws.recv(timeout=30)
                if isinstance(msg, bytes) and msg[:1] == b"\x05":
                    code = json.loads(msg[1:])["exit_code"]
    st = api.wait(sid)
    assert (st["status"], st["status_reason"]) == ("failed", "pids_limit"), st
    assert code != 0  # killed (or never reported), not a clean exit
    assert_gone(sid)


def test_restart_removes_the_cgroups_a_crash_left(tmp_path: Path, backend: str) -> None:
    h = start_server(tmp_path / "s", args=SERVER_ARGS)
    try:
        api = SandboxApi(h, h.new_repo())
        sid = api.start({"image": "ubuntu", "timeout_seconds": 60,
                         "command": ["sh", "-c", "sleep 60"]})
        api.wait(sid, {"running"})
        assert cgroup_dirs(sid)
        h.proc.kill()
        h.proc.wait()
    finally:
        if h.proc.poll() is None:
            stop_server(h)
    h2 = start_server(tmp_path / "s", args=SERVER_ARGS)
    try:
        assert SandboxApi(h2, api.repo).status(sid)["status_reason"] == "sandbox_lost"
        assert_gone(sid)  # removed (its processes killed) before the server answered
        assert "that an earlier server process left" in h2.log()
    finally:
        stop_server(h2)


@pytest.mark.parametrize(("resources", "needle"), [
    ({"memory_mb": 2048}, "resources.memory_mb is 2048 MiB; this server allows at most 1024"),
    ({"pids": 301}, "at most 300"),
    ({"cpu_seconds": 61}, "at most 60 s"),
    ({"cpus": 1000}, "resources.cpus"),
    ({"pids": 0}, "resources.pids must be greater than 0"),
    ({"memory_mb": -5}, "greater than 0"),
    ({"memory_mb": 1.5}, "resources.memory_mb must be an integer"),
    ({"cpus": "1"}, "resources.cpus must be a number"),
    ({"pids": True}, "resources.pids must be an integer"),
    ({"memory_mb": 8}, "at least 16 MiB"),
    ({"gpus": 1}, "unknown field 'gpus'"),
    ([], "'resources' must be an object"),
])
def test_bad_or_over_maximum_resources_are_400_and_start_nothing(
        api: SandboxApi, resources: Any, needle: str) -> None:
    r = api.create({"image": "ubuntu", "command": ["true"], "resources": resources})
    assert r.status_code == 400, r.text
    assert needle in r.json()["message"], r.text
    listed = api.http.get(f"{api.base}/sandboxes").json()["results"]
    assert listed == []


# ---------------------------------------------------------------- no kernel needed


def test_v2_files_are_written_and_counters_read(tmp_path: Path) -> None:
    d = tmp_path / "sb"
    d.mkdir()
    (d / "memory.swap.max").write_text("max\n")
    cg = cgroups.SandboxCgroup(2, dict.fromkeys(cgroups.V2_CONTROLLERS, d),
                               cgroups.Resources(cpus=1.5, memory_mb=256, pids=64,
                                                 cpu_seconds=5))
    cg.apply()
    assert (d / "memory.max").read_text() == str(256 * MiB)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "pids.max").read_text() == "64"
    assert (d / "cpu.max").read_text() == "150000 100000"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 0\n")
    (d / "pids.events").write_text("max 0\n")
    (d / "cpu.stat").write_text("usage_usec 4999999\nuser_usec 1\n")
    assert cg.violation() is None
    (d / "cpu.stat").write_text("usage_usec 5000001\n")
    assert cg.violation() == ("cpu_limit", "the sandbox used up its CPU time budget of 5 s "
                                           "(5.0 s of CPU time used)")
    (d / "pids.events").write_text("max 3\n")
    assert cg.violation() == ("pids_limit", "the sandbox reached its limit of 64 processes "
                                            "(3 forks refused)")
    (d / "memory.events").write_text("oom 1\noom_kill 1\n")
    reason, message = cg.violation() or ("", "")
    assert reason == "memory_limit"
    assert message == ("the sandbox exceeded its memory limit of 256 MiB (a process was "
                       "killed by the OOM killer)")


def test_v1_files_are_written_and_counters_read(tmp_path: Path) -> None:
    dirs = {c: tmp_path / c for c in cgroups.V1_CONTROLLERS}
    for p in dirs.values():
        p.mkdir()
    (dirs["memory"] / "memory.memsw.limit_in_bytes").write_text("-1")
    cg = cgroups.SandboxCgroup(1, dirs, cgroups.Resources(cpus=0.25, memory_mb=64, pids=10))
    cg.apply()
    assert (dirs["memory"] / "memory.limit_in_bytes").read_text() == str(64 * MiB)
    assert (dirs["memory"] / "memory.memsw.limit_in_bytes").read_text() == str(64 * MiB)
    assert (dirs["pids"] / "pids.max").read_text() == "10"
    assert (dirs["cpu"] / "cpu.cfs_quota_us").read_text() == "25000"
    (dirs["cpuacct"] / "cpuacct.usage").write_text("99000000000\n")
    assert cg.violation() is None  # no CPU-time budget
    (dirs["memory"] / "memory.oom_control").write_text(
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert (cg.violation() or ("",))[0] == "memory_limit"


def test_mountinfo_and_proc_cgroup_parsing() -> None:
    info = ("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
            "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    mounts = cgroups._mounts(info)
    assert [(m.point, m.fstype) for m in mounts] == [
        (Path("/sys/fs/cgroup/cpu,cpuacct"), "cgroup"), (Path("/sys/fs/cgroup/unified"),
                                                         "cgroup2")]
    assert {"cpu", "cpuacct"} <= mounts[0].options
    own = cgroups._own_cgroups("4:memory:/a/b\n2:cpu,cpuacct:/\n0::/system.slice/x.service\n")
    assert own == {"memory": "/a/b", "cpu": "/", "cpuacct": "/", "": "/system.slice/x.service"}


def test_v2_parent_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    mount = cgroups._Mount("/", Path("/sys/fs/cgroup"), "cgroup2", frozenset())
    monkeypatch.delenv(cgroups.ENV_PARENT, raising=False)
    assert cgroups._v2_parents(mount, "/system.slice/tilde.service", True) == [
        (Path("/sys/fs/cgroup/system.slice/tilde.service"), True),
        (Path("/sys/fs/cgroup"), False)]
    assert cgroups._v2_parents(mount, "/", True) == [(Path("/sys/fs/cgroup"), False)]
    monkeypatch.setenv(cgroups.ENV_PARENT, "/system.slice/tilde.service/sandboxes")
    assert cgroups._v2_parents(mount, "/x", True) == [
        (Path("/sys/fs/cgroup/system.slice/tilde.service/sandboxes"), False)]
    monkeypatch.setenv(cgroups.ENV_PARENT, "/sys/fs/cgroup/delegated")
    assert cgroups._v2_parents(mount, "/x", True) == [(Path("/sys/fs/cgroup/delegated"), False)]


def test_resources_in_the_spec() -> None:
    policy = ResourcePolicy(cpus=1, memory_mb=2048, pids=512, max_cpus=4,
                            max_cpu_seconds=100)
    spec = parse_create({"command": ["true"], "resources": {"memory_mb": 256, "cpus": 2}},
                        resources=policy)
    assert spec.resources == {"cpus": 2.0, "memory_mb": 256, "pids": 512, "cpu_seconds": 100}
    assert SandboxSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    old = spec.to_json()
    del old["resources"]  # a row stored before the field existed
    assert SandboxSpec.from_json(old).resources is None
    # Without a policy (a trigger's config): the shape only; the manager resolves it later,
    # clamping to the maxima instead of refusing.
    loose = parse_create({"command": ["true"], "resources": {"cpus": 16}})
    assert loose.resources == {"cpus": 16.0}
    assert policy.resolve(loose.resources, strict=False)["cpus"] == 4
    with pytest.raises(BadRequest):
        policy.resolve(loose.resources, strict=True)
    assert ResourcePolicy().resolve(None, strict=True)["cpu_seconds"] is None
    with pytest.raises(ValueError, match="above its maximum"):
        ResourcePolicy(pids=2000, max_pids=1024).check()
