"""POSIX attributes kept in an object's user metadata (docs/semantics.md "What is stored").

One encoding for everyone who reads or writes them: the mount, the client's
``tilde.posix`` helpers, the fsspec layer and the server's sandboxes. Keys are lowercase
ASCII so that they survive the trip through ``X-Tilde-Meta-*`` headers unchanged:

========================  =====================================================
``posix-mode``            ``st_mode`` in octal, file type included: ``100644``
                          (file), ``100755``, ``120777`` (symlink), ``40755``
                          (directory marker)
``posix-uid``             owner, decimal
``posix-gid``             group, decimal
``posix-mtime``           modification time, seconds since the epoch with nine
                          decimals (``1577836800.000000000``): nanoseconds exact
``posix-ctime``           status change time, same format
``posix-rdev``            a device file's device number, decimal
========================  =====================================================

Subtleties:
1. A symlink is an object whose ``posix-mode`` has the S_IFLNK type; its content is the
   target (so another client reading it sees the target as text).
2. A directory marker is the key ``DIR/`` (``MARKER_SUFFIX``), empty, whose metadata holds
   the directory's attributes: an empty directory persists, as in the S3 convention.
3. Parsing is lenient: a value that does not parse is ignored (the default applies), so an
   object written by another tool never makes a path unreadable. Unknown keys are the
   caller's own metadata and are kept apart (`split`).
4. Values are plain ASCII, so a header carries them verbatim (no percent-encoding).
5. FIFOs, sockets and device files are empty objects whose ``posix-mode`` gives the type
   (and ``posix-rdev`` a device's number): the kernel gives them their meaning.
"""

from __future__ import annotations

import stat as S
from collections.abc import Mapping
from dataclasses import dataclass

MODE = "posix-mode"
UID = "posix-uid"
GID = "posix-gid"
MTIME = "posix-mtime"
CTIME = "posix-ctime"
RDEV = "posix-rdev"
KEYS = (MODE, UID, GID, MTIME, CTIME, RDEV)
_TYPES = (S.S_IFREG, S.S_IFDIR, S.S_IFLNK, S.S_IFIFO, S.S_IFSOCK, S.S_IFCHR, S.S_IFBLK)
#: a directory's marker object is its key plus this (subtlety 2)
MARKER_SUFFIX = "/"

_MAX_ID = 2**32 - 1


@dataclass(frozen=True)
class PosixAttrs:
    """What the metadata says; None (or 0 for times) where it says nothing usable."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime_ns: int | None = None
    ctime_ns: int | None = None
    rdev: int | None = None

    @property
    def is_symlink(self) -> bool:
        return self.mode is not None and S.S_ISLNK(self.mode)

    @property
    def is_dir(self) -> bool:
        return self.mode is not None and S.S_ISDIR(self.mode)

    @property
    def permissions(self) -> int | None:
        return None if self.mode is None else S.S_IMODE(self.mode)


def format_time(ns: int) -> str:
    """Nanoseconds since the epoch as ``seconds.nnnnnnnnn`` (negative times allowed)."""
    sign = "-" if ns < 0 else ""
    sec, frac = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{sec}.{frac:09d}"


def parse_time(text: str) -> int | None:
    """``seconds[.fraction]`` as nanoseconds; None when it is not that."""
    body = text.strip()
    negative = body.startswith("-")
    body = body[1:] if negative else body
    sec, _, frac = body.partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()) or len(frac) > 9:
        return None
    ns = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0") if frac else 0)
    return -ns if negative else ns


def _parse_id(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) <= _MAX_ID else None


def _parse_mode(text: str) -> int | None:
    try:
        mode = int(text, 8)
    except ValueError:
        return None
    kind = S.S_IFMT(mode)
    if mode < 0 or mode > 0o177777 or kind not in _TYPES:
        return None
    return mode


def parse(metadata: Mapping[str, str]) -> PosixAttrs:
    """The POSIX attributes in ``metadata`` (subtlety 3: bad values are ignored)."""
    get = metadata.get
    mode = get(MODE)
    uid, gid, mtime, ctime, rdev = get(UID), get(GID), get(MTIME), get(CTIME), get(RDEV)
    return PosixAttrs(
        mode=_parse_mode(mode) if mode else None,
        uid=_parse_id(uid) if uid else None,
        gid=_parse_id(gid) if gid else None,
        mtime_ns=parse_time(mtime) if mtime else None,
        ctime_ns=parse_time(ctime) if ctime else None,
        rdev=int(rdev) if rdev and rdev.isdigit() and int(rdev) < 2**64 else None)


def encode(attrs: PosixAttrs) -> dict[str, str]:
    """``attrs`` as metadata entries (only what is set)."""
    out: dict[str, str] = {}
    if attrs.mode is not None:
        out[MODE] = f"{attrs.mode:o}"
    if attrs.uid is not None:
        out[UID] = str(attrs.uid)
    if attrs.gid is not None:
        out[GID] = str(attrs.gid)
    if attrs.mtime_ns is not None:
        out[MTIME] = format_time(attrs.mtime_ns)
    if attrs.ctime_ns is not None:
        out[CTIME] = format_time(attrs.ctime_ns)
    if attrs.rdev:
        out[RDEV] = str(attrs.rdev)
    return out


def split(metadata: Mapping[str, str]) -> tuple[PosixAttrs, dict[str, str]]:
    """(the POSIX attributes, every other entry: the user's own metadata)."""
    return parse(metadata), {k: v for k, v in metadata.items() if k not in KEYS}


def marker_key(directory: str) -> str:
    """The key of ``directory``'s marker object (``a/b`` -> ``a/b/``)."""
    return directory + MARKER_SUFFIX


def is_marker_key(key: str) -> bool:
    return key.endswith(MARKER_SUFFIX)
