"""Mount options: the one frozen configuration the CLI hands to the daemon.

The CLI, ``-o`` (fstab style) and the systemd unit all end up here, so option names, size
parsing and validation live in one place. Subtleties:

1. ``-o`` values are defaults; a long option given explicitly on the command line wins.
2. Generic mount(8) words (``defaults``, ``rw``, ``_netdev``, ``nofail``, ``x-systemd.*`` ...)
   are accepted and ignored, so an fstab line can carry them.
3. The API key never appears in ``repr`` or in the JSON handed to a background daemon;
   it travels in the ``TILDE_API_KEY`` environment variable instead.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

ON_UNMOUNT_CHOICES = ("commit", "rollback", "keep")
DEFAULT_CACHE_SIZE = 10 * 1024**3
DEFAULT_UNMOUNT_MESSAGE = "tilde-mount: changes made through the mount"

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)

# mount(8) / fstab words that mean nothing to tilde-mount but must not be rejected.
_IGNORED_WORDS = frozenset({
    "defaults", "rw", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail",
    "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "atime", "noatime",
    "relatime", "nodiratime", "default_permissions",
})


class OptionError(ValueError):
    """A malformed option; its text is shown to the user as one line."""


def parse_size(text: str) -> int:
    """Parse ``10G``, ``512M``, ``1.5GiB`` or a plain byte count (binary units)."""
    m = _SIZE_RE.match(text)
    if not m:
        raise OptionError(f"invalid size {text!r} (expected e.g. 512M, 10G or a byte count)")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    return int(value)


def format_size(n: int | float) -> str:
    """Human size for status output (binary units)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def default_cache_dir() -> str:
    """Per-user cache root: $XDG_CACHE_HOME/tilde-mount or ~/.cache/tilde-mount."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tilde-mount")


def default_log_dir() -> str:
    """Where a background daemon logs when --log-file is not given."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "tilde-mount")


@dataclass(frozen=True)
class MountConfig:
    """Everything the daemon needs, resolved and validated by the CLI."""

    repo_path: str
    org: str
    repo: str
    mountpoint: str
    endpoint: str
    api_key: str | None = field(default=None, repr=False)
    session_id: str | None = None
    read_only: bool = False
    commit_id: str | None = None
    cache_dir: str | None = None
    cache_size: int = DEFAULT_CACHE_SIZE
    on_unmount: str = "commit"
    message: str | None = None
    allow_other: bool = False
    uid: int | None = None
    gid: int | None = None
    log_file: str | None = None
    pid_file: str | None = None
    debug: bool = False
    #: close(2) waits for the upload (``--durable-close``)
    durable_close: bool = False

    @property
    def writable(self) -> bool:
        """A session mount; --read-only and --commit mount without a session."""
        return not self.read_only and self.commit_id is None

    @property
    def unmount_message(self) -> str:
        return self.message or DEFAULT_UNMOUNT_MESSAGE

    def to_json(self) -> str:
        """Serialize for a background daemon, without the API key."""
        d = asdict(self)
        d.pop("api_key", None)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str, api_key: str | None) -> MountConfig:
        d = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known}, api_key=api_key)

    def with_(self, **changes: Any) -> MountConfig:
        return replace(self, **changes)


# -o key -> (MountConfig-level option name, kind). Dashes and underscores are both accepted.
_O_KEYS: dict[str, tuple[str, str]] = {
    "ro": ("read_only", "flag"),
    "read_only": ("read_only", "flag"),
    "allow_other": ("allow_other", "flag"),
    "debug": ("debug", "flag"),
    "durable_close": ("durable_close", "flag"),
    "foreground": ("foreground", "flag"),
    "uid": ("uid", "int"),
    "gid": ("gid", "int"),
    "endpoint": ("endpoint", "str"),
    "api_key": ("api_key", "str"),
    "session": ("session", "str"),
    "commit": ("commit", "str"),
    "cache_dir": ("cache_dir", "str"),
    "cache_size": ("cache_size", "str"),
    "on_unmount": ("on_unmount", "str"),
    "message": ("message", "str"),
    "log_file": ("log_file", "str"),
    "pid_file": ("pid_file", "str"),
}


def parse_o_options(values: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Turn ``-o ro,uid=1000,cache_size=1G`` (possibly repeated) into option values.

    Keys are the names of the CLI's long options (``read_only``, ``cache_size`` ...).
    """
    out: dict[str, Any] = {}
    for value in values:
        for raw in value.split(","):
            word = raw.strip()
            if not word:
                continue
            key, sep, val = word.partition("=")
            key = key.strip().replace("-", "_")
            if (not sep and key in _IGNORED_WORDS) or key.startswith("x_"):
                continue
            if key == "rw" and not sep:
                out["read_only"] = False
                continue
            spec = _O_KEYS.get(key)
            if spec is None:
                raise OptionError(f"unknown -o option {key!r}")
            name, kind = spec
            if kind == "flag":
                if sep and val.lower() not in ("1", "true", "yes", "0", "false", "no"):
                    raise OptionError(f"-o {key} takes no value")
                out[name] = not sep or val.lower() in ("1", "true", "yes")
            elif not sep or val == "":
                raise OptionError(f"-o {key} needs a value ({key}=...)")
            elif kind == "int":
                try:
                    out[name] = int(val)
                except ValueError:
                    raise OptionError(f"-o {key}={val}: not a number") from None
            else:
                out[name] = val
    if "on_unmount" in out and out["on_unmount"] not in ON_UNMOUNT_CHOICES:
        raise OptionError(
            f"-o on_unmount={out['on_unmount']}: expected one of {', '.join(ON_UNMOUNT_CHOICES)}")
    return out
