"""Images: a name -> a read-only root file system for bubblewrap.

- `host`: the host's own system directories (/usr, /bin, /sbin, /lib*, /etc), read-only. Not
  `/`: the server's data directory, HOME, /root, /home, /var, /opt, /srv and /mnt stay out.
- operator images: `tilde-server image add NAME DIR` registers a root file system directory
  (e.g. a debootstrap tree); every top-level entry of DIR except the kernel and scratch
  directories (proc, dev, sys, tmp, run) is bound read-only.
- aliases: the names official clients send by default and names from user examples resolve
  through `ALIASES` unless an operator registered an image of that exact name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from tilde_server.sandbox import records
from tilde_server.store.db import Database

HOST = "host"
# Names clients send that map to another image when no image of that name is registered.
ALIASES: dict[str, str] = {
    "ubuntu": HOST,
    "ubuntu:22.04": HOST,
    "ubuntu:24.04": HOST,
    "debian": HOST,
    "python-312": HOST,
    "python-311": HOST,
    "python:3.12": HOST,
    "python:3.11": HOST,
    "python": HOST,
}
HOST_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc")
SKIP_IN_ROOTFS = {"proc", "dev", "sys", "tmp", "run", "lost+found"}


@dataclass(frozen=True)
class Image:
    name: str  # the resolved name
    root: str  # "/" for host


class ImageNotFound(Exception):
    pass


def resolve(db: Database, name: str) -> Image:
    """Registered images first, then the alias table, then the built-in `host`."""
    root = records.get_image(db, name)
    if root is not None:
        return Image(name, root)
    target = ALIASES.get(name, name)
    if target == HOST:
        return Image(HOST, "/")
    root = records.get_image(db, target)
    if root is not None:
        return Image(target, root)
    raise ImageNotFound(f"image {name!r} is not known to this server (registered images and "
                        f"aliases: see `tilde-server image list`)")


def bind_args(image: Image, skip_top: str) -> list[str]:
    """bwrap arguments that build the read-only system of `image`. `skip_top` is the first
    component of the repository mountpoint, which the image must not cover."""
    root = image.root
    names = HOST_DIRS if image.name == HOST else sorted(os.listdir(root))
    args: list[str] = []
    for name in names:
        if image.name != HOST and (name in SKIP_IN_ROOTFS or name == skip_top):
            continue
        if name == skip_top:
            continue
        src = os.path.join(root, name)
        if os.path.islink(src):
            args += ["--symlink", os.readlink(src), "/" + name]
        elif os.path.isdir(src):
            args += ["--ro-bind", src, "/" + name]
    return args


def check_root(path: str) -> str:
    """An image root must be an existing directory holding at least a shell."""
    real = os.path.realpath(path)
    if not os.path.isdir(real):
        raise ValueError(f"{path}: not a directory")
    if not any(os.path.lexists(os.path.join(real, sh)) for sh in ("bin/sh", "usr/bin/sh")):
        raise ValueError(f"{path}: no bin/sh inside; is this a root file system?")
    if os.geteuid() == 0:  # sandboxes run as an unprivileged uid that must reach the tree
        p = real
        while True:
            if not os.stat(p).st_mode & 0o001:
                raise ValueError(f"{path}: {p} is not searchable by other users (mode o+x "
                                 "missing), so sandboxes (uid 65534) could not use the image")
            if p == "/":
                break
            p = os.path.dirname(p)
    return real
