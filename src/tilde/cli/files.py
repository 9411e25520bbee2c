"""``tilde ls|cat|cp|rm``: files in and out of repositories, through the ``tilde://``
filesystem (tilde.fsspec), so uploads, downloads and checksum skips work as they do there.

1. Atomic writes: a ``cp`` into a repository or an ``rm`` stages everything in one session
   (the filesystem's ``session_id`` option) and commits it with the sync client once every
   file is in, so the commit says whether it waits for approval; any failure rolls the
   session back and nothing is committed. Nothing to commit (every file unchanged) rolls
   back too and says so.
2. Destinations follow cp(1): with several sources, a trailing ``/`` or an existing
   directory, DST is a directory and each source keeps its base name inside it; otherwise
   DST is the new name. The (source, target) pairs are worked out here and handed to
   fsspec as two lists, which it maps one to one.
3. Progress: on a terminal (stderr) only, unless ``--progress``/``--no-progress`` says
   otherwise; bytes for the bar come from fsspec's per-file callbacks.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from typing import Any

import click
from fsspec.callbacks import DEFAULT_CALLBACK, Callback

from .. import _wire
from ..exceptions import BadRequestError
from ._common import (
    EXIT_APPROVAL,
    CLIError,
    State,
    emit_json,
    run_command,
    state,
    usage_error,
)

STDIO = "-"


def _remote(path: str) -> str:
    """``tilde://org/repo/key`` or ``org/repo/key`` as the filesystem's path; checks the
    shape so a typo is a usage error, not a 404."""
    stripped = _wire.strip_scheme(path).strip("/")
    try:
        _wire.parse_url(stripped)
    except ValueError as exc:
        raise usage_error(f"{path!r}: {exc}") from None
    return stripped


def _display(fs_path: str) -> str:
    """A filesystem path without ``org/repo[@ref]/``: the key, as people name it (an
    organization or ``org/repo`` above the keys stays whole)."""
    if fs_path.count("/") < 2 and "@" not in fs_path:
        return fs_path
    return _wire.parse_url(fs_path).path


# --- progress ------------------------------------------------------------------------------

class _Progress(Callback):
    """Counts files on itself and bytes through the children fsspec makes per file."""

    def __init__(self, total_bytes: int, label: str) -> None:
        super().__init__()
        self._bar: Any = click.progressbar(length=max(total_bytes, 1), label=label,
                                           file=sys.stderr, show_eta=True, show_percent=True)
        self._bar.__enter__()

    def branched(self, path_1: Any, path_2: Any, **kwargs: Any) -> Callback:
        return _FileProgress(self._bar)

    def close(self) -> None:
        self._bar.__exit__(None, None, None)


class _FileProgress(Callback):
    def __init__(self, bar: Any) -> None:
        super().__init__()
        self._bar = bar
        self._seen = 0

    def call(self, *args: Any, **kwargs: Any) -> None:
        if self.value > self._seen:
            self._bar.update(self.value - self._seen)
            self._seen = self.value


def _progress(flag: bool | None, total: int, label: str) -> Any:
    if flag is None:
        flag = sys.stderr.isatty()
    return _Progress(total, label) if flag else DEFAULT_CALLBACK


def _close(cb: Any) -> None:
    if isinstance(cb, _Progress):
        cb.close()


# --- one session, one commit (point 1) -----------------------------------------------------

def _commit_writes(st: State, repo_path: str, message: str, work: Any) -> str:
    """Run ``work(fs)`` with writes staged in a new session of ``repo_path``; commit.
    Returns the commit id ("" when there was nothing to commit)."""
    repo = st.client().repository(repo_path)
    session = repo.session()
    try:
        work(st.fs(session.session_id))
    except BaseException:
        try:
            session.rollback()
        except Exception:  # the error that made us roll back is the one shown
            pass
        raise
    try:
        result = session.commit_result(message)
    except BadRequestError as err:
        if err.code != "no_changes":
            raise
        session.rollback()
        click.echo("tilde: nothing changed; no commit made", err=True)
        return ""
    if result.status == "approval_required":
        raise CLIError(f"committed for approval; review it at {result.web_url}", EXIT_APPROVAL)
    click.echo(f"tilde: committed {result.commit_id} to {repo_path}", err=True)
    return result.commit_id or ""


def _repo_of(fs_path: str) -> str:
    url = _wire.parse_url(fs_path)
    if url.ref:
        raise CLIError(f"tilde://{fs_path} is at a commit (@{url.ref}) and cannot be written")
    return url.repo_path


# --- ls, cat -------------------------------------------------------------------------------

@click.command()
@click.argument("path", metavar="PATH")
@click.option("-l", "long", is_flag=True, help="Sizes and times too.")
@click.option("-R", "--recursive", is_flag=True, help="Everything below PATH, files only.")
@click.option("--json", "as_json", is_flag=True, help="The entries as JSON.")
def ls(path: str, long: bool, recursive: bool, as_json: bool) -> None:
    """List a directory of a repository (tilde://ORG/REPO[@REF]/DIR)."""
    def body() -> None:
        fs = state().fs()
        top = _wire.strip_scheme(path).strip("/")
        remote = top if "/" not in top else _remote(path)  # "" or ORG: above the repositories
        if recursive and "/" not in remote:
            raise usage_error("ls -R needs a repository (tilde://ORG/REPO[/DIR])")
        if recursive:
            entries = list(fs.find(remote, detail=True).values())
        else:
            entries = fs.ls(remote, detail=True)
        if as_json:
            emit_json(entries)
            return
        for e in entries:
            name = _display(e["name"]) + ("/" if e["type"] == "directory" else "")
            if long:
                when = e.get("last_modified") or ""
                if hasattr(when, "isoformat"):
                    when = when.isoformat()
                click.echo(f"{e.get('size', 0):>12}  {when or '-':<25}  {name}")
            else:
                click.echo(name)
    run_command(body)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
def cat(paths: tuple[str, ...]) -> None:
    """Write objects to standard output."""
    def body() -> None:
        fs = state().fs()
        out = sys.stdout.buffer
        for p in paths:
            with fs.open(_remote(p), "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
        out.flush()
    run_command(body)


# --- cp ------------------------------------------------------------------------------------

def _local_pairs(sources: list[str], target: str, into_dir: bool,
                 recursive: bool) -> Iterator[tuple[str, str]]:
    """(local file, remote path) for an upload (point 2)."""
    for src in sources:
        base = os.path.basename(os.path.normpath(src))
        dest = f"{target}/{base}" if into_dir else target
        if os.path.isdir(src):
            if not recursive:
                raise usage_error(f"{src} is a directory (use -r)")
            for root, dirs, files in os.walk(src):
                dirs.sort()
                rel = os.path.relpath(root, src)
                for name in sorted(files):
                    key = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
                    yield os.path.join(root, name), f"{dest}/{key}"
        elif os.path.exists(src):
            yield src, dest
        else:
            raise CLIError(f"{src}: no such file or directory")


def _remote_pairs(fs: Any, sources: list[str], into_dir: bool,
                  recursive: bool) -> Iterator[tuple[str, str, int]]:
    """(remote file, relative target, size) for downloads and copies (point 2)."""
    for src in sources:
        info = fs.info(src)
        base = src.rstrip("/").rpartition("/")[2]
        if info["type"] == "directory":
            if not recursive:
                raise usage_error(f"tilde://{src} is a directory (use -r)")
            prefix = src.rstrip("/") + "/"
            for name, e in sorted(fs.find(src, detail=True).items()):
                rel = name[len(prefix):] if name.startswith(prefix) else name
                yield name, (f"{base}/{rel}" if into_dir else rel), int(e.get("size") or 0)
        else:
            yield src, (base if into_dir else ""), int(info.get("size") or 0)


def _join(base: str, rel: str, sep: str = "/") -> str:
    return f"{base.rstrip(sep)}{sep}{rel}" if rel else base


@click.command()
@click.argument("args", nargs=-1, required=True, metavar="SRC... DST")
@click.option("-r", "--recursive", is_flag=True, help="Copy directories.")
@click.option("-m", "--message", default="tilde cp", show_default=True,
              help="Commit message of a copy into a repository.")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")
def cp(args: tuple[str, ...], recursive: bool, message: str, progress: bool | None) -> None:
    """Copy files between local paths and tilde://ORG/REPO/PATH (one commit per copy in)."""
    def body() -> None:
        if len(args) < 2:
            raise usage_error("cp needs a source and a destination")
        *sources, dst = args
        remote_src = [_wire.is_tilde_url(s) for s in sources]
        if _wire.is_tilde_url(dst):
            if all(remote_src):
                _copy_remote(sources, dst, recursive, message)
            elif not any(remote_src):
                _upload(sources, dst, recursive, message, progress)
            else:
                raise usage_error("mixing local and tilde:// sources is not supported")
        elif all(remote_src):
            _download(sources, dst, recursive, progress)
        else:
            raise usage_error("one side of cp must be a tilde:// path (use cp(1) for local "
                              "copies)")
    run_command(body)


def _into_dir(fs: Any, sources: list[str], target: str, raw_dst: str) -> bool:
    if len(sources) > 1 or raw_dst.endswith("/"):
        return True
    if not _wire.parse_url(target).path:
        return True  # the repository root
    try:
        return bool(fs.isdir(target))
    except FileNotFoundError:
        return False


def _upload(sources: list[str], dst: str, recursive: bool, message: str,
            progress: bool | None) -> None:
    st = state()
    target = _remote(dst)
    repo_path = _repo_of(target)
    if STDIO in sources:
        if len(sources) > 1:
            raise usage_error("'-' (standard input) must be the only source")
        if dst.endswith("/") or not _wire.parse_url(target).path:
            raise usage_error("copying standard input needs a file name as destination")

        def from_stdin(fs: Any) -> None:
            with fs.open(target, "wb") as f:
                shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        _commit_writes(st, repo_path, message, from_stdin)
        return
    into = _into_dir(st.fs(), sources, target, dst)
    pairs = list(_local_pairs(sources, target, into, recursive))
    if not pairs:
        raise CLIError("nothing to copy (no files under the sources)")
    total = sum(os.path.getsize(lp) for lp, _ in pairs)

    def put(fs: Any) -> None:
        cb = _progress(progress, total, f"upload {len(pairs)} file(s)")
        try:
            fs.put([lp for lp, _ in pairs], [rp for _, rp in pairs], callback=cb)
        finally:
            _close(cb)
    _commit_writes(st, repo_path, message, put)


def _download(sources: list[str], dst: str, recursive: bool, progress: bool | None) -> None:
    fs = state().fs()
    remotes = [_remote(s) for s in sources]
    if dst == STDIO:
        out = sys.stdout.buffer
        for r in remotes:
            with fs.open(r, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
        out.flush()
        return
    into = len(remotes) > 1 or dst.endswith(os.sep) or os.path.isdir(dst)
    dst = os.path.abspath(dst) + (os.sep if dst.endswith(os.sep) else "")
    pairs = [(r, _join(dst, rel, os.sep), size)
             for r, rel, size in _remote_pairs(fs, remotes, into, recursive)]
    for _, local, _ in pairs:
        parent = os.path.dirname(local)
        if parent:
            os.makedirs(parent, exist_ok=True)
    cb = _progress(progress, sum(s for *_, s in pairs), f"download {len(pairs)} file(s)")
    try:
        fs.get([r for r, _, _ in pairs], [lp for _, lp, _ in pairs], callback=cb)
    finally:
        _close(cb)


def _copy_remote(sources: list[str], dst: str, recursive: bool, message: str) -> None:
    st = state()
    target = _remote(dst)
    repo_path = _repo_of(target)
    remotes = [_remote(s) for s in sources]
    into = _into_dir(st.fs(), remotes, target, dst)
    pairs = [(r, _join(target, rel)) for r, rel, _ in _remote_pairs(st.fs(), remotes, into,
                                                                     recursive)]

    def copy(fs: Any) -> None:
        for src, dest in pairs:
            fs.cp_file(src, dest)
    _commit_writes(st, repo_path, message, copy)


# --- rm ------------------------------------------------------------------------------------

@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("-r", "--recursive", is_flag=True, help="Remove everything under directories.")
@click.option("-m", "--message", default="tilde rm", show_default=True,
              help="Commit message.")
def rm(paths: tuple[str, ...], recursive: bool, message: str) -> None:
    """Remove objects from one repository, in one commit."""
    def body() -> None:
        st = state()
        remotes = [_remote(p) for p in paths]
        repos = {_repo_of(r) for r in remotes}
        if len(repos) > 1:
            raise usage_error("rm removes from one repository at a time")
        for r in remotes:
            info = st.fs().info(r)
            if info["type"] == "directory" and not recursive:
                raise usage_error(f"tilde://{r} is a directory (use -r)")
        _commit_writes(st, repos.pop(), message,
                       lambda fs: fs.rm(remotes, recursive=recursive))
    run_command(body)
