"""The egress proxy, for real: sandboxes under bubblewrap reach "outside" servers on loopback
(tests/outside.py) only through tilde-server's proxy, which decides, answers 403 and logs.

The server runs with the test-only options that let exactly the outside servers' ports pass
the baseline and that resolve the test names to 127.0.0.1; in that mode the proxy connects to
loopback only (egress_rules.py, subtlety 3), so a baseline bug shows here as a `test-guard`
decision, never as a packet to a private or metadata address.

Each sandbox runs PROBE, which makes the requests it is given through the proxy (urllib with
an explicit proxy, since NO_PROXY covers 127.0.0.1 and localhost) and prints what came back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sbhelpers import RepoRef, SandboxApi, require_bwrap, start_server, stop_server, unique

from bypath import load

outside = load("outside.py", "outside")

PROBE = b'''\
import json, os, ssl, sys, urllib.error, urllib.request
env = {k: os.environ.get(k) for k in ("HTTP_PROXY", "https_proxy", "NO_PROXY")}
for k in ("NO_PROXY", "no_proxy"):  # urllib would bypass the proxy for 127.0.0.1, localhost
    os.environ.pop(k, None)
proxy = "http://127.0.0.1:3128"
ctx = ssl.create_default_context(cafile="/sandbox/ca.pem")
opener = urllib.request.build_opener(
    urllib.request.ProxyHandler({"http": proxy, "https": proxy}),
    urllib.request.HTTPSHandler(context=ctx))
out = []
for r in json.load(open(sys.argv[1])):
    data = r["data"].encode() if "data" in r else None
    req = urllib.request.Request(r["url"], data=data, method=r.get("method", "GET"),
                                 headers=r.get("headers", {}))
    try:
        with opener.open(req, timeout=30) as resp:
            out.append({"status": resp.status, "body": resp.read().decode()})
    except urllib.error.HTTPError as e:
        out.append({"status": e.code, "body": e.read().decode()})
    except OSError as e:
        out.append({"status": None, "error": str(e)})
print(json.dumps({"results": out, "env": env}))
'''


class Egress:
    """The module's server, outside servers and one repository with the probe in it."""

    def __init__(self, tmp: Path) -> None:
        require_bwrap()
        self.ca = outside.TestCA()
        self.web = outside.http_server("plain")
        self.tls = outside.tls_server(self.ca, ["tls.test"], name="tls")
        self.trap = outside.http_server("trap")  # never exempt: nothing may connect here
        names = ["allowed.test", "policy.test", "denied.test", "tls.test", "rebind.test"]
        args = ["--sandbox-allow-host", f"allowed.test:{self.web.port}",
                "--sandbox-allow-host", f"tls.test:{self.tls.port}",
                "--sandbox-allow-host", f"rebind.test:{self.trap.port}",
                "--unsafe-egress-test-exempt", f"127.0.0.1:{self.web.port}",
                "--unsafe-egress-test-exempt", f"127.0.0.1:{self.tls.port}"]
        for n in names:
            args += ["--unsafe-egress-test-resolve", f"{n}=127.0.0.1"]
        self.server = start_server(tmp, args=args)
        self.repo = self.server.new_repo()
        self.api = SandboxApi(self.server, self.repo)
        self.api.put("probe.py", PROBE)
        self.api.put("ca.pem", self.ca.cert_pem)

    def close(self) -> None:
        stop_server(self.server)
        for s in (self.web, self.tls, self.trap):
            s.stop()

    def probe(self, requests: list[dict[str, Any]], api: SandboxApi | None = None
              ) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        """Run the probe in a sandbox: (results, env seen inside, the network log lines)."""
        api = api or self.api
        name = f"reqs-{unique('r')}.json"
        body = {"image": "python-312", "timeout_seconds": 120,
                "command": ["/bin/sh", "-c",
                            f"cat > /tmp/{name} <<'EOF'\n{json.dumps(requests)}\nEOF\n"
                            f"python3 /sandbox/probe.py /tmp/{name}"]}
        sid = api.start(body)
        st = api.wait(sid, timeout=120)
        out = api.stdout(sid)
        assert st["status"] == "committed", (st, out)
        report = json.loads(out.decode().strip().splitlines()[-1])
        return report["results"], report["env"], network_log(api, sid)


