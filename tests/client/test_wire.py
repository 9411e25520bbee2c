"""The sans-I/O core: request builders, parsers, the error table (no network)."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tilde import _wire
from tilde.exceptions import APIError, NotFoundError, ServerError
from tilde.models import Entry, ListingEntry

R = "/organizations/o/repositories/r"


def test_base_url_and_split() -> None:
    assert _wire.base_url("http://localhost:8080/") == "http://localhost:8080/api/v1"
    assert _wire.base_url("https://tilde.run//") == "https://tilde.run/api/v1"
    assert _wire.split_repo_path("a/b/c") == ("a", "b/c")
    for bad in ("a", "/b", "a/", ""):
        with pytest.raises(ValueError):
            _wire.split_repo_path(bad)


def test_resolve_upload_url() -> None:
    base = "http://h:1/api/v1"
    assert _wire.resolve_upload_url(base, "/blob/x") == "http://h:1/api/v1/blob/x"
    assert _wire.resolve_upload_url(base, "blob/x") == "http://h:1/api/v1/blob/x"
    assert _wire.resolve_upload_url(base, "https://s3/x?sig=1") == "https://s3/x?sig=1"


def test_repository_builders() -> None:
    w = _wire.create_repository("o", "r")
    assert (w.method, w.path, w.json) == ("POST", "/organizations/o/repositories",
                                          {"name": "r", "visibility": "private"})
    w = _wire.create_repository("o", "r", description="d", visibility="public",
                                session_max_duration_days=3, retention_days=0)
    assert w.json == {"name": "r", "visibility": "public", "description": "d",
                      "session_max_duration_days": 3, "retention_days": 0}
    w = _wire.update_repository("o", "r", description="x", visibility=None)
    assert (w.method, w.path, w.json) == ("PUT", R, {"description": "x"})
    with pytest.raises(TypeError):
        _wire.update_repository("o", "r", name="x")
    w = _wire.list_repositories("o", after="k")
    assert w.params == (("amount", "100"), ("after", "k"))


def test_session_builders() -> None:
    w = _wire.create_session("o", "r")
    assert (w.method, w.path, w.json) == ("POST", f"{R}/sessions", None)
    assert _wire.commit_session("o", "r", "s1", "msg").json == {"message": "msg"}
    assert _wire.commit_session("o", "r", "s1", "m", {}).json == {"message": "m"}
    assert _wire.commit_session("o", "r", "s1", "m", {"a": "b"}).json == {
        "message": "m", "metadata": {"a": "b"}}
    assert _wire.rollback_session("o", "r", "s1").method == "DELETE"
    w = _wire.approval_poll("o", "r", "s1")
    assert (w.method, w.path) == ("HEAD", f"{R}/sessions/s1/approve")


def test_object_builders() -> None:
    w = _wire.list_objects("o", "r", session_id="s", prefix="p/", delimiter="/")
    assert w.params == (("session_id", "s"), ("prefix", "p/"), ("delimiter", "/"),
                        ("amount", "100"))
    w = _wire.get_object("o", "r", "a b", byte_range=(0, 1023))
    assert w.params == (("path", "a b"),)  # never presign: today's GET (0.7.7+)
    assert w.headers == (("Range", "bytes=0-1023"),)
    w = _wire.get_object("o", "r", "k", session_id="s", byte_range=(1024, None))
    assert w.params == (("path", "k"), ("session_id", "s")) and w.headers == (
        ("Range", "bytes=1024-"),)
    with pytest.raises(ValueError):
        _wire.get_object("o", "r", "k", byte_range=(5, 2))
    with pytest.raises(ValueError):
        _wire.head_object("o", "r", "k", session_id="s", ref="c1")
    assert _wire.head_object("o", "r", "k", ref="c1").params == (("path", "k"), ("ref", "c1"))
    w = _wire.finalize_object("o", "r", "k", session_id="s", physical_address="pa",
                              signature="sig", expires_at="2025-01-01T00:00:00Z")
    assert w.method == "PUT" and w.path == f"{R}/object/finalize"
    assert dict(w.params) == {"session_id": "s", "path": "k",
                              "expires_at": "2025-01-01T00:00:00Z"}
    assert w.json == {"physical_address": "pa", "signature": "sig",
                      "content_type": "application/octet-stream"}
    w = _wire.multipart_part_url("o", "r", token="t", part_number=2, upload_id="u")
    assert w.params == (("token", "t"), ("part_number", "2"), ("upload_id", "u"))
    w = _wire.complete_multipart("o", "r", "k", session_id="s", token="t", upload_id="u",
                                 physical_address="pa", parts=[(1, '"e1"')], total_size=5)
    assert w.json["parts"] == [{"part_number": 1, "etag": '"e1"'}]
    assert w.json["total_size"] == 5 and w.json["content_type"] == "application/octet-stream"
    w = _wire.copy_object("o", "r", "a", "b", session_id="s")
    assert dict(w.params) == {"session_id": "s", "source_path": "a", "destination_path": "b"}
    w = _wire.delete_objects("o", "r", ("a", "b"), session_id="s")
    assert (w.path, w.json) == (f"{R}/objects/delete", {"paths": ["a", "b"]})
    w = _wire.list_changes("o", "r", session_id="s", amount=5)
    assert w.params == (("session_id", "s"), ("amount", "5"))


def test_commit_builders() -> None:
    assert _wire.log("o", "r").params == (("amount", "100"),)
    assert _wire.revert_commit("o", "r", "c").json == {}
    assert _wire.revert_commit("o", "r", "c", metadata={}).json == {"metadata": {}}
    w = _wire.diff("o", "r", left="", right="c2")
    assert w.params == (("left", ""), ("right", "c2"), ("amount", "100"))


def test_query_encoding_by_httpx() -> None:
    w = _wire.get_object("o", "r", "a+b/c d&e")
    url = httpx.Request("GET", "http://h/api/v1" + w.path, params=list(w.params)).url
    assert "path=a%2Bb%2Fc" in str(url) and "%26e" in str(url)


def test_parse_page_and_cursor() -> None:
    page = _wire.parse_page({"results": [{"path": "a", "type": "object"}],
                             "pagination": {"has_more": True, "next_offset": "a"}},
                            _wire.parse_listing_entry)
    assert page.items == [ListingEntry(path="a", type="object")]
    assert page.next_after == "a"
    assert _wire.parse_page({}, _wire.parse_listing_entry).next_after is None
    assert _wire.parse_page({"results": [], "pagination": {"has_more": True,
                                                           "next_offset": "x"}},
                            _wire.parse_listing_entry).next_after is None


def test_parse_entries() -> None:
    le = _wire.parse_listing_entry({
        "path": "d/f", "type": "object", "status": "added",
        "entry": {"address": "a", "last_modified": "2025-01-31T12:00:00.123456789+00:00",
                  "size": 3, "e_tag": "e", "metadata": {}, "content_type": "t",
                  "source_metadata": {"connector_id": "c", "import_time": None}}})
    assert le.status == "added" and le.entry is not None
    assert le.entry.last_modified == datetime(2025, 1, 31, 12, 0, 0, 123456,
                                              tzinfo=UTC)
    assert le.entry.source_metadata is not None
    assert le.entry.source_metadata.connector_id == "c"
    prefix = _wire.parse_listing_entry({"path": "d/", "type": "prefix", "entry": None})
    assert prefix.entry is None and prefix.status is None
    rec = _wire.parse_entry_record({"path": "gone"})
    assert rec.entry is None
    ts = _wire.parse_timestamp("2025-01-31T12:00:00+02:00")
    assert ts is not None and ts.utcoffset() == timedelta(hours=2)
    with pytest.raises(TypeError):
        _wire.parse_timestamp(1700000000)


def test_value_repr_omits_defaults() -> None:
    assert repr(Entry()) == "Entry()"
    assert repr(Entry(size=3, metadata={"a": "b"})) == "Entry(size=3, metadata={'a': 'b'})"
    assert repr(ListingEntry(path="p", type="prefix")) == "ListingEntry(path='p', type='prefix')"
    assert not hasattr(Entry(), "__dict__")


def test_parse_commit_and_repository() -> None:
    c = _wire.parse_commit({"id": "c1", "parents": ["p"], "metadata": {"k": "v"},
                            "creation_date": "2025-01-31T12:00:00Z", "is_stale": False})
    assert (c.id, c.parents, c.metadata) == ("c1", ("p",), {"k": "v"})
    r = _wire.parse_repository({"name": "r", "retention_days": None, "description": None})
    assert r.name == "r" and r.description is None and r.visibility == ""
    assert _wire.parse_commit_id({"commit_id": "x"}) == "x"
    assert _wire.parse_commit_id({}) == ""


def test_object_metadata_headers() -> None:
    h = httpx.Headers({"etag": '"abc"', "content-type": "application/octet-stream",
                       "content-length": "12", "x-tilde-reproducible": "true",
                       "content-range": "bytes 0-11/40"})
    m = _wire.parse_object_metadata(h)
    assert (m.etag, m.content_length, m.reproducible) == ('"abc"', 12, True)
    assert _wire.content_range(h) == "bytes 0-11/40"
    m = _wire.parse_object_metadata({"X-Tilde-Reproducible": "yes"})
    assert m.reproducible is None and m.content_length is None
    assert _wire.parse_object_metadata({"x-tilde-reproducible": "false"}).reproducible is False


def test_part_location() -> None:
    assert _wire.part_location(307, {"Location": "http://x"}) == "http://x"
    assert _wire.part_location(303, {"Location": "http://x"}) is None
    assert _wire.part_location(200, {}) is None


def test_error_for_response() -> None:
    err = _wire.error_for_response(
        404, method="GET", url="http://h/x",
        body=b'{"message": "no such object", "code": "not_found", "request_id": "r-1"}')
    assert isinstance(err, NotFoundError)
    assert (err.message, err.code, err.request_id) == ("no such object", "not_found", "r-1")
    assert str(err) == "GET http://h/x -> 404: no such object"
    long = b"x" * 1000
    err = _wire.error_for_response(502, method="POST", url="u", body=long)
    assert isinstance(err, ServerError)
    assert err.message == "x" * 200 and err.response_text == "x" * 500
    err = _wire.error_for_response(404, method="HEAD", url="u", body=b"")
    assert err.message == "" and err.response_text == ""
    err = _wire.error_for_response(302, method="GET", url="u", body=b'{"code": "c"}')
    assert type(err) is APIError and err.message == "" and err.code == "c"
    err = _wire.error_for_response(400, method="GET", url="u", body=b'["list"]')
    assert err.message == '["list"]'
