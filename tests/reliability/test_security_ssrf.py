"""Connectors and imports must not become a way into the server's own network.

An s3 connector whose config names an endpoint the server must not reach is refused with
400 `endpoint_not_allowed` and nothing is created. This suite names loopback endpoints
only, in every spelling (decimal, hex, short IPv4, IPv4-mapped IPv6, a name that resolves
there): tests aim at nothing beyond 127.0.0.0/8, even a probe expected to be refused; the
other refused ranges (link-local and metadata, private, shared, unspecified, multicast) go
through the same check, which asks ``ipaddress`` whether an address is global.
The operator's own endpoint
(TILDE_SERVER_S3_ENDPOINT, a moto server on 127.0.0.1 in the test suite) keeps working, and
so do networks the operator allows (TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS). The check holds at
connect time too: a source whose endpoint resolves to a refused address by the time of the
import fails before sending a byte (the address actually connected to counts).
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from secutil import root

from figures import record
from tilde_server.store.errors import StoreError
from tilde_server.store.sources import S3Source, SourceSettings

pytestmark = pytest.mark.timeout(180)

REFUSED_ENDPOINTS = [
    "http://127.0.0.1:9/", "http://127.1:9/", "http://2130706433:9/", "http://0x7f000001:9/",
    "http://localhost:9/", "http://[::1]:9/", "http://[::ffff:127.0.0.1]:9/",
    "http://127.0.0.2:9/", "http://127.255.255.254:9/", "https://127.0.0.1:443/",
    "http://0177.0.0.1:9/", "http://[::ffff:7f00:1]:9/",
]


def _connector(name: str, bucket: str, endpoint: str | None, s3: Any) -> dict[str, Any]:
    cfg = {"bucket": bucket, "access_key_id": s3.access_key,
           "secret_access_key": s3.secret_key}
    if endpoint is not None:
        cfg["endpoint"] = endpoint
    return {"name": name, "type": "s3", "source_uri": "", "config": cfg}


def test_connector_endpoints_on_internal_addresses_are_refused(server: Any, s3: Any) -> None:
    ref = root.new_repo(server)
    h = {"Authorization": f"Bearer {server.api_key}"}
    base = f"{server.endpoint}/api/v1/organizations/{ref.org}/connectors"
    before = httpx.get(base, headers=h).json()
    bad = []
    for i, endpoint in enumerate(REFUSED_ENDPOINTS):
        r = httpx.post(base, headers=h, timeout=30,
                       json=_connector(f"c{i}", root.README_BUCKET, endpoint, s3))
        if r.status_code != 400 or r.json().get("code") != "endpoint_not_allowed":
            bad.append(f"{endpoint}: {r.status_code} {r.text[:200]}")
    assert not bad, "\n".join(bad)
    assert httpx.get(base, headers=h).json() == before
    # The operator's endpoint (the suite's moto on 127.0.0.1) is still allowed, named or not.
    for name, endpoint in (("named", s3.endpoint), ("default", None)):
        r = httpx.post(base, headers=h, timeout=30,
                       json=_connector(name, root.README_BUCKET, endpoint, s3))
        assert r.status_code == 201, r.text
    record("security", ssrf_endpoints_refused=len(REFUSED_ENDPOINTS))


def test_the_address_connected_to_is_checked_at_import(s3: Any) -> None:
    """As if the endpoint's name had resolved elsewhere when the connector was created: the
    source's connections to moto on 127.0.0.1 are refused before a request is sent."""
    src = S3Source({"bucket": root.README_BUCKET, "endpoint": s3.endpoint,
                    "access_key_id": s3.access_key, "secret_access_key": s3.secret_key,
                    "region": "us-east-1"}, SourceSettings())
    with pytest.raises(StoreError, match="refused at connect"):
        list(src.list(""))
    allowed = S3Source({"bucket": root.README_BUCKET, "endpoint": s3.endpoint,
                        "access_key_id": s3.access_key, "secret_access_key": s3.secret_key,
                        "region": "us-east-1"},
                       SourceSettings(allow_networks=(ipaddress.ip_network("127.0.0.0/8"),)))
    assert {o.key for o in allowed.list("data/")} >= {"data/train.csv", "data/test.csv"}


def test_operator_allowed_networks_let_imports_through(tmp_path: Path, s3: Any) -> None:
    """A server without TILDE_SERVER_S3_ENDPOINT but with 127.0.0.0/8 allowed imports from
    a connector that names the loopback endpoint itself."""
    h = root.start_server(tmp_path, extra_env={
        "TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS": "127.0.0.0/16, ::1/128",
        "AWS_EC2_METADATA_DISABLED": "true"})
    try:
        ref = root.new_repo(h)
        auth = {"Authorization": f"Bearer {h.api_key}"}
        org = f"{h.endpoint}/api/v1/organizations/{ref.org}"
        R = f"{org}/repositories/{ref.repo}"
        r = httpx.post(f"{org}/connectors", headers=auth, timeout=30,
                       json=_connector("c", root.README_BUCKET, s3.endpoint, s3))
        assert r.status_code == 201, r.text
        cid = r.json()["id"]
        r = httpx.post(f"{org}/connectors", headers=auth, timeout=30,
                       json=_connector("other", "b", "http://127.200.0.1:9/", s3))
        assert r.status_code == 400, r.text  # still refused: not in the allowed networks
        assert httpx.post(f"{R}/connectors", headers=auth,
                          json={"connector_id": cid}).status_code == 204
        r = httpx.post(f"{R}/import", headers=auth, timeout=30,
                       json={"connector_id": cid, "source_prefix": "data/",
                             "destination_path": "in/"})
        assert r.status_code == 202, r.text
        job = r.json()["job_id"]
        deadline = time.monotonic() + 60
        while (st := httpx.get(f"{R}/import/{job}", headers=auth).json())["status"] in (
                "pending", "running"):
            assert time.monotonic() < deadline, st
            time.sleep(0.2)
        assert st["status"] == "completed", st
    finally:
        root.stop_server(h)
    assert "Traceback" not in h.log(), h.log()


def test_a_malformed_allow_list_stops_the_server_with_one_line(tmp_path: Path) -> None:
    """A bad TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS is the operator's error: one line and
    exit status 2 before anything is opened, no traceback."""
    import os
    import subprocess

    env = dict(os.environ, HOME=str(tmp_path),
               TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS="127.0.0.0/8, not-a-network")
    r = subprocess.run([*root.server_command(), "run", "--data", str(tmp_path / "data"),
                        "--host", "127.0.0.1", "--port", str(root.free_port())],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 2, r
    assert "TILDE_SERVER_CONNECTOR_ALLOW_NETWORKS" in r.stderr and "not-a-network" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "data").exists()