def network_log(api: SandboxApi, sid: str) -> list[dict[str, Any]]:
    r = api.http.get(f"{api.base}/sandboxes/{sid}/logs/network")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in r.text.splitlines()]


@pytest.fixture(scope="module")
def eg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Egress]:
    e = Egress(tmp_path_factory.mktemp("egress"))
    yield e
    e.close()


FIELDS = {"timestamp", "method", "scheme", "host", "port", "path", "address", "decision",
          "allowed", "rule", "status", "bytes_sent", "bytes_received", "duration_ms", "error"}


def in_request_order(lines: list[dict[str, Any]], methods: list[str]) -> list[dict[str, Any]]:
    """The lines of requests made one after the other, each of its own method, in the order
    the requests were made: a line is written when its request is done, so under load the
    next request's may come first."""
    assert sorted(ln["method"] for ln in lines) == sorted(methods), lines
    return [next(ln for ln in lines if ln["method"] == m) for m in methods]


def check_line(line: dict[str, Any], **expect: Any) -> None:
    assert set(line) == FIELDS, line
    for k, v in expect.items():
        assert line[k] == v, (k, line)
    assert line["timestamp"].endswith("Z") and line["duration_ms"] >= 0, line
    assert line["allowed"] == (line["decision"] == "allow"), line


def test_allow_list_http_and_connect_tunnel_are_served_and_logged(eg: Egress) -> None:
    before = len(eg.web.requests)
    results, env, lines = eg.probe([
        {"url": f"http://allowed.test:{eg.web.port}/hello?token=SIGNED-SECRET",
         "headers": {"Authorization": "Bearer AUTH-SECRET",
                     "Proxy-Authorization": "Basic PROXY-SECRET"}},
        {"url": f"http://allowed.test:{eg.web.port}/echo", "method": "POST",
         "data": "x" * 5000},
        {"url": f"https://tls.test:{eg.tls.port}/hello"},
    ])
    assert results[0] == {"status": 200, "body": "hello from plain"}, results
    assert results[1] == {"status": 200, "body": "received 5000 bytes"}, results
    assert results[2] == {"status": 200, "body": "hello from tls"}, results
    assert env == {"HTTP_PROXY": "http://127.0.0.1:3128", "https_proxy": "http://127.0.0.1:3128",
                   "NO_PROXY": "127.0.0.1,localhost"}, env
    # Upstream got the end-to-end headers (Authorization) but never the proxy's own.
    got = eg.web.requests[before:]
    assert [(r.method, r.path) for r in got] == [("GET", "/hello?token=SIGNED-SECRET"),
                                                 ("POST", "/echo")], got
    headers = {k.lower(): v for k, v in got[0].headers.items()}
    assert headers["authorization"] == "Bearer AUTH-SECRET"
    assert "proxy-authorization" not in headers and "proxy-connection" not in headers
    assert len(lines) == 3, lines
    lines = in_request_order(lines, ["GET", "POST", "CONNECT"])
    rule = f"allow-list:allowed.test:{eg.web.port}"
    check_line(lines[0], method="GET", scheme="http", host="allowed.test", port=eg.web.port,
               path="/hello", address="127.0.0.1", decision="allow", rule=rule, status=200,
               error=None)
    assert lines[0]["bytes_sent"] > 0 and lines[0]["bytes_received"] > len("hello from plain")
    check_line(lines[1], method="POST", path="/echo", decision="allow", status=200)
    assert lines[1]["bytes_sent"] > 5000, lines[1]
    check_line(lines[2], method="CONNECT", scheme="https", host="tls.test", port=eg.tls.port,
               path=None, address="127.0.0.1", decision="allow",
               rule=f"allow-list:tls.test:{eg.tls.port}", status=200, error=None)
    assert lines[2]["bytes_sent"] > 100 and lines[2]["bytes_received"] > 100, lines[2]
    # Credentials and signed-URL queries never reach the log.
    text = json.dumps(lines)
    for secret in ("SIGNED-SECRET", "AUTH-SECRET", "PROXY-SECRET", "token="):
        assert secret not in text


