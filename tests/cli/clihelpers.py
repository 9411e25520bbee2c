"""Helpers for the `tilde` command-line tests: run the real console script in a subprocess
against the session's tilde-server, and look at the repository through the bundled Python
client (never through the CLI under test).

Every subprocess gets its own HOME (so ~/.tilde/config.yaml is the test's), the endpoint and
key by environment unless a test says otherwise, and no TILDE_API_URL.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import ServerHandle
from tilde import Client

TILDE = Path(sys.executable).parent / "tilde"

#: variables of the developer's environment that would change what the CLI resolves
_CLEARED = ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL",
            "TILDE_DEFAULT_SANDBOX_IMAGE", "TILDE_SANDBOX_CREDENTIALS_URI")


def cli_env(server: ServerHandle, home: Path, *, key: bool = True, endpoint: bool = True,
            extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for one `tilde` run: HOME=home, endpoint/key by environment."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    env["HOME"] = str(home)
    if endpoint:
        env["TILDE_ENDPOINT_URL"] = server.endpoint
    if key:
        env["TILDE_API_KEY"] = server.api_key
    env.update(extra or {})
    return env


def tilde(*args: str, env: Mapping[str, str], input: bytes | str | None = None,
          cwd: Path | str | None = None, timeout: float = 120
          ) -> subprocess.CompletedProcess[bytes]:
    """Run the console script; stdin is /dev/null unless ``input`` is given (never a tty)."""
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run(
        [str(TILDE), *args], env=dict(env), input=data,
        stdin=subprocess.DEVNULL if data is None else None,
        capture_output=True, cwd=cwd, timeout=timeout, check=False)


def tilde_many(argsets: Sequence[Sequence[str]], *, env: Mapping[str, str]
               ) -> list[subprocess.CompletedProcess[bytes]]:
    """Several independent runs at once (they only read, or are meant to fail)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(lambda args: tilde(*args, env=env), argsets))


def out(r: subprocess.CompletedProcess[bytes]) -> str:
    return r.stdout.decode()


def err(r: subprocess.CompletedProcess[bytes]) -> str:
    return r.stderr.decode()


def _show(r: subprocess.CompletedProcess[bytes]) -> str:
    return f"exit {r.returncode}\nstdout: {r.stdout!r}\nstderr: {r.stderr!r}"


def ok(r: subprocess.CompletedProcess[bytes]) -> str:
    """Exit 0, no traceback, and whatever went to stderr is `tilde:` lines; the stdout text."""
    assert r.returncode == 0, _show(r)
    assert_clean_stderr(r)
    return out(r)


def assert_clean_stderr(r: subprocess.CompletedProcess[bytes]) -> None:
    text = err(r)
    assert "Traceback" not in text, _show(r)
    for line in text.splitlines():
        assert line.startswith("tilde:"), _show(r)


def failed(r: subprocess.CompletedProcess[bytes], code: int) -> str:
    """Exit ``code`` with exactly one stderr line starting with `tilde:`; that line."""
    assert r.returncode == code, _show(r)
    text = err(r)
    assert "Traceback" not in text, _show(r)
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tilde: "), _show(r)
    return lines[0]


def client(server: ServerHandle) -> Client:
    return Client(endpoint_url=server.endpoint, api_key=server.api_key)


def commit_ids(server: ServerHandle, repo_path: str) -> list[str]:
    """The repository's commits, newest first, read through the Python client."""
    with client(server) as c:
        return [commit.id for commit in c.repository(repo_path).commits.list()]


def head_files(server: ServerHandle, repo_path: str, prefix: str | None = None
               ) -> dict[str, bytes]:
    """Every committed object (under ``prefix``) with its bytes, through the Python client."""
    with client(server) as c:
        repo = c.repository(repo_path)
        files = {}
        for entry in repo.objects.list(prefix=prefix):
            with repo.objects.get(entry.path) as f:
                files[entry.path] = f.read()
        return files


def tilde_pty_stderr(*args: str, env: Mapping[str, str], timeout: float = 120
                     ) -> tuple[int, bytes, bytes]:
    """Run with a pseudo-terminal as stderr (stdout a pipe): (status, stdout, terminal)."""
    master, slave = os.openpty()
    proc = subprocess.Popen([str(TILDE), *args], env=dict(env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = bytearray()
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            seen += chunk
        assert proc.stdout is not None
        stdout = proc.stdout.read()
        status = proc.wait(timeout=timeout)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return status, stdout, bytes(seen)
