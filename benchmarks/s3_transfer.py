"""GET and PUT throughput through presigned S3 URLs against streamed through tilde-server
(not a test; prints numbers).

Two deployments on one PostgreSQL (Debian's 15, tests/postgres.py), both on loopback:
  s3:    --blobs s3://BUCKET/PREFIX on a SeaweedFS (tests/seaweed.py), --downloads redirect
  local: --blobs DIR (a blob directory on this machine's disk)
Measured side by side, rounds interleaved, medians of --repeat rounds, --size MiB objects,
--parallel transfers at once:
  PUT presigned   s3: the upload_url is the bucket's; the bytes go straight there
  PUT streamed    local: the upload_url is the server's; it spools, fsyncs and renames
  GET presigned   s3: 307 to the bucket, followed
  GET streamed    s3: a caller that cannot follow redirects; the server streams from S3
  GET local       local: the server streams its own blob file
Ratios are to the streamed figures. All of it shares two cores with the servers, SeaweedFS
and PostgreSQL, so what it shows is what a transfer costs the tilde-server process, not
what S3 or a network could do.

Usage: .venv/bin/python benchmarks/s3_transfer.py [--size 64] [--repeat 3] [--parallel 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _server import start

from postgres import start_postgres
from seaweed import start_seaweed

KEY = "tk-bench-" + os.urandom(8).hex()
UA_072 = {"User-Agent": "tilde-python-sdk/0.7.2"}  # streams: cannot follow a redirect


class Repo:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=600)
        api = f"{url}/api/v1"
        assert self.http.post(f"{api}/organizations", json={"name": "bench"}).status_code == 201
        assert self.http.post(f"{api}/organizations/bench/repositories",
                              json={"name": "r"}).status_code == 201
        self.R = f"{api}/organizations/bench/repositories/r"
        self.n = 0

    def put(self, sid: str, data: bytes) -> str:
        self.n += 1
        q = {"session_id": sid, "path": f"o{self.n}-{os.urandom(4).hex()}.bin"}
        st = self.http.put(f"{self.R}/object", params=q).json()
        with httpx.Client(timeout=600) as bare:  # no bearer: the URL is signed
            assert bare.put(st["upload_url"], content=data).status_code == 200
        r = self.http.post(f"{self.R}/object/finalize", params=q,
                           json={"upload_token": st["upload_token"]})
        assert r.status_code == 201, r.text
        return q["path"]

    def get(self, path: str, headers: dict[str, str] | None = None) -> int:
        n = 0
        with self.http.stream("GET", f"{self.R}/object", params={"path": path},
                              headers=headers, follow_redirects=True) as r:
            assert r.status_code == 200, r.status_code
            for chunk in r.iter_raw(1 << 20):
                n += len(chunk)
        return n


def _mbps(total: int, seconds: float) -> float:
    return total / seconds / 1e6


def timed(fn, items: list, parallel: int) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(fn, items))
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="MiB per object")
    ap.add_argument("--count", type=int, default=4, help="objects per round and kind")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tilde-s3-bench-"))
    data = os.urandom(args.size << 20)
    total = len(data) * args.count
    with start_postgres(tmp / "pg") as pg, start_seaweed(tmp / "weed", buckets=["bench"]) as sw:
        s3_env = {"TILDE_SERVER_DATABASE": pg.create_database("bench_s3"),
                  "TILDE_SERVER_SECRET_KEY_FILE": str(tmp / "s3-keys.json"),
                  "TILDE_SERVER_BLOBS": "s3://bench/blobs", **sw.env()}
        local_env = {"TILDE_SERVER_DATABASE": pg.create_database("bench_local"),
                     "TILDE_SERVER_SECRET_KEY_FILE": str(tmp / "local-keys.json"),
                     "TILDE_SERVER_BLOBS": str(tmp / "blobs")}
        procs = []
        try:
            p, s3_url = start(tmp / "s3" / "data", KEY, s3_env, ["--downloads", "redirect"])
            procs.append(p)
            p, local_url = start(tmp / "local" / "data", KEY, local_env)
            procs.append(p)
            s3, local = Repo(s3_url), Repo(local_url)
            figures: dict[str, list[float]] = {}
            for rnd in range(args.repeat):
                order = [(s3, "presigned"), (local, "streamed")]
                if rnd % 2:
                    order.reverse()
                paths: dict[str, list[str]] = {}
                for repo, kind in order:
                    sid = repo.http.post(f"{repo.R}/sessions").json()["session_id"]
                    got: list[str] = []
                    secs = timed(lambda _i, r=repo, s=sid, g=got: g.append(r.put(s, data)),
                                 list(range(args.count)), args.parallel)
                    figures.setdefault(f"PUT {kind}", []).append(_mbps(total, secs))
                    assert repo.http.post(f"{repo.R}/sessions/{sid}",
                                          json={"message": "b"}).status_code == 200
                    paths[kind] = got
                gets = [("GET presigned", s3, paths["presigned"], None),
                        ("GET streamed", s3, paths["presigned"], UA_072),
                        ("GET local", local, paths["streamed"], None)]
                if rnd % 2:
                    gets.reverse()
                for name, repo, ps, headers in gets:
                    secs = timed(lambda pth, r=repo, h=headers: r.get(pth, h), ps,
                                 args.parallel)
                    figures.setdefault(name, []).append(_mbps(total, secs))
        finally:
            for p in procs:
                p.terminate()
                p.wait(30)
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"{args.size} MiB objects, {args.count} per round, {args.parallel} at once, "
          f"median of {args.repeat} rounds (MB/s):")
    for k in ("PUT presigned", "PUT streamed", "GET presigned", "GET streamed", "GET local"):
        base = med["PUT streamed"] if k.startswith("PUT") else med["GET streamed"]
        print(f"  {k:15s} {med[k]:8.1f}   {med[k] / base:5.2f}x   "
              f"(rounds: {', '.join(f'{x:.0f}' for x in figures[k])})")


if __name__ == "__main__":
    main()