def test_denied_targets_get_403_and_are_never_connected(eg: Egress) -> None:
    trap_before, web_before = len(eg.trap.connections), len(eg.web.connections)
    server_port = int(eg.server.endpoint.rsplit(":", 1)[1])
    cases = [  # (url, method, rule, address)
        (f"http://denied.test:{eg.web.port}/hello", "GET", "default", None),
        (f"http://127.0.0.1:{eg.trap.port}/", "GET", "baseline:loopback", "127.0.0.1"),
        (f"http://localhost:{eg.trap.port}/", "GET", "baseline:loopback", None),
        (f"http://[::1]:{eg.trap.port}/", "GET", "baseline:loopback", "::1"),
        (f"http://[::ffff:127.0.0.1]:{eg.trap.port}/", "GET", "baseline:loopback",
         "::ffff:7f00:1"),
        (f"http://rebind.test:{eg.trap.port}/", "GET", "baseline:loopback", "127.0.0.1"),
        (f"http://127.0.0.1:{server_port}/api/v1/organizations", "GET", "baseline:loopback",
         "127.0.0.1"),
        # Names only (never resolved): private, metadata and other ranges are decided on
        # addresses by test_egress_rules.py, so no request here names an address beyond
        # loopback, not even one that is sure to be refused.
        ("http://metadata.google.internal/", "GET", "baseline:link-local", None),
        (f"https://localhost:{server_port}/", "CONNECT", "baseline:loopback", None),
        (f"https://127.0.0.2:{eg.trap.port}/", "CONNECT", "baseline:loopback", "127.0.0.2"),
    ]
    results, _, lines = eg.probe([{"url": url} for url, *_ in cases])
    assert len(results) == len(cases) == len(lines), (results, lines)
    # a line is written when its request is done, so under load the next request's may come
    # first: each case finds its own line by method, host and port
    by_target = {(ln["method"], ln["host"], ln["port"]): ln for ln in lines}
    assert len(by_target) == len(lines), lines
    for (url, method, rule, address), res in zip(cases, results, strict=True):
        u = urlsplit(url)
        line = by_target[(method, u.hostname, u.port or (443 if u.scheme == "https" else 80))]
        if method == "CONNECT":  # urllib reports a refused tunnel as an OSError
            assert res["status"] is None and "403" in res["error"], (url, res)
        else:
            assert res["status"] == 403, (url, res)
            assert "denied" in res["body"] and rule in res["body"], (url, res)
        check_line(line, method=method, decision="deny", rule=rule, address=address,
                   status=403, bytes_sent=0, bytes_received=0)
    assert len(eg.trap.connections) == trap_before, eg.trap.connections
    assert len(eg.web.connections) == web_before, eg.web.connections


def test_organization_network_policy_allows_and_denies(eg: Egress) -> None:
    """`network:request` policies: an allow for policy.test, a deny of POST that wins over
    the operator allow-list; role policies (the admin owns the org) grant nothing."""
    repo = eg.server.new_repo()
    api = SandboxApi(eg.server, repo)
    api.put("probe.py", PROBE)
    api.put("ca.pem", eg.ca.cert_pem)
    requests = [{"url": f"http://policy.test:{eg.web.port}/hello"},
                {"url": f"http://allowed.test:{eg.web.port}/echo", "method": "POST",
                 "data": "x"}]
    results, _, lines = eg.probe(requests, api)
    assert [r["status"] for r in results] == [403, 200], results  # no policy yet
    assert [ln["rule"] for ln in lines] == ["default", f"allow-list:allowed.test:{eg.web.port}"]
    attach_policy(eg, repo, "egress-rules", f"""package tilde.authz
allow if {{
    input.action == "network:request"
    input.request.host == "policy.test"
    input.request.path == "/hello"
    input.repository == "{repo.repo}"
}}
deny if {{
    input.action == "network:request"
    input.request.method == "POST"
}}
""")
    results, _, lines = eg.probe(requests, api)
    lines = in_request_order(lines, ["GET", "POST"])
    assert results[0] == {"status": 200, "body": "hello from plain"}, results
    assert results[1]["status"] == 403 and "egress-rules" in results[1]["body"], results
    check_line(lines[0], decision="allow", rule="policy:egress-rules", host="policy.test")
    check_line(lines[1], decision="deny", rule="policy:egress-rules", method="POST",
               address=None)


