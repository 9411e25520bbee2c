"""POSIX attributes of objects, as ``tilde-mount`` stores them (docs/client.md "POSIX attributes").

A mount keeps each file's mode, owner, group and times in the object's user metadata
(``posix-mode``, ``posix-uid``, ``posix-gid``, ``posix-mtime``, ``posix-ctime``), stores a
symlink as an object whose content is its target, and an empty directory as a marker
object ``DIR/``. This module lets a program that uses the client read and write the same
things without knowing the encoding: the encoding itself lives in ``tilde._wire.posix``,
shared with the mount and the server, and is only re-exported here, so the two can never
disagree.

Reading::

    for item in repo.objects.list(prefix="bin/"):
        attrs = tilde.posix.attributes(item)
        if attrs.is_symlink:
            print(item.path, "->", tilde.posix.symlink_target(repo.objects, item.path))
        elif attrs.permissions is not None and attrs.permissions & 0o111:
            print(item.path, "is executable")

Writing: `posix_metadata` builds the metadata entries for an upload that carries metadata.
"""

from __future__ import annotations

import os
import stat as _stat
from collections.abc import Mapping
from typing import Any, Protocol

from ._wire.posix import (
    CTIME,
    GID,
    KEYS,
    MARKER_SUFFIX,
    MODE,
    MTIME,
    UID,
    PosixAttrs,
    encode,
    format_time,
    is_marker_key,
    marker_key,
    parse,
    parse_time,
    split,
)
from .exceptions import NotFoundError

__all__ = [
    "CTIME",
    "GID",
    "KEYS",
    "MARKER_SUFFIX",
    "MODE",
    "MTIME",
    "UID",
    "PosixAttrs",
    "attributes",
    "encode",
    "format_time",
    "is_directory_marker",
    "is_marker_key",
    "is_symlink",
    "marker_key",
    "parse",
    "parse_time",
    "posix_metadata",
    "split",
    "symlink_metadata",
    "symlink_target",
]


class _Readable(Protocol):
    """What `symlink_target` needs: ``SessionObjects`` and ``ReadOnlyObjects`` both fit."""

    def list(self, *, prefix: str | None = None, delimiter: str | None = None,
             after: str | None = None, amount: int | None = None) -> Any: ...

    def get(self, path: str) -> Any: ...


def _metadata_of(item: Any) -> Mapping[str, str]:
    """The user metadata of whatever the client hands out for one object.

    Accepted: a mapping (the metadata itself), an ``Entry`` (``.metadata``), or a
    ``ListingEntry`` / ``EntryRecord`` (``.entry``, None for a prefix or a deletion, which
    have no attributes). Anything else is a programming error, not "no attributes".
    """
    if isinstance(item, Mapping):
        return item
    if hasattr(item, "metadata"):
        meta = item.metadata
        return meta if isinstance(meta, Mapping) else {}
    if hasattr(item, "entry"):
        return _metadata_of(item.entry) if item.entry is not None else {}
    raise TypeError(f"no object metadata in {type(item).__name__}: pass an Entry, "
                    "a ListingEntry or a dict")


def attributes(item: Any) -> PosixAttrs:
    """The POSIX attributes of one object (``None`` fields where it says nothing).

    ``item`` is a listing row (``ListingEntry``), an ``Entry``, an ``EntryRecord`` or the
    metadata dict itself. Values another tool wrote badly are ignored, never an error: an
    object written without a mount simply has no attributes, and the mount's defaults
    (0644 files, 0755 directories) apply to it.
    """
    return parse(_metadata_of(item))


def is_symlink(item: Any) -> bool:
    """True when the object is a symlink stored by a mount (its content is the target)."""
    return attributes(item).is_symlink


def is_directory_marker(item: Any) -> bool:
    """True for an empty directory's marker object (key ``DIR/``), by path or listing row.

    A listing with ``delimiter="/"`` shows a marker's directory as a prefix; without a
    delimiter the marker itself appears, and this tells it from a file.
    """
    if getattr(item, "type", "object") == "prefix":
        return False  # a listing's common prefix ends with "/" too, and is no object
    path = item if isinstance(item, str) else getattr(item, "path", None)
    if not isinstance(path, str):
        raise TypeError(f"no path in {type(item).__name__}")
    return is_marker_key(path)


def posix_metadata(*, mode: int | None = None, uid: int | None = None,
                   gid: int | None = None, mtime_ns: int | None = None,
                   ctime_ns: int | None = None) -> dict[str, str]:
    """Metadata entries that make a mount show these attributes (only those given).

    ``mode`` may hold the permission bits only (``0o755``): a regular file's type is then
    added, since the stored mode always carries the file type (a mount would otherwise
    ignore it). Pass ``stat.S_IFDIR | 0o700`` for a directory marker.
    """
    if mode is not None:
        if mode < 0 or mode > 0o177777:
            raise ValueError(f"mode {mode:#o} is not a file mode")
        if _stat.S_IFMT(mode) == 0:
            mode |= _stat.S_IFREG
        if _stat.S_IFMT(mode) not in (_stat.S_IFREG, _stat.S_IFDIR, _stat.S_IFLNK):
            raise ValueError(f"mode {mode:#o}: only files, directories and symlinks are stored")
    for name, value in (("uid", uid), ("gid", gid)):
        if value is not None and not 0 <= value < 2**32:
            raise ValueError(f"{name} {value} is out of range")
    return encode(PosixAttrs(mode=mode, uid=uid, gid=gid, mtime_ns=mtime_ns,
                             ctime_ns=ctime_ns))


def symlink_metadata(*, uid: int | None = None, gid: int | None = None,
                     mtime_ns: int | None = None) -> dict[str, str]:
    """Metadata of a symlink object (mode ``120777``); its content must be the target."""
    return posix_metadata(mode=_stat.S_IFLNK | 0o777, uid=uid, gid=gid, mtime_ns=mtime_ns)


def symlink_target(objects: _Readable, path: str) -> str | None:
    """The target of the symlink at ``path``, or None when ``path`` is not a symlink.

    ``objects`` is ``repo.objects`` (committed) or ``session.objects``. Costs one listing
    request (the attributes are in the listing, not in the object's bytes) and, for a
    symlink, one read. A target that is not UTF-8 is decoded as ``os.fsdecode`` does, so
    it round-trips to the same bytes. Raises ``NotFoundError`` when nothing is at ``path``.
    """
    for item in objects.list(prefix=path, amount=1):
        if item.path != path:
            break
        if not is_symlink(item):
            return None
        with objects.get(path) as reader:
            return os.fsdecode(reader.read())
    raise NotFoundError(404, message=f"no object at {path!r}")
