"""The staging journal: what a daemon that dies leaves for the next one.

Layout under ``<cache_dir>/staging`` (one directory per daemon, ``<pid>-<hex>``)::

    mount.json       {"repository", "endpoint", "session_id"}: rewritten at every session switch
    <n>              the staged content of one file (upload.py)
    <n>.json         {"path", "damaged", "metadata"}: the file was closed (or fsynced,
                     truncated) while dirty; metadata: its mode, owner, user metadata

Subtleties:
1. A record exists exactly while its file is dirty *and* acknowledged: written before
   ``flush`` (so before ``close(2)`` returns), on truncate by path and on a failed write
   (``damaged``), removed once an upload carried the file's latest version or the file was
   discarded. A file written but never closed has no record: like a local filesystem, a
   crash may or may not keep what was written to an open file.
2. Records and ``mount.json`` are written to a temporary name and renamed, so a crash
   leaves the old or the new record, never half of one. They are not fsynced: they
   survive a daemon crash (the kernel has them), not a power loss (docs/semantics.md).
3. At start, a daemon reads the directories of daemons that are gone: each daemon holds
   an ``flock`` on its directory's ``lock`` file for its life, so a directory whose lock
   can be taken belongs to nobody (however its daemon ended, whatever its pid became).
   A plain mount of the same repository resumes the dead daemon's session if it is still
   open and holds changes or the journal has records (what was uploaded before the crash
   is there). Records are *adopted* when they belong to the same repository and session
   (their content files are moved into the new daemon's directory and uploaded before the
   mount serves), or else set aside under ``<cache_dir>/unrecovered/<session>/<path>``
   with a MANIFEST.json and reported: a journal is never dropped silently. A directory
   without records is removed once read.
4. Everything here blocks (file I/O): callers run it in a thread (upload.py's limiter).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MOUNT_INFO = "mount.json"
RECORD_SUFFIX = ".json"
LOCK = "lock"


def hold(directory: Path) -> int:
    """Blocking: take the directory's lock for this daemon's life (the fd is the lock;
    the kernel releases it however the daemon ends)."""
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _held(directory: Path) -> bool:
    """Whether a live daemon holds ``directory`` (its lock cannot be taken)."""
    try:
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock we took
    return False


def write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    """Blocking: ``path`` holds ``obj`` whole, or its previous content (subtlety 2)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def record_path(local: Path) -> Path:
    return local.with_name(local.name + RECORD_SUFFIX)


def write_record(local: Path, path: str, damaged: str | None,
                 metadata: dict[str, str] | None = None) -> None:
    """Blocking: journal the staged file ``local`` as the content of ``path`` (with the
    mode, owner and user metadata its upload must store)."""
    write_json_atomic(record_path(local), {"path": path, "damaged": damaged,
                                           "metadata": metadata or {}})


def remove_record(local: Path) -> None:
    """Blocking: the file is clean or gone; its record goes."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(record_path(local))


@dataclass
class JournaledFile:
    """One acknowledged dirty file found in a dead daemon's directory."""

    local: Path
    path: str
    damaged: str | None
    size: int
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class DeadMount:
    """A dead daemon's staging directory that still holds journaled files."""

    directory: Path
    repository: str | None
    endpoint: str | None
    session_id: str | None
    files: list[JournaledFile] = field(default_factory=list)


def _pid_alive(pid: int) -> bool:
    """A daemon still runs as ``pid``: not a zombie, and not another program that got the
    pid after ours died (its command line names tilde_mount)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[-1].split()[0] == b"Z":
                return False
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"tilde" in f.read()
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def scan_dead(root: Path, own: Path) -> list[DeadMount]:
    """Blocking: the journals left under ``root`` by dead daemons (subtlety 3).

    Directories of dead daemons without a record or a session are removed; live daemons'
    are left alone.
    """
    found: list[DeadMount] = []
    if not root.is_dir():
        return found
    for other in sorted(root.iterdir()):
        pid = other.name.partition("-")[0]
        if other == own or not pid.isdigit() or not other.is_dir():
            continue
        if _held(other) if (other / LOCK).exists() else _pid_alive(int(pid)):
            continue
        info = _read_json(other / MOUNT_INFO) or {}
        dead = DeadMount(other, info.get("repository"), info.get("endpoint"),
                         info.get("session_id"))
        for rec in sorted(other.glob("*" + RECORD_SUFFIX)):
            if rec.name == MOUNT_INFO:
                continue
            data = _read_json(rec)
            local = rec.with_name(rec.name[:-len(RECORD_SUFFIX)])
            if data is None or not isinstance(data.get("path"), str):
                log.warning("unreadable journal record %s: kept", rec)
                data = {"path": f"unreadable-record/{local.name}", "damaged": "unreadable"}
            try:
                size = local.stat().st_size
            except FileNotFoundError:  # created, never written: empty content
                local.touch()
                size = 0
            damaged = data.get("damaged")
            meta = data.get("metadata")
            meta = {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
            dead.files.append(JournaledFile(local, data["path"],
                                            damaged if isinstance(damaged, str) else None,
                                            size, meta))
        if dead.files or dead.session_id:
            found.append(dead)  # even with nothing unsent, its session may hold uploads
        else:
            log.info("removing the staging of dead daemon %s (nothing unsent): %s", pid, other)
            shutil.rmtree(other, ignore_errors=True)
    return found


def adopt(jf: JournaledFile, own: Path, name: str) -> Path:
    """Blocking: move a journaled content file into ``own`` as ``name`` (its record is
    rewritten by the caller under the new name, then the old one goes)."""
    target = own / name
    os.replace(jf.local, target)
    remove_record(jf.local)
    return target


def set_aside(dead: DeadMount, dest_root: Path) -> Path:
    """Blocking: move a journal that cannot be replayed where a person finds it.

    ``dest_root/<session>/<path>`` for each file, plus MANIFEST.json saying what it is;
    the dead daemon's directory is removed afterwards. Returns the directory used.
    """
    dest = dest_root / (dead.session_id or "unknown-session")
    if dest.exists():
        dest = dest.with_name(f"{dest.name}-{int(time.time())}")
    dest.mkdir(parents=True)
    manifest: dict[str, Any] = {"repository": dead.repository, "endpoint": dead.endpoint,
                                "session_id": dead.session_id, "files": []}
    for jf in dead.files:
        target = dest / jf.path
        if dest not in target.resolve().parents:  # never outside dest (hostile path)
            target = dest / "unsafe-names" / jf.local.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(jf.local, target)
        manifest["files"].append({"path": jf.path, "file": str(target.relative_to(dest)),
                                  "size": jf.size, "damaged": jf.damaged})
    write_json_atomic(dest / "MANIFEST.json", manifest)
    shutil.rmtree(dead.directory, ignore_errors=True)
    return dest