def attach_policy(eg: Egress, repo: RepoRef, name: str, text: str) -> None:
    """Create `text` in repo's organization and attach it to the admin user (its owner)."""
    h = {"Authorization": f"Bearer {eg.server.api_key}"}
    o = f"{eg.server.endpoint}/api/v1/organizations/{repo.org}"
    r = httpx.post(f"{o}/policies", json={"name": name, "policy_text": text}, headers=h)
    assert r.status_code == 201, r.text
    pid = r.json()["policy"]["id"]
    members = httpx.get(f"{o}/members", headers=h).json()["results"]
    assert len(members) == 1, members
    uid = members[0].get("user_id") or members[0]["id"]
    r = httpx.post(f"{o}/policies/{pid}/attachments", headers=h,
                   json={"principal_type": "user", "principal_id": uid})
    assert r.status_code == 204, r.text


def test_no_route_but_the_proxy(eg: Egress) -> None:
    """Inside, DNS does not work and a direct connection reaches nothing: the sandbox's
    loopback is its own, and there is no other interface."""
    before = len(eg.web.connections)
    script = f"""
import socket
try:
    socket.getaddrinfo("allowed.test", 80)
    print("dns: yes")
except OSError as e:
    print("dns: no")
for addr in ("127.0.0.1",):
    try:
        socket.create_connection((addr, {eg.web.port}), timeout=3).close()
        print(addr, "connected")
    except OSError as e:
        print(addr, "failed")
print(sorted(n for _, n in socket.if_nameindex()))
"""
    st, out = eg.api.run({"image": "python-312", "command": ["python3", "-c", script],
                          "timeout_seconds": 60})
    assert st["status"] == "committed", (st, out)
    assert out.decode().split("\n")[:3] == ["dns: no", "127.0.0.1 failed", "['lo']"], out
    assert len(eg.web.connections) == before


def test_curl_through_the_environment(eg: Egress) -> None:
    """An ordinary program finds the proxy through the environment alone."""
    st, out = eg.api.run({"image": "python-312", "timeout_seconds": 60, "command": [
        "/bin/sh", "-c",
        f"curl -sS http://allowed.test:{eg.web.port}/hello; echo; "
        f"curl -sS --cacert /sandbox/ca.pem https://tls.test:{eg.tls.port}/hello; echo; "
        f"curl -s -o /dev/null -w '%{{http_code}}' http://denied.test:{eg.web.port}/"]})
    assert st["status"] == "committed", (st, out)
    assert out.decode().splitlines() == ["hello from plain", "hello from tls", "403"], out


def test_network_off_and_log_expiry(tmp_path: Path) -> None:
    """`--sandbox-network off`: no proxy, no proxy variables; logs go after the retention
    and logs/* then answer 410."""
    require_bwrap()
    srv = start_server(tmp_path, args=["--sandbox-network", "off",
                                       "--sandbox-log-retention", "0.00003"])  # ~2.6 s
    try:
        api = SandboxApi(srv, srv.new_repo())
        sid = api.start({"image": "python-312", "command": [
            "/bin/sh", "-c", "echo proxy=${HTTP_PROXY:-none}; "
                             "python3 -c 'import socket; socket.create_connection("
                             "(\"127.0.0.1\", 3128), timeout=2)' 2>/dev/null || echo closed"]})
        st = api.wait(sid)
        out = api.stdout(sid)
        assert st["status"] == "committed", (st, out)
        assert out.decode().splitlines() == ["proxy=none", "closed"], out
        deadline = time.monotonic() + 30
        while True:
            r = api.http.get(f"{api.base}/sandboxes/{sid}/logs/stdout")
            if r.status_code == 410:
                break
            assert r.status_code == 200, r.text
            assert time.monotonic() < deadline, "the logs were never swept"
            time.sleep(0.5)
        assert "no longer available" in r.json()["message"]
        r = api.http.get(f"{api.base}/sandboxes/{sid}/logs/network")
        assert r.status_code == 410, r.text
        st2 = api.status(sid)
        assert st2["status"] == "committed", st2  # the sandbox itself is still there
    finally:
        stop_server(srv)
