"""Hostile object keys against every key-taking route of a real server.

Keys may hold any UTF-8 text of at most 1024 bytes except NUL, a leading '/' and '.'/'..'
components (docs/api.md "Object keys"; the spec restricts nothing more). So the corpus has two
halves:

- REFUSED: traversal, absolute paths, NUL, invalid UTF-8 (overlong sequences, encoded
  surrogates, stray continuation bytes, 5-byte forms), over-long keys, empty keys, and the
  same again percent-encoded differently. Every key-taking route must answer 4xx (never 5xx),
  stage nothing, and write nothing outside the data directory.
- KEPT: keys the spec allows although they look hostile (backslashes and drive letters,
  literal `%2F`, control characters, CR LF header injection, RTL override, confusables, NFC and
  NFD twins, empty components, exactly 1024 bytes). They must be stored byte for byte, come
  back under the same name, inject no response header and create no file named after them.
"""

from __future__ import annotations

import json
import random
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes, urlencode, urlsplit

import pytest
from secutil import Answer, Raw, root, tree

from figures import record, scale

pytestmark = pytest.mark.timeout(240)

MARK = "tsec" + secrets.token_hex(4)  # names files a traversal would create: searched for


@dataclass(frozen=True)
class Key:
    name: str
    raw: bytes                    # the key after one percent-decoding
    query: str | None = None      # how it is sent in a query, when not quote_from_bytes(raw)
    json_text: str | None = None  # how it is written in JSON when raw is not UTF-8

    def q(self) -> str:
        return self.query if self.query is not None else quote_from_bytes(self.raw, safe="")

    def j(self) -> bytes:
        """The key as a JSON string (invalid UTF-8 goes raw: the body is then not JSON)."""
        if self.json_text is not None:
            return self.json_text.encode()
        try:
            return json.dumps(self.raw.decode("utf-8")).encode()
        except UnicodeDecodeError:
            return b'"' + self.raw + b'"'


def _k(name: str, text: str, **kw: Any) -> Key:
    return Key(name, text.encode("utf-8"), **kw)


ESC = f"../../../../../../tmp/{MARK}-escape"
REFUSED: list[Key] = [
    _k("dotdot", ".."), _k("dot", "."), _k("dotdot-slash", "../"), _k("dotdot-x", "../x"),
    _k("deep-traversal", ESC), _k("etc-passwd", "../../../../etc/passwd"),
    _k("mid-dotdot", "a/../b"), _k("trailing-dotdot", "a/.."), _k("dot-x", "./a"),
    _k("mid-dot", "a/./b"), _k("trailing-dot", "a/."), _k("dotdot-chain", "a/b/../../.."),
    _k("slash-dotdot", "/.."), _k("absolute", f"/tmp/{MARK}-abs"), _k("root", "/"),
    _k("double-root", f"//{MARK}"), _k("etc-abs", "/etc/passwd"), _k("empty", ""),
    _k("nul", "a\x00b"), _k("only-nul", "\x00"), _k("nul-traversal", "a/\x00/../b"),
    _k("dotdot-nul", "..\x00"), _k("nul-ext", f"{MARK}.txt\x00.png"),
    _k("1025-bytes", "x" * 1025), _k("1025-with-dir", "a/" + "b" * 1023),
    _k("multibyte-over", "\u20ac" * 342), _k("4k", "y" * 4096),
    Key("invalid-ff", b"\xff"), Key("overlong-slash", b"a\xc0\xafb"),
    Key("overlong-dotdot", b"\xc0\xae\xc0\xae/x"), Key("overlong-3byte", b"\xe0\x80\xafx"),
    Key("overlong-4byte", b"\xf0\x80\x80\xafx"),
    Key("surrogate-high", b"\xed\xa0\x80x", json_text='"\\ud800x"'),
    Key("surrogate-low", b"\xed\xbf\xbfx", json_text='"x\\udfff"'),
    Key("continuation", b"a\x80b"), Key("truncated", b"\xe2\x82"),
    Key("five-byte", b"\xf8\x88\x80\x80\x80"), Key("beyond-10ffff", b"\xf4\x90\x80\x80"),
    Key("fe-ff", b"\xfe\xff"),
    Key("encoded-dots", b"../x", query="%2E%2E%2Fx"),
    Key("lower-encoded", b"../../etc", query="%2e%2e%2f%2e%2e%2fetc"),
    Key("mixed-encoded", b"./x", query=".%2Fx"), Key("encoded-abs", b"/x", query="%2Fx"),
    Key("encoded-nul", b"a\x00", query="a%00"),
]
KEPT: list[str] = [
    "..\\x", "..\\..\\..\\windows\\win.ini", "C:\\Windows\\system32\\x", "C:/x", "c:",
    "\\\\server\\share\\x", "a\\..\\b", "..%2Fetc%2Fpasswd", "%252e%252e%252fx", "%00",
    "a//b", f"{MARK}-dir/", "a///", "tab\tname", "new\nline", "cr\r\nSet-Cookie: tsec=1",
    "esc\x1b[31mred", "del\x7f", "bell\x07", "\u202egnp.exe", "..\u2215x", "\uff0e\uff0e\uff0fx",
    "\ufeffbom", "zero\u200dwidth", "caf\u00e9", "cafe\u0301", ".hidden", "...", "a/.../b",
    ".. ", " ..", "~/x", "$HOME/x", "*?[]", "#frag", "&x=y+z", "k" * 1024,
    "\u20ac" * 341 + "x",
]


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[Any]:
    h = root.start_server(tmp_path)
    try:
        yield h
    finally:
        root.stop_server(h)
    log = h.log()
    assert "Traceback" not in log, log[-6000:]


