"""Which wire dialect the server speaks and how it serves object bytes (`tilde-server run
--wire/--downloads/...`), and reading the official client's version from its User-Agent.

Subtleties:
1. `all` (the default) serves every official release 0.7.2-0.7.9 at once
   (spec/tilde-api-changes.md section 4): both single-upload flows, both multipart dialects
   routed by query and body keys, both aborts. `current` answers like today's hosted service
   (openapi-current.yaml): the removed routes are 405, tilde-server's own batch extension is
   404. `legacy` answers like the 0.7.4-era service (openapi.yaml): the 0.7.7 routes are 405.
2. The User-Agent is consulted in two places only: the sandbox status vocabulary (always),
   and, with `--downloads redirect`, whether a GET without `presign` may be redirected (a
   0.7.2-0.7.6 caller with presign=False cannot follow one). Anything that is not
   `tilde-python-sdk/X.Y.Z` at the start of the header counts as "unknown" (None).
3. Signed URLs (uploads, parts, downloads) are built on `signed_url_base` when it is set,
   else on the request's own base URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

WIRES = ("all", "current", "legacy")
DOWNLOADS = ("stream", "redirect")
DEFAULT_DOWNLOAD_URL_TTL = 900

_UA = re.compile(r"^tilde-python-sdk/(\d+)\.(\d+)\.(\d+)(?:[\s;/(]|$)")


@dataclass(frozen=True)
class WireOptions:
    wire: str = "all"
    downloads: str = "stream"
    download_url_ttl: int = DEFAULT_DOWNLOAD_URL_TTL
    signed_url_base: str | None = None

    def __post_init__(self) -> None:
        if self.wire not in WIRES:
            raise ValueError(f"wire must be one of {', '.join(WIRES)}")
        if self.downloads not in DOWNLOADS:
            raise ValueError(f"downloads must be one of {', '.join(DOWNLOADS)}")
        if self.download_url_ttl < 1:
            raise ValueError("download_url_ttl must be at least 1 second")
        if self.signed_url_base is not None:
            object.__setattr__(self, "signed_url_base", check_base_url(self.signed_url_base))

    @property
    def serves_legacy(self) -> bool:
        return self.wire != "current"

    @property
    def serves_current(self) -> bool:
        return self.wire != "legacy"


def check_base_url(url: str) -> str:
    """`http(s)://host[:port][/prefix]` without query or fragment; returned without a
    trailing slash. ValueError otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
            or parts.fragment:
        raise ValueError(f"{url!r} is not an http(s)://host[:port][/prefix] URL")
    return url.rstrip("/")


def sdk_version(user_agent: str) -> tuple[int, int, int] | None:
    """The official client's version from its User-Agent, None for any other agent."""
    m = _UA.match(user_agent)
    if m is None:
        return None
    major, minor, patch = (int(x) for x in m.groups())
    return major, minor, patch
