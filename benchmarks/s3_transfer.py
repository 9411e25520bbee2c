"""GET and PUT throughput through presigned S3 URLs against streamed through tilde-server
(not a test; prints numbers).

Two deployments on one PostgreSQL (Debian's 15, tests/postgres.py), both on loopback:
  s3:    --blobs s3://BUCKET/PREFIX on a SeaweedFS (tests/seaweed.py), --downloads redirect
  local: --blobs DIR (a blob directory on this machine's disk)
Measured side by side, rounds interleaved, medians of --repeat rounds, --size MiB objects,
--parallel transfers at once:
  PUT presigned   s3: the upload_url is the bucket's; the bytes go straight there
  PUT via server  s3: the batch upload extension; the server spools the bytes, then puts
                  them into the bucket
  PUT streamed    local: the upload_url is the server's; it spools, fsyncs and renames
  GET presigned   s3: 307 to the bucket, followed
  GET streamed    s3: a caller that cannot follow redirects; the server streams from S3
  GET local       local: the server streams its own blob file
Ratios are to the streamed figures; "server CPU" is the CPU time the tilde-server process
spent per GiB moved (user + system, from /proc). All of it shares two cores with the
servers, SeaweedFS and PostgreSQL: the MB/s say what this machine does, the CPU figures what
a transfer costs the tilde-server process, which is what decides how many clients one
process serves.

Usage: .venv/bin/python benchmarks/s3_transfer.py [--size 64] [--repeat 3] [--parallel 2]
"""

from __future__ import annotations

import argparse
import json
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

    def batch(self, sid: str, data: bytes) -> str:
        self.n += 1
        path = f"b{self.n}-{os.urandom(4).hex()}.bin"
        head = json.dumps({"objects": [{"path": path, "size": len(data)}]}).encode() + b"\n"
        r = self.http.post(f"{self.R}/objects/upload", params={"session_id": sid},
                           content=head + data,
                           headers={"Content-Type": "application/x-tilde-batch"})
        assert r.status_code == 200, r.text
        return path

    def get(self, path: str, headers: dict[str, str] | None = None) -> int:
        n = 0
        with self.http.stream("GET", f"{self.R}/object", params={"path": path},
                              headers=headers, follow_redirects=True) as r:
            assert r.status_code == 200, r.status_code
            for chunk in r.iter_raw(1 << 20):
                n += len(chunk)
        return n


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
            pid = {id(s3): procs[0].pid, id(local): procs[1].pid}
            figures: dict[str, list[float]] = {}
            cpu: dict[str, list[float]] = {}

            def measure(name: str, repo: Repo, fn, items: list) -> None:  # type: ignore[no-untyped-def]
                c0 = cpu_seconds(pid[id(repo)])
                secs = timed(fn, items, args.parallel)
                figures.setdefault(name, []).append(_mbps(total, secs))
                cpu.setdefault(name, []).append(
                    (cpu_seconds(pid[id(repo)]) - c0) / (total / 2**30))

            for rnd in range(args.repeat):
                order = [(s3, "presigned", Repo.put), (s3, "via server", Repo.batch),
                         (local, "streamed", Repo.put)]
                if rnd % 2:
                    order.reverse()
                paths: dict[str, list[str]] = {}
                for repo, kind, put in order:
                    sid = repo.http.post(f"{repo.R}/sessions").json()["session_id"]
                    got: list[str] = []
                    measure(f"PUT {kind}", repo,
                            lambda _i, r=repo, s=sid, g=got, f=put: g.append(f(r, s, data)),
                            list(range(args.count)))
                    assert repo.http.post(f"{repo.R}/sessions/{sid}",
                                          json={"message": "b"}).status_code == 200
                    paths[kind] = got
                gets = [("GET presigned", s3, paths["presigned"], None),
                        ("GET streamed", s3, paths["presigned"], UA_072),
                        ("GET local", local, paths["streamed"], None)]
                if rnd % 2:
                    gets.reverse()
                for name, repo, ps, headers in gets:
                    measure(name, repo, lambda pth, r=repo, h=headers: r.get(pth, h), ps)
        finally:
            for p in procs:
                p.terminate()
                p.wait(30)
    med = {k: statistics.median(v) for k, v in figures.items()}
    print(f"{args.size} MiB objects, {args.count} per round, {args.parallel} at once, "
          f"median of {args.repeat} rounds:")
    print(f"  {'':16s} {'MB/s':>8s} {'ratio':>6s}  {'server CPU s/GiB':>16s}  rounds (MB/s)")
    for k in ("PUT presigned", "PUT via server", "PUT streamed", "GET presigned",
              "GET streamed", "GET local"):
        base = med["PUT streamed"] if k.startswith("PUT") else med["GET streamed"]
        print(f"  {k:16s} {med[k]:8.1f} {med[k] / base:5.2f}x  "
              f"{statistics.median(cpu[k]):16.2f}  "
              f"{', '.join(f'{x:.0f}' for x in figures[k])}")


if __name__ == "__main__":
    main()