class Repo:
    def __init__(self, h: Any) -> None:
        self.http = Raw(h.endpoint, h.api_key)
        ref = root.new_repo(h)
        self.R = f"/api/v1/organizations/{ref.org}/repositories/{ref.repo}"

    def call(self, method: str, route: str, params: dict[str, str] | str = "",
             body: bytes | None = None, raw_route: bool = False) -> Answer:
        qs = params if isinstance(params, str) else urlencode(params)
        target = (route if raw_route else self.R + route) + ("?" + qs if qs else "")
        return self.http.request(method, target, body)

    def ok(self, method: str, route: str, params: dict[str, str] | str = "",
           body: bytes | None = None) -> Any:
        a = self.call(method, route, params, body)
        assert a.status in (200, 201, 202, 204), (method, route, a.status, a.body[:500])
        return a.json() if a.body else None

    def session(self) -> str:
        return str(self.ok("POST", "/sessions")["session_id"])

    def batch(self, sid: str, files: dict[str, bytes]) -> None:
        manifest = {"objects": [{"path": p, "size": len(d)} for p, d in files.items()]}
        body = json.dumps(manifest).encode() + b"\n" + b"".join(files.values())
        self.ok("POST", "/objects/upload", {"session_id": sid}, body)

    def changes(self, sid: str) -> list[Any]:
        return list(self.ok("GET", "/changes", {"session_id": sid, "amount": "1000"})["results"])

    def listing(self, **params: str) -> list[str]:
        res = self.ok("GET", "/objects", {"amount": "1000", **params})["results"]
        return [r["path"] for r in res]


