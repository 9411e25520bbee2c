"""Hostile names through a real mount: what a program can pass through syscalls is either
refused with a clear errno or stored byte for byte, and nothing lands outside the
mountpoint and the daemon's cache and state directories.

The kernel resolves '.', '..' and '/' itself, so what reaches the daemon is any byte string
without '/' and NUL, up to FUSE's 1024 bytes: invalid UTF-8 must be EINVAL (object keys are
text), a name longer than the kernel's limit or a path whose key would exceed 1024 bytes
ENAMETOOLONG at create (never a failure later, at commit); backslashes, drive letters,
control characters, RTL overrides, NFC/NFD twins and literal `%2F` are stored as given. A
refused name must not block the commit of the others.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import Any

import pytest
from fusehelpers import Api, Tool
from secutil import tree

from figures import record

pytestmark = pytest.mark.timeout(240)

MARK = "tsecm" + secrets.token_hex(4)

KEPT: list[bytes] = [
    b"back\\slash", b"..\\..\\" + MARK.encode(), b"C:\\Windows\\x", b"c:", b"new\nline",
    b"tab\tname", b"ctl\x01\x1b[0m", b"del\x7f", b"\xe2\x80\xaegnp.exe", b"caf\xc3\xa9",
    b"cafe\xcc\x81", b"...", b".. ", b" ..", b"%2F..%2F" + MARK.encode(), b"*?[]",
    b"\xef\xbc\x8e\xef\xbc\x8e\xef\xbc\x8fx", b"n" * 255,
]
REFUSED: list[tuple[bytes, int]] = [
    (b"\xff", errno.EINVAL), (b"over\xc0\xaflong", errno.EINVAL),
    (b"surrogate\xed\xa0\x80", errno.EINVAL), (b"a\x80b", errno.EINVAL),
    (b"trunc\xe2\x82", errno.EINVAL), (b"m" * 256, errno.ENAMETOOLONG),  # NAME_MAX 255
    (b"x" * 1025, errno.ENAMETOOLONG),
    (b"deep/" + b"y" * 1020, errno.ENAMETOOLONG),  # key of 1025 bytes
]


def _create(path: bytes, data: bytes) -> int:
    """0, or the errno of creating and writing ``path``."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    except OSError as exc:
        return exc.errno or -1
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return 0


def test_hostile_names_through_a_mount(tool: Tool, api: Api, tmp_path: Path) -> None:
    api.seed({"seed.txt": b"seed"})
    mnt = tmp_path / "mnt"
    tool.mount(api.ref.path, mnt)
    os.mkdir(mnt / "deep")
    outside_before = _outside(tmp_path)
    m = os.fsencode(mnt)
    stored = {name: _create(m + b"/" + name, b"kept " + name) for name in KEPT}
    refused = {name: _create(m + b"/" + name, b"x") for name, _ in REFUSED}
    assert stored == dict.fromkeys(KEPT, 0), {k: errno.errorcode.get(v) for k, v in
                                               stored.items() if v}
    want = {name: code for name, code in REFUSED}
    assert refused == want, {k: errno.errorcode.get(v, v) for k, v in refused.items()}
    listed = set(os.listdir(m))
    assert set(KEPT) <= listed and not {n for n, _ in REFUSED} & listed
    r = tool.tm("commit", str(mnt), "-m", "names")
    assert r.returncode == 0
    committed = api.tree()
    assert committed == {"seed.txt": b"seed", "deep/": b"",  # the empty directory's marker
                         **{n.decode(): b"kept " + n for n in KEPT}}, sorted(committed)
    new = sorted(set(_outside(tmp_path)) - set(outside_before))
    escaped = [n for n in os.listdir("/tmp") if n.startswith(MARK)]
    assert not new and not escaped, (new, escaped)
    record("security", mount_names=len(KEPT) + len(REFUSED),
           mount_names_refused=len(REFUSED), files_outside=0)


def _outside(tmp_path: Path) -> dict[str, Any]:
    """Every file under the test's directory but the mountpoint, the daemon's cache and
    state directories and the client's home (where the mount may write)."""
    allowed = [str(tmp_path / d) for d in ("mnt", "cache", "state", "home")]
    return {p: v for p, v in tree(tmp_path).items()
            if not any(p == a or p.startswith(a + "/") for a in allowed)}
