"""`tilde://ORG/REPO[@REF]/PATH` parsing (_wire/urls.py), shared by tilde:// and the CLI."""

from __future__ import annotations

import pytest

from tilde import _wire


@pytest.mark.parametrize(("text", "org", "repo", "ref", "path"), [
    ("tilde://acme/lake/t.parquet", "acme", "lake", None, "t.parquet"),
    ("tilde://acme/lake@3fa9/dir/sub/x.csv", "acme", "lake", "3fa9", "dir/sub/x.csv"),
    ("tilde://acme/lake", "acme", "lake", None, ""),
    ("tilde://acme/lake/", "acme", "lake", None, ""),
    ("tilde://acme/lake/dir/", "acme", "lake", None, "dir"),
    ("acme/lake@c0ffee", "acme", "lake", "c0ffee", ""),  # fsspec strips the scheme itself
    ("tilde://acme/lake/a@b.txt", "acme", "lake", None, "a@b.txt"),  # '@' in a key is a key
])
def test_parse(text: str, org: str, repo: str, ref: str | None, path: str) -> None:
    url = _wire.parse_url(text)
    assert (url.org, url.repo, url.ref, url.path) == (org, repo, ref, path)
    assert _wire.parse_url(str(url)) == url
    assert url.repo_path == f"{org}/{repo}"


@pytest.mark.parametrize("text", ["tilde://", "tilde://acme", "tilde://acme/", "tilde:///lake",
                                  "tilde://acme/lake@/x", "tilde://acme/@abc/x"])
def test_refused(text: str) -> None:
    with pytest.raises(ValueError, match="tilde"):
        _wire.parse_url(text)


def test_helpers() -> None:
    assert _wire.is_tilde_url("tilde://a/b") and not _wire.is_tilde_url("/tmp/a")
    assert _wire.strip_scheme("tilde://a/b/c") == "a/b/c" == _wire.strip_scheme("a/b/c")
    assert str(_wire.parse_url("a/b").with_path("/x/y/")) == "tilde://a/b/x/y"
