"""POSIX attributes between the server's metadata and the mount's `Stat` (one place).

Subtleties:
1. An object without POSIX metadata (written by another client) keeps the defaults: the
   mount's file/dir mode, the mounting user, its upload time as mtime (whole seconds).
2. ``posix-mtime`` wins over the server's time, so a file keeps the mtime ``touch -d``,
   ``cp -p``, ``rsync -a`` or ``tar`` gave it, to the nanosecond, across a commit.
3. A directory's attributes live in its ``DIR/`` marker (tilde._wire.posix); one without a
   marker is a directory implied by its content, with the defaults.
4. Metadata the mount writes back is the POSIX keys *plus* the object's other user
   metadata, so a chmod never drops what another client stored.
"""

from __future__ import annotations

import stat as S
from dataclasses import replace

from tilde._wire import posix

from .meta_cache import Stat
from .remote import RemoteObject


def _user(metadata: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(metadata.items()))


def file_stat(obj: RemoteObject) -> Stat:
    """A file or symlink object as a `Stat` (subtleties 1, 2)."""
    attrs, user = posix.split(obj.metadata)
    mode = attrs.mode if attrs.mode is not None and not attrs.is_dir else 0
    return Stat(False, obj.size, obj.etag,
                attrs.mtime_ns if attrs.mtime_ns is not None else obj.mtime_ns,
                mode=mode, uid=attrs.uid, gid=attrs.gid, ctime_ns=attrs.ctime_ns or 0,
                user_meta=_user(user), rdev=attrs.rdev or 0)


def dir_stat(marker: RemoteObject | None) -> Stat:
    """A directory, from its marker object if it has one (subtlety 3)."""
    if marker is None:
        return Stat(True, marker=False)
    attrs, user = posix.split(marker.metadata)
    mode = attrs.mode if attrs.mode is not None and attrs.is_dir else 0
    return Stat(True, mtime_ns=attrs.mtime_ns if attrs.mtime_ns is not None
                else marker.mtime_ns, mode=mode, uid=attrs.uid, gid=attrs.gid,
                ctime_ns=attrs.ctime_ns or 0, user_meta=_user(user), marker=True)


def metadata(st: Stat, *, default_mode: int) -> dict[str, str]:
    """What the server must store for ``st`` (subtlety 4); ``default_mode``: the
    permission bits shown for it when it stores none."""
    kind = S.S_IFDIR if st.is_dir else (S.S_IFMT(st.mode) or S.S_IFREG)
    perm = S.S_IMODE(st.mode) if st.mode else default_mode
    attrs = posix.PosixAttrs(mode=kind | perm, uid=st.uid, gid=st.gid,
                             mtime_ns=st.mtime_ns if has_times(st) else None,
                             ctime_ns=st.ctime_ns or None, rdev=st.rdev or None)
    return {**dict(st.user_meta), **posix.encode(attrs)}


def has_times(st: Stat) -> bool:
    """Whether ``st.mtime_ns`` is a stored time, 0 (the epoch) included: it is once the
    POSIX metadata is there (``mode`` set); without it, 0 means "not known"."""
    return bool(st.mode or st.mtime_ns)


def with_changes(st: Stat, *, mode: int | None, uid: int | None, gid: int | None,
                 mtime_ns: int | None, now_ns: int, default_mode: int) -> Stat:
    """``st`` after a chmod/chown/utimens (ctime moves to now); its mode is set from
    then on (``default_mode`` if it had none), so its times count (`has_times`)."""
    kind = S.S_IFDIR if st.is_dir else (S.S_IFMT(st.mode) or S.S_IFREG)
    perm = S.S_IMODE(mode) if mode is not None else (
        S.S_IMODE(st.mode) if st.mode else default_mode)
    return replace(
        st, mode=kind | perm,
        uid=uid if uid is not None else st.uid, gid=gid if gid is not None else st.gid,
        mtime_ns=mtime_ns if mtime_ns is not None else st.mtime_ns, ctime_ns=now_ns)
