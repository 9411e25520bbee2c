"""bwrap's --info-fd read (manager.read_info) on descriptors past FD_SETSIZE, as a busy server has
them: a select()-based read failed every sandbox there with "filedescriptor out of range"."""

from __future__ import annotations

import os
import resource

from tilde_server.sandbox.manager import read_info


def test_read_info_past_fd_setsize() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    try:
        for payload, expected in ((b'{"child-pid": 2}', True), (b"", False)):
            r, w = os.pipe()
            high = os.dup2(r, 2000)
            os.close(r)
            os.write(w, payload)
            os.close(w)
            assert read_info(high, 5.0) is expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
