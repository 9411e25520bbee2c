"""Commits per second of one deployment: SQLite (one process) against PostgreSQL with 1, 2
and 4 processes (not a test; prints numbers).

Every configuration gets the same workload, measured side by side in one run: --workers
client threads, spread round robin over the deployment's processes, each committing
--commits/--workers sessions of one small object (session, upload in the 0.7.7 flow,
finalize, commit), into one repository (every commit serialized on its row lock) and into
--repos repositories (commits of different repositories run side by side). Rounds are
interleaved (configurations in alternating order) and the median of --repeat rounds is
printed, with the ratio to SQLite. PostgreSQL is Debian's 15, started on loopback by
tests/postgres.py; each configuration gets a database of its own.

Usage: .venv/bin/python benchmarks/deploy_commits.py [--repeat 3] [--commits 200]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import start

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from postgres import PostgresHandle, start_postgres

KEY = "tk-bench-" + os.urandom(8).hex()


def _server(data: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    return start(data, KEY, env=env)


class Deployment:
    def __init__(self, name: str, tmp: Path, processes: int,
                 pg: PostgresHandle | None) -> None:
        self.name = name
        env: dict[str, str] = {}
        if pg is not None:
            db = pg.create_database(f"bench_{name.replace(' ', '_').replace('-', '_')}")
            env = {"TILDE_SERVER_DATABASE": db,
                   "TILDE_SERVER_SECRET_KEY_FILE": str(tmp / f"{name}-keys.json"),
                   "TILDE_SERVER_BLOBS": str(tmp / f"{name}-blobs")}
        self.procs, self.urls = [], []
        for i in range(processes):
            proc, url = _server(tmp / f"{name}-{i}" / "data", env)
            self.procs.append(proc)
            self.urls.append(url)
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
            api = f"{self.urls[0]}/api/v1"
            assert c.post(f"{api}/organizations", json={"name": "bench", "display_name": "b"}
                          ).status_code == 201
            self.repos = []
            for r in range(32):
                assert c.post(f"{api}/organizations/bench/repositories",
                              json={"name": f"r{r}"}).status_code == 201
                self.repos.append(f"r{r}")
        self.n = 0
        self.lock = threading.Lock()

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=30)

    def _next(self) -> int:
        with self.lock:
            self.n += 1
            return self.n

    def round(self, commits: int, workers: int, repos: int) -> float:
        """Commits per second of `commits` commits by `workers` threads over `repos`."""
        per = commits // workers
        errors: list[str] = []

        def worker(w: int) -> None:
            url = self.urls[w % len(self.urls)]
            with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
                for _ in range(per):
                    n = self._next()
                    repo = (f"{url}/api/v1/organizations/bench/repositories/"
                            f"{self.repos[n % repos]}")
                    sid = c.post(f"{repo}/sessions").json()["session_id"]
                    q = {"session_id": sid, "path": f"w{w}/{n}.bin"}
                    st = c.put(f"{repo}/object", params=q).json()
                    c.put(st["upload_url"], content=os.urandom(1024))
                    r = c.post(f"{repo}/object/finalize", params=q,
                               json={"upload_token": st["upload_token"]})
                    r = c.post(f"{repo}/sessions/{sid}", json={"message": "m"})
                    if r.status_code != 200:
                        errors.append(f"{r.status_code} {r.text[:200]}")

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        if errors:
            raise SystemExit(f"{self.name}: {len(errors)} commits failed, e.g. {errors[0]}")
        return per * workers / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--commits", type=int, default=200)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--repos", type=int, default=8)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tilde-deploy-bench-"))
    pg = start_postgres(tmp / "pg")
    deployments: list[Deployment] = []
    try:
        deployments.append(Deployment("sqlite", tmp, 1, None))
        for n in (1, 2, 4):
            deployments.append(Deployment(f"postgresql-{n}p", tmp, n, pg))
        results: dict[tuple[str, str], list[float]] = {}
        for i in range(a.repeat):
            order = deployments if i % 2 == 0 else list(reversed(deployments))
            for d in order:
                for label, repos in (("one repository", 1), (f"{a.repos} repositories",
                                                             a.repos)):
                    results.setdefault((d.name, label), []).append(
                        d.round(a.commits, a.workers, repos))
        print(f"commits/s, median of {a.repeat} rounds of {a.commits} commits by "
              f"{a.workers} client threads (os.cpu_count() = {os.cpu_count()}):")
        labels = ["one repository", f"{a.repos} repositories"]
        print(f"| deployment | {' | '.join(labels)} | ratio to sqlite ({labels[1]}) |")
        print("|---|" + "---|" * (len(labels) + 1))
        base = statistics.median(results[("sqlite", labels[1])])
        for d in deployments:
            med = [statistics.median(results[(d.name, lab)]) for lab in labels]
            print(f"| {d.name} | {' | '.join(f'{m:.1f}' for m in med)} | "
                  f"{med[1] / base:.2f} |")
    finally:
        for d in deployments:
            d.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