def _routes(r: Repo, sid: str) -> list[tuple[str, Any]]:
    """(route name, send(key) -> Answer) for every place a key goes; material for the
    signed and token routes comes from real uploads of a valid key, so only the key differs."""
    st = r.ok("POST", "/object/stage", {"session_id": sid, "path": "ok.txt"})
    put = r.ok("PUT", "/object", {"session_id": sid, "path": "ok2.txt"})
    mp = r.ok("POST", "/object/multipart", {"session_id": sid, "path": "ok-mp.bin"})
    S = "session_id=" + quote(sid)

    def q(route: str, method: str, extra: str = "", body: bytes | None = None,
          key_name: str = "path") -> Any:
        return lambda k: r.call(method, route, f"{S}&{key_name}={k.q()}{extra}", body)

    fin_body = json.dumps({"physical_address": st["physical_address"],
                           "signature": st["signature"]}).encode()
    tok_body = json.dumps({"upload_token": put["upload_token"]}).encode()
    cmp_body = json.dumps({"upload_id": mp["upload_id"], "upload_token": mp["upload_token"],
                           "parts": []}).encode()
    abort_body = json.dumps({"token": mp["token"], "upload_id": mp["upload_id"],
                             "physical_address": mp["physical_address"]}).encode()
    upload = urlencode({"address": st["physical_address"], "expires_at": st["expires_at"],
                        "signature": st["signature"]})
    up = "/_tilde/upload"
    return [
        ("PUT object", q("/object", "PUT")),
        ("POST stage", q("/object/stage", "POST")),
        ("PUT finalize", q("/object/finalize", "PUT",
                           "&expires_at=" + quote(st["expires_at"]), fin_body)),
        ("POST finalize", q("/object/finalize", "POST", "", tok_body)),
        ("POST multipart", q("/object/multipart", "POST")),
        ("GET part", q("/object/multipart/part", "GET",
                       f"&upload_id={mp['upload_id']}&part_number=1")),
        ("POST complete", q("/object/multipart/complete", "POST", "", cmp_body)),
        ("POST abort", q("/object/multipart/abort", "POST", "", abort_body)),
        ("DELETE multipart", q("/object/multipart", "DELETE", f"&upload_id={mp['upload_id']}")),
        ("GET object", lambda k: r.call("GET", "/object", "path=" + k.q())),
        ("HEAD object", lambda k: r.call("HEAD", "/object", "path=" + k.q())),
        ("GET object in session", q("/object", "GET")),
        ("DELETE object", q("/object", "DELETE")),
        ("delete_many", lambda k: r.call("POST", "/objects/delete", S,
                                         b'{"paths": [' + k.j() + b"]}")),
        ("copy source", q("/object/copy", "POST", "&destination_path=copied.txt",
                          key_name="source_path")),
        ("copy destination", q("/object/copy", "POST", "&source_path=seed.txt",
                               key_name="destination_path")),
        ("batch upload", lambda k: r.call("POST", "/objects/upload", S,
                                          b'{"objects": [{"path": ' + k.j()
                                          + b', "size": 1}]}\nx')),
        ("signed upload URL", lambda k: r.http.request(
            "PUT", f"{up}?{S}&path={k.q()}&{upload}", b"x", key=None)),
    ]


def _lenient(r: Repo, sid: str) -> list[tuple[str, Any]]:
    """Routes taking a prefix or cursor, not a key: a string no key can start with may list
    nothing (200, empty); text that is not UTF-8 or holds NUL is a 400."""
    return [
        ("list prefix", lambda k: r.call("GET", "/objects", f"session_id={sid}&prefix={k.q()}")),
        ("list after", lambda k: r.call("GET", "/objects",
                                        f"session_id={sid}&after={k.q()}&prefix=zzz")),
        ("diff prefix", lambda k: r.call("GET", "/diff", f"left=&right=main&prefix={k.q()}")),
    ]


def test_hostile_keys_are_refused_by_every_key_route(srv: Any, tmp_path: Path) -> None:
    r = Repo(srv)
    seed = r.session()
    r.batch(seed, {"seed.txt": b"seed"})
    r.ok("POST", f"/sessions/{seed}", body=b'{"message": "seed"}')
    sid = r.session()
    routes = _routes(r, sid)
    lenient = _lenient(r, sid)
    src = root.new_repo(srv)
    before_changes, before_list = r.changes(sid), r.listing()
    before_log = r.ok("GET", "/log")["results"]
    outside_before = {p: m for p, m in tree(tmp_path).items() if "/data/" not in p + "/"}
    requests0 = r.http.count
    bad: list[str] = []
    refused = 0
    for k in REFUSED:
        for name, send in routes:
            a = send(k)
            if 400 <= a.status < 500:
                refused += 1
            else:
                bad.append(f"{name} {k.name}: {a.status} {a.body[:200]!r}")
        for name, send in lenient if k.raw else []:  # an empty prefix lists everything
            a = send(k)
            if 400 <= a.status < 500:
                refused += 1
            elif a.status != 200 or a.json()["results"]:
                bad.append(f"{name} {k.name}: {a.status} {a.body[:200]!r}")
        if k.name in ("absolute", "root", "double-root", "etc-abs", "empty", "encoded-abs",
                      "slash-dotdot"):
            continue  # a leading '/' in an import destination means the root (spec 2.16)
        body = (b'{"source_organization": "' + src.org.encode() + b'", "source_repository": "'
                + src.repo.encode() + b'", "destination_path": ' + k.j() + b"}")
        a = r.call("POST", "/import", body=body)
        if 400 <= a.status < 500:
            refused += 1
        else:
            bad.append(f"import destination {k.name}: {a.status} {a.body[:200]!r}")
    sent = r.http.count - requests0
    assert not bad, f"{len(bad)} of {sent} requests not refused:\n" + "\n".join(bad[:40])
    assert r.changes(sid) == before_changes
    assert r.listing() == before_list == ["seed.txt"]
    assert r.ok("GET", "/log")["results"] == before_log
    outside_after = {p: m for p, m in tree(tmp_path).items() if "/data/" not in p + "/"}
    new = sorted(set(outside_after) - set(outside_before))
    new = [p for p in new if not p.endswith("server.log")]
    escaped = [str(d) for d in (Path("/tmp"), Path("/etc"), srv.data_dir.parent, Path("/"))
               if any(n.startswith(MARK) for n in _names(d))]
    in_data = [p for p in tree(srv.data_dir) if MARK in p]
    assert not new and not escaped and not in_data, (new, escaped, in_data)
    route_names = {n for n, _ in routes + lenient} | {"import destination"}
    record("security", hostile_keys=len(REFUSED), key_routes=len(route_names),
           requests=sent, refused_4xx=refused, server_errors=0, files_outside=0)


