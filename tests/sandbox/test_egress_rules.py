"""The egress decision on its own (sandbox/egress_rules.py): the baseline's ranges, the order
of the rules, and that a name is resolved only once policies allowed it."""

from __future__ import annotations

import ipaddress
import json
import socket
from pathlib import Path
from typing import Any, cast

import pytest

from tilde_server.sandbox.egress import EgressProxy, NetworkLog, _Refused, parse_target
from tilde_server.sandbox.egress_rules import (
    Decision,
    EgressRules,
    HostPattern,
    PolicyVerdict,
    Target,
    baseline_reason,
)
from tilde_server.sandbox.logs import LogStore


@pytest.mark.parametrize("addr,why", [
    ("127.0.0.1", "loopback"), ("127.255.0.9", "loopback"), ("10.0.0.1", "private"),
    ("172.16.0.1", "private"), ("172.31.255.255", "private"), ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"), ("100.64.0.1", "cgnat"), ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"), ("255.255.255.255", "reserved"), ("::1", "loopback"),
    ("::", "unspecified"), ("fd12::1", "unique-local"), ("fe80::1", "link-local"),
    ("ff02::1", "multicast"), ("::ffff:10.0.0.1", "private"),
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("fd00:ec2::254", "unique-local"),
])
def test_baseline_denies(addr: str, why: str) -> None:
    assert baseline_reason(ipaddress.ip_address(addr)) == why


@pytest.mark.parametrize("addr", ["1.1.1.1", "151.101.0.223", "172.32.0.1", "100.128.0.1",
                                  "2a04:4e42::223", "8.8.8.8"])
def test_baseline_passes_public_addresses(addr: str) -> None:
    assert baseline_reason(ipaddress.ip_address(addr)) is None


def _rules(resolved: dict[str, list[str]], **kw: object) -> tuple[EgressRules, list[str]]:
    asked: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        asked.append(host)
        return resolved[host]

    rules = EgressRules.from_options(**kw)  # type: ignore[arg-type]
    rules.resolver = resolver
    return rules, asked


def nothing(_: Target) -> PolicyVerdict:
    return PolicyVerdict(None)


def test_a_denied_name_is_never_resolved() -> None:
    rules, asked = _rules({"evil.example": ["1.2.3.4"]})
    d = rules.decide(Target("https", "evil.example", 443, "CONNECT"), nothing)
    assert (d.allowed, d.rule, d.address) == (False, "default", None)
    d = rules.decide(Target("https", "evil.example", 443, "CONNECT"),
                     lambda t: PolicyVerdict(False, "no-evil"))
    assert (d.allowed, d.rule) == (False, "policy:no-evil")
    assert asked == []


def test_allowed_name_connects_to_the_first_address_passing_the_baseline() -> None:
    rules, asked = _rules({"pypi.org": ["10.0.0.5", "151.101.0.223", "151.101.64.223"]},
                          allow=["pypi.org"])
    d = rules.decide(Target("https", "pypi.org", 443, "CONNECT"), nothing)
    assert (d.allowed, d.rule, d.address) == (True, "allow-list:pypi.org", "151.101.0.223")
    assert asked == ["pypi.org"]


def test_name_resolving_only_to_private_addresses_is_denied() -> None:
    rules, _ = _rules({"internal.example": ["192.168.0.10", "::1"]}, allow=["*.example"])
    d = rules.decide(Target("http", "internal.example", 80, "GET", "/"), nothing)
    assert (d.allowed, d.rule, d.address) == (False, "baseline:private", "192.168.0.10")


def test_policy_deny_wins_over_the_allow_list_and_policy_allow_counts() -> None:
    rules, _ = _rules({"a.example": ["1.2.3.4"]}, allow=["a.example"])
    t = Target("http", "a.example", 80, "POST", "/upload")
    assert rules.decide(t, lambda _: PolicyVerdict(False, "p")).rule == "policy:p"
    d = rules.decide(Target("http", "a.example", 8080, "GET", "/"),
                     lambda _: PolicyVerdict(True, "ok"))
    assert (d.allowed, d.rule, d.address) == (True, "policy:ok", "1.2.3.4")


def test_baseline_literals_are_denied_before_any_policy() -> None:
    rules, asked = _rules({})
    called: list[Target] = []

    def policy(t: Target) -> PolicyVerdict:
        called.append(t)
        return PolicyVerdict(True, "anything")

    for host in ("127.0.0.1", "169.254.169.254", "localhost", "a.localhost", "::1"):
        d = rules.decide(Target("http", host, 80, "GET", "/"), policy)
        assert not d.allowed and d.rule.startswith("baseline:"), (host, d)
    assert called == [] and asked == []


