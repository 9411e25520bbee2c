"""``tilde://ORG/REPO[@REF]/PATH`` URLs, shared by the fsspec filesystem and the command line.

REF is a commit id, full or a unique prefix; without it a URL means the repository's latest
commit (or, for writes, the session being written). PATH is an object key or a key prefix
("directory"); "" is the repository's root. Parsing is pure string work: whether REF names a
commit is the server's answer, resolved by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEME = "tilde"
PREFIX = SCHEME + "://"


@dataclass(frozen=True)
class TildeURL:
    org: str
    repo: str
    ref: str | None
    path: str

    @property
    def repo_path(self) -> str:
        """``org/repo``, as the client's ``client.repository(...)`` takes it."""
        return f"{self.org}/{self.repo}"

    def with_path(self, path: str) -> TildeURL:
        return TildeURL(self.org, self.repo, self.ref, path.strip("/"))

    def __str__(self) -> str:
        ref = f"@{self.ref}" if self.ref else ""
        tail = f"/{self.path}" if self.path else ""
        return f"{PREFIX}{self.org}/{self.repo}{ref}{tail}"


def is_tilde_url(text: str) -> bool:
    return text.startswith(PREFIX)


def strip_scheme(text: str) -> str:
    """``ORG/REPO[@REF]/PATH`` whether or not ``tilde://`` was written (fsspec passes both)."""
    return text[len(PREFIX):] if text.startswith(PREFIX) else text


def parse_url(text: str) -> TildeURL:
    """Split a ``tilde://`` URL (the scheme may be left out). ValueError on anything that
    does not name an organization and a repository, or has an empty ``@``."""
    rest = strip_scheme(text).lstrip("/")
    org, _, rest = rest.partition("/")
    repo_ref, _, path = rest.partition("/")
    repo, at, ref = repo_ref.partition("@")
    if not org or not repo:
        raise ValueError(f"a tilde URL looks like tilde://ORG/REPO[@REF]/PATH, got {text!r}")
    if at and not ref:
        raise ValueError(f"empty reference after '@' in {text!r}")
    return TildeURL(org, repo, ref or None, path.strip("/"))