def _names(d: Path) -> list[str]:
    try:
        return [e.name for e in d.iterdir()]
    except OSError:
        return []


def test_keys_the_spec_allows_are_kept_byte_for_byte(srv: Any, tmp_path: Path) -> None:
    r = Repo(srv)
    sid = r.session()
    files = {k: f"content of {k!r}".encode() for k in KEPT}
    assert unicodedata.normalize("NFC", "cafe\u0301") in files  # NFC and NFD twins both kept
    r.batch(sid, dict(list(files.items())[: len(files) // 2]))
    for k, data in list(files.items())[len(files) // 2:]:  # and through PUT + finalize
        put = r.ok("PUT", "/object", {"session_id": sid, "path": k})
        u = urlsplit(put["upload_url"])
        assert r.http.request("PUT", f"{u.path}?{u.query}", data, key=None).status == 200
        r.ok("POST", "/object/finalize", {"session_id": sid, "path": k},
             json.dumps({"upload_token": put["upload_token"]}).encode())
    assert sorted(r.listing(session_id=sid)) == sorted(files)
    r.ok("POST", f"/sessions/{sid}", body=b'{"message": "kept"}')
    assert sorted(r.listing()) == sorted(files)
    for k, data in files.items():
        a = r.call("GET", "/object", {"path": k})
        assert a.status == 200 and a.body == data, (k, a.status)
        assert not any(h.lower() == "set-cookie" for h, _ in a.headers), (k, a.headers)
    assert not any(n.startswith(MARK) for n in _names(Path("/tmp")))
    assert not [p for p in tree(tmp_path) if MARK in p or "win.ini" in p or "passwd" in p]
    record("security", hostile_keys=len(KEPT), stored_faithfully=len(KEPT))


def _valid(raw: bytes) -> bool:
    """The key rules of docs/api.md, written again independently of the server's code."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return (0 < len(raw) <= 1024 and "\x00" not in text and not text.startswith("/")
            and all(part not in (".", "..") for part in text.split("/")))


def test_random_keys_follow_the_key_rules(srv: Any) -> None:
    """Seeded random keys built from hostile fragments: PUT .../object answers 200 exactly
    for the keys the rules allow, 400 for the others (CI: 150, TILDE_RELIABILITY=full: 3000)."""
    rng = random.Random(1107)
    fragments = [b"/", b".", b"..", b"a", b"\\", b"\x00", b"\xff", b"\xc0\xaf", b"%2F",
                 b"\xed\xa0\x80", b"\xe2\x80\xae", b"\n", b" ", b"\xc3\xa9", b"x" * 300]
    r = Repo(srv)
    sid = r.session()
    mismatched = []
    n = scale(150, 3000)
    for _ in range(n):
        raw = b"".join(rng.choice(fragments) for _ in range(rng.randint(0, 8)))
        a = r.call("PUT", "/object", f"session_id={sid}&path={quote_from_bytes(raw, safe='')}")
        if a.status != (200 if _valid(raw) else 400):
            mismatched.append(f"{raw!r}: {a.status} {a.body[:120]!r}")
    assert not mismatched, "\n".join(mismatched[:20])
    assert r.changes(sid) == []  # upload URLs alone stage nothing
    record("security", random_keys=n, server_errors=0)