def test_test_mode_connects_to_loopback_only() -> None:
    rules, _ = _rules({"x.test": ["93.184.216.34"]}, allow=["x.test"],
                      exempt=["127.0.0.1:9"])
    d = rules.decide(Target("http", "x.test", 80, "GET", "/"), nothing)
    assert (d.allowed, d.rule) == (False, "test-guard")
    d = rules.decide(Target("http", "127.0.0.1", 9, "GET", "/"),
                     lambda _: PolicyVerdict(True, "p"))
    assert (d.allowed, d.address) == (True, "127.0.0.1")


@pytest.mark.parametrize("text,host,port", [
    ("pypi.org", "pypi.org", None), ("*.pythonhosted.org", "*.pythonhosted.org", None),
    ("Index.Example:8443", "index.example", 8443)])
def test_host_patterns(text: str, host: str, port: int | None) -> None:
    p = HostPattern.parse(text)
    assert (p.host, p.port) == (host, port)


def test_host_pattern_matching() -> None:
    wild = HostPattern.parse("*.pythonhosted.org")
    assert wild.matches(Target("https", "files.pythonhosted.org", 443, "CONNECT"))
    assert not wild.matches(Target("https", "pythonhosted.org", 443, "CONNECT"))
    assert not wild.matches(Target("https", "evilpythonhosted.org", 443, "CONNECT"))
    assert not wild.matches(Target("https", "files.pythonhosted.org", 22, "CONNECT"))
    assert HostPattern.parse("h.example:22").matches(Target("https", "h.example", 22, "CONNECT"))


@pytest.mark.parametrize("bad", ["", "a b", "pypi.org:0", "pypi.org:x", "*.", "exa_mple..org"])
def test_bad_host_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        HostPattern.parse(bad)


@pytest.mark.parametrize("bad", [["exempt", "127.0.0.1"], ["exempt", "host:80"],
                                 ["resolve", "a.test"], ["resolve", "a.test=nowhere"]])
def test_bad_test_options_are_refused(bad: list[str]) -> None:
    with pytest.raises(ValueError):
        EgressRules.from_options(**{bad[0]: [bad[1]]})  # type: ignore[arg-type]


def test_request_targets() -> None:
    assert parse_target("CONNECT", "pypi.org:443") == Target("https", "pypi.org", 443,
                                                             "CONNECT")
    assert parse_target("CONNECT", "[::1]:443").host == "::1"
    t = parse_target("GET", "http://user:pw@Example.COM:8080/a/b?sig=secret")
    assert (t.host, t.port, t.path) == ("example.com", 8080, "/a/b")
    assert parse_target("GET", "http://bücher.example/").host == "xn--bcher-kva.example"
    for method, target in (("GET", "/relative"), ("GET", "https://x.example/"),
                           ("CONNECT", "no-port"), ("GET", "ftp://x.example/"),
                           ("GET", "http://x.example:99999/")):
        with pytest.raises(_Refused):
            parse_target(method, target)


def test_the_proxy_answers_malformed_and_origin_form_requests_and_keeps_serving(
        tmp_path: Path) -> None:
    """In-process (no sandbox): garbage gets a 400, a request without an absolute URL a 400
    that says why, and each is one connection that ends; the proxy goes on serving."""
    # an embedded server's log store: files only, no database needed
    netlog = NetworkLog(LogStore(cast(Any, None), tmp_path, shared=False).writer("sb", "net"))
    decided: list[Target] = []

    def decide(t: Target) -> Decision:
        decided.append(t)
        return Decision(False, "default", None, "no")

    proxy = EgressProxy(str(tmp_path / "e.sock"), decide, netlog)
    proxy.start()
    try:
        answers = []
        for raw in (b"\x16\x03\x01garbage\r\n\r\n", b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n",
                    b"GET http://a.example/ HTTP/1.1\r\nHost: a.example\r\n\r\n"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(10)
                s.connect(str(tmp_path / "e.sock"))
                s.sendall(raw)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
            answers.append(data)
    finally:
        proxy.stop()
    assert answers[0].startswith(b"HTTP/1.1 400 "), answers[0]
    assert answers[1].startswith(b"HTTP/1.1 400 ") and b"absolute URLs" in answers[1]
    assert answers[2].startswith(b"HTTP/1.1 403 ") and b"denied (default)" in answers[2]
    assert [t.host for t in decided] == ["a.example"]
    lines = [json.loads(x) for x in (tmp_path / "sb" / "net").read_text().splitlines()]
    assert [(x["rule"], x["status"]) for x in lines] == [("invalid", 400), ("default", 403)]
