"""Input validation shared by the store: names, object keys, strings that SQLite must hold.

Everything here raises BadRequest, so bad input becomes a 400 before any state changes.
"""

from __future__ import annotations

import re
from typing import Any

from tilde import _wire
from tilde_server.store.errors import BadRequest

ORG_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
REPO_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_KEY_BYTES = _wire.MAX_KEY_BYTES
MAX_METADATA_ITEMS = 100


def text(value: str, what: str) -> str:
    """Reject strings that cannot be stored as UTF-8 (lone surrogates from bad percent-escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} is not valid UTF-8", "invalid_input") from None
    if "\x00" in value:
        raise BadRequest(f"{what} contains NUL", "invalid_input")
    return value


def listing_args(prefix: str, after: str | None, delimiter: str | None = None) -> str | None:
    """Check a listing's `prefix`, `after` and `delimiter`; the delimiter to use (None for
    none: an empty one is none)."""
    text(prefix, "prefix")
    if after is not None:
        text(after, "after")
    if delimiter is not None:
        text(delimiter, "delimiter")
    return delimiter or None


def org_name(name: str) -> str:
    if not ORG_NAME_RE.match(name):
        raise BadRequest(
            "invalid organization name: use 2-63 of a-z, 0-9 and '-', "
            "starting with a letter or digit",
            "invalid_name",
        )
    return name


def repo_name(name: str) -> str:
    if not REPO_NAME_RE.match(name) or name in (".", ".."):
        raise BadRequest(
            "invalid repository name: use 1-100 of A-Z, a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit",
            "invalid_name",
        )
    return name


def object_key(key: str, what: str = "path") -> str:
    """Object keys: non-empty, UTF-8, no NUL, no leading '/', no '.' or '..' component.

    Empty components (`a//b`, `dir/`) are allowed, as in S3; the mount skips what it cannot show.
    """
    if not key:
        raise BadRequest(f"{what} must not be empty", "invalid_path")
    text(key, what)
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadRequest(f"{what} is longer than {MAX_KEY_BYTES} bytes", "invalid_path")
    if key.startswith("/"):
        raise BadRequest(f"{what} must not start with '/'", "invalid_path")
    if any(part in (".", "..") for part in key.split("/")):
        raise BadRequest(f"{what} must not contain '.' or '..' components", "invalid_path")
    return key


def metadata(value: Any, what: str = "metadata") -> dict[str, str]:
    """A JSON object of string to string (None means empty)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_METADATA_ITEMS:
        raise BadRequest(f"{what} must be an object of strings", "invalid_input")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise BadRequest(f"{what} must be an object of strings", "invalid_input")
        out[text(k, what)] = text(v, what)
    return out


def content_type(value: str) -> str:
    """A content type must be safe to send back as a header: printable ASCII, bounded."""
    if len(value) > 255 or any(not (0x20 <= ord(ch) < 0x7F) for ch in value):
        raise BadRequest("content_type must be printable ASCII (at most 255 chars)",
                         "invalid_input")
    return value
