"""Data tools over tilde:// fsspec, a tilde-mount and s3fs over SeaweedFS, side by side.

    .venv/bin/python benchmarks/fsspec_bench.py [--size-mb 1024] [--repeat 3]
    .venv/bin/python benchmarks/fsspec_bench.py --size-mb 64 --repeat 1     # smoke, < 1 min

Writes one Parquet file (an int64 ``id`` and seven float64 columns of random values,
uncompressed, row groups of 2^20 rows), then on loopback starts a tilde-server holding it in
a repository and a SeaweedFS (``weed mini``, tests/seaweed.py) holding it in a bucket, and
times three queries through three routes:

- queries: pandas ``read_parquet`` of the whole file; DuckDB ``count(*)`` and sums of every
  column (a full scan); DuckDB ``sum`` of one column (a selective scan: one column chunk per
  row group, plus the footer);
- routes: ``tilde``, fsspec's ``tilde://`` (``tilde.fsspec``, its defaults); ``tilde-4``, the
  same with ``read_parts_at_once=4`` (large reads as concurrent 8 MiB part GETs); ``mount``, the
  same object through a real read-only ``tilde-mount`` of the repository, mounted fresh with
  an empty cache for every measurement; ``s3fs``, fsspec's s3fs (its defaults) over SeaweedFS.

Subtleties:

1. Every measurement runs in a fresh worker process (this script with ``--worker``), so no
   route profits from an earlier one's client caches or open connections; the worker times
   from building its filesystem to the query's result, not the interpreter's start.
2. s3fs lives in a virtualenv of its own, build/s3fs-venv (created on first use, with the
   same pandas/pyarrow/duckdb/fsspec versions as .venv): s3fs pins aiobotocore, which pins a
   botocore older than the one .venv's boto3 needs, so installing it into .venv would break
   boto3. If .venv can already import s3fs, .venv is used.
3. DuckDB reads the fsspec routes through ``register_filesystem``; extension autoloading is
   switched off so an ``s3://`` path never makes it fetch httpfs from the network.
4. Requests and bytes: the tilde route counts answers (and their Content-Length) with the
   filesystem's httpx event hooks; the s3fs route with botocore ``after-call`` events (bytes:
   GET bodies only, a HEAD's Content-Length is the object's size); the mount route reads the
   daemon's counters (``tilde-mount status --json``: requests, ``bytes_in``).
5. Both servers read their blobs from the same disk and page cache; routes are interleaved
   within every repetition so drifts of a shared, noisy machine hit them alike.

Prints a Markdown table of medians (seconds, MB/s of the file's size) and each route's ratio
to the mount and to s3fs; writes the figures to benchmarks/results/fsspec-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 1024 * 1024
ORG, REPO, KEY, BUCKET = "bench", "parquet", "data/table.parquet", "bench"
COLUMNS = ["id", *[f"v{i}" for i in range(7)]]
ROUTES = ("tilde", "tilde-4", "mount", "s3fs")
QUERIES = {
    "pandas": "pandas read_parquet (all columns)",
    "duckdb_scan": "DuckDB count(*) + sum of every column",
    "duckdb_col": "DuckDB sum of one column",
}
S3FS_VENV = ROOT / "build" / "s3fs-venv"
#: what the s3fs virtualenv gets besides s3fs: .venv's versions, so only the route differs
SAME_AS_VENV = ("pandas", "pyarrow", "duckdb", "fsspec")


def say(*a: Any) -> None:
    print(*a, flush=True)


# --------------------------------------------------------------------------- the worker side
# Runs in .venv (tilde, mount) or in build/s3fs-venv (s3fs): imports nothing of this project.


def _duckdb_sql(query: str, path: str) -> str:
    if query == "duckdb_scan":
        sums = ", ".join(f"sum({c})" for c in COLUMNS)
        return f"SELECT count(*), {sums} FROM read_parquet('{path}')"
    return f"SELECT sum(v3), count(*) FROM read_parquet('{path}')"


def _run_query(query: str, path: str, fs: Any) -> list[float]:
    """The query's result as numbers (compared across routes)."""
    if query == "pandas":
        import pandas as pd

        df = pd.read_parquet(path, filesystem=fs) if fs is not None else pd.read_parquet(path)
        return [float(len(df)), float(df["v0"].sum())]
    import duckdb

    con = duckdb.connect()
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    if fs is not None:
        con.register_filesystem(fs)
    row = con.execute(_duckdb_sql(query, path)).fetchone()
    con.close()
    assert row is not None
    return [float(x) for x in row]


def worker(route: str, query: str, target: str) -> dict[str, Any]:
    """One timed measurement (subtlety 1); counts requests where the route lets us (4)."""
    counts = {"requests": 0, "bytes": 0}
    t0 = time.perf_counter()
    fs: Any = None
    if route.startswith("tilde"):
        import fsspec

        # tilde-4: the same with large reads as 4 concurrent part GETs
        parts = {"read_parts_at_once": 4} if route == "tilde-4" else {}
        fs = fsspec.filesystem("tilde", skip_instance_cache=True, **parts)

        async def on_response(response: Any) -> None:
            counts["requests"] += 1
            if response.request.method == "GET":  # a HEAD's Content-Length has no body
                counts["bytes"] += int(response.headers.get("content-length") or 0)

        fs.api.event_hooks["response"].append(on_response)
    elif route == "s3fs":
        import s3fs

        fs = s3fs.S3FileSystem(
            key=os.environ["BENCH_S3_KEY"], secret=os.environ["BENCH_S3_SECRET"],
            endpoint_url=os.environ["BENCH_S3_ENDPOINT"], skip_instance_cache=True,
            client_kwargs={"region_name": "us-east-1"})
        fs.connect()

        def after_call(http_response: Any = None, model: Any = None, **kwargs: Any) -> None:
            counts["requests"] += 1
            if http_response is not None and getattr(model, "name", "") == "GetObject":
                counts["bytes"] += int(http_response.headers.get("content-length") or 0)

        fs.s3.meta.events.register("after-call.s3", after_call)
    result = _run_query(query, target, fs)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "result": result,
            **(counts if route != "mount" else {})}


# --------------------------------------------------------------------------- the driver side


def s3fs_python() -> str:
    """An interpreter that imports s3fs (subtlety 2), installing it on first use."""
    ok = subprocess.run([sys.executable, "-c", "import s3fs"], capture_output=True)
    if ok.returncode == 0:
        return sys.executable
    py = S3FS_VENV / "bin" / "python"
    if py.exists() and subprocess.run([str(py), "-c", "import s3fs, pandas, duckdb"],
                                      capture_output=True).returncode == 0:
        return str(py)
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in SAME_AS_VENV]
    say(f"fsspec bench: installing s3fs into {S3FS_VENV} (with {' '.join(pins)})")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(S3FS_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "s3fs", *pins], check=True)
    return str(py)


def write_parquet(path: Path, size: int) -> int:
    """Random, uncompressed columns of about ``size`` bytes; returns the row count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = max(size // (8 * len(COLUMNS)), 1)
    group = 1 << 20
    rng = np.random.default_rng(14)
    schema = pa.schema([("id", pa.int64()), *[(c, pa.float64()) for c in COLUMNS[1:]]])
    with pq.ParquetWriter(path, schema, compression="none") as w:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            cols = [pa.array(np.arange(start, start + n, dtype=np.int64))]
            cols += [pa.array(rng.random(n)) for _ in COLUMNS[1:]]
            w.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=group)
    return rows


class Bench:
    """The servers, the mount and the worker runs of one benchmark."""

    def __init__(self, work: Path, parquet: Path, s3fs_py: str) -> None:
        sys.path.insert(0, str(HERE))
        sys.path.insert(0, str(ROOT / "tests"))
        from mountbench import env as E

        from seaweed import start_seaweed

        self.E = E
        self.work = work
        self.s3fs_py = s3fs_py
        self.key = "tk-bench-" + secrets.token_hex(16)
        self.server, self.endpoint = E.start_tilde_server(work / "tilde", "fsspec", self.key,
                                                          [])
        try:
            self.seaweed = start_seaweed(work / "seaweed", buckets=[BUCKET])
        except BaseException:
            self.server.stop()
            raise
        self.env = dict(os.environ, TILDE_API_KEY=self.key, TILDE_ENDPOINT_URL=self.endpoint,
                        BENCH_S3_ENDPOINT=self.seaweed.endpoint,
                        BENCH_S3_KEY=self.seaweed.access_key,
                        BENCH_S3_SECRET=self.seaweed.secret_key, HOME=str(work / "home"))
        (work / "home").mkdir(exist_ok=True)
        self.runs = 0
        try:
            self._seed(parquet)
        except BaseException:
            self.close()
            raise

    def _seed(self, parquet: Path) -> None:
        import tilde

        client = tilde.Client(endpoint_url=self.endpoint, api_key=self.key)
        try:
            client.organizations.create(ORG, display_name=ORG)
            client.organization(ORG).repositories.create(REPO)
            with client.repository(f"{ORG}/{REPO}").session() as s:
                s.objects.put(KEY, parquet)
                s.commit("benchmark data")
        finally:
            client.close()
        self.seaweed.client().upload_file(str(parquet), BUCKET, KEY)

    def close(self) -> None:
        self.seaweed.stop()
        self.server.stop()

    def _tm(self, *args: str) -> list[str]:
        exe = shutil.which("tilde-mount", path=str(self.E.BIN))
        return [*([exe] if exe else [sys.executable, "-m", "tilde_mount"]), *args]

    def _worker(self, python: str, route: str, query: str, target: str) -> dict[str, Any]:
        r = subprocess.run([python, str(Path(__file__).resolve()), "--worker", route, query,
                            target], capture_output=True, text=True, env=self.env, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"{route}/{query} worker failed:\n{r.stdout}\n{r.stderr}")
        out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
        return out

    def measure(self, route: str, query: str) -> dict[str, Any]:
        if route.startswith("tilde"):
            return self._worker(sys.executable, route, query, f"tilde://{ORG}/{REPO}/{KEY}")
        if route == "s3fs":
            return self._worker(self.s3fs_py, route, query, f"s3://{BUCKET}/{KEY}")
        self.runs += 1
        mnt, cache = self.work / "mnt", self.work / f"cache-{self.runs}"
        mnt.mkdir(exist_ok=True)
        self.E.force_unmount(mnt)
        r = subprocess.run(self._tm("mount", f"{ORG}/{REPO}", str(mnt), "--endpoint",
                                    self.endpoint, "--cache-dir", str(cache), "--read-only",
                                    "--log-file", str(self.work / f"mount-{self.runs}.log")),
                           capture_output=True, text=True, env=self.env, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"tilde-mount failed: {r.stdout}{r.stderr}")
        try:
            before = self._requests(mnt)
            out = self._worker(sys.executable, route, query, str(mnt / KEY))
            after = self._requests(mnt)
            out["requests"] = after["total"] - before["total"]
            out["bytes"] = after["bytes"] - before["bytes"] if "bytes" in after else None
        finally:
            subprocess.run(self._tm("unmount", str(mnt)), capture_output=True, env=self.env,
                           timeout=300)
            self.E.force_unmount(mnt)
            shutil.rmtree(cache, ignore_errors=True)
        return out

    def _requests(self, mnt: Path) -> dict[str, int]:
        r = subprocess.run(self._tm("status", str(mnt), "--json"), capture_output=True,
                           text=True, env=self.env, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"tilde-mount status failed: {r.stderr}")
        st = json.loads(r.stdout)["requests"]
        out = {"total": int(st.get("total", 0))}
        if isinstance(st.get("bytes_in"), int):
            out["bytes"] = st["bytes_in"]
        return out


def table(summary: dict[str, dict[str, dict[str, Any]]], size: int) -> str:
    """Markdown: one row per query and route with medians and ratios."""
    lines = ["| query | route | median s | MB/s | x mount | x s3fs | requests | MB fetched |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for query, label in QUERIES.items():
        by_route = summary[query]
        for route in ROUTES:
            s = by_route[route]
            t = s["seconds"]
            rm = by_route["mount"]["seconds"] / t
            rs = by_route["s3fs"]["seconds"] / t
            req = "" if s["requests"] is None else f"{s['requests']:.0f}"
            mb = "" if s["bytes"] is None else f"{s['bytes'] / 1e6:.0f}"
            lines.append(f"| {label} | {route} | {t:.2f} | {size / 1e6 / t:.0f} | {rm:.2f} | "
                         f"{rs:.2f} | {req} | {mb} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=1024, help="Parquet file size, MiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--tmp", type=Path, default=None)
    ap.add_argument("--worker", nargs=3, metavar=("ROUTE", "QUERY", "TARGET"),
                    help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(*a.worker)))
        return 0

    started = time.time()
    s3fs_py = s3fs_python()
    work = Path(tempfile.mkdtemp(prefix="tilde-fsspec-bench-", dir=a.tmp))
    bench: Bench | None = None
    try:
        parquet = work / "table.parquet"
        rows = write_parquet(parquet, a.size_mb * MiB)
        size = parquet.stat().st_size
        say(f"fsspec bench: {size / MiB:.0f} MiB Parquet, {rows} rows x {len(COLUMNS)} "
            f"columns, {a.repeat} run(s)")
        bench = Bench(work, parquet, s3fs_py)
        raw: dict[str, dict[str, list[dict[str, Any]]]] = {
            q: {r: [] for r in ROUTES} for q in QUERIES}
        for rep in range(a.repeat):
            for query in QUERIES:
                for route in ROUTES:
                    m = bench.measure(route, query)
                    raw[query][route].append(m)
                    say(f"  run {rep + 1} {query:12} {route:6} {m['seconds']:7.2f} s")
        for query, by_route in raw.items():
            results = {json.dumps(m["result"]) for ms in by_route.values() for m in ms}
            ref = by_route["mount"][0]["result"]
            for ms in by_route.values():
                for m in ms:
                    if any(abs(x - y) > 1e-6 * max(abs(y), 1) for x, y in zip(
                            m["result"], ref, strict=True)):
                        raise RuntimeError(f"{query}: routes disagree: {sorted(results)}")

        def med(ms: list[dict[str, Any]], k: str) -> float | None:
            vals = [m[k] for m in ms if m.get(k) is not None]
            return statistics.median(vals) if vals else None

        summary = {q: {r: {k: med(ms, k) for k in ("seconds", "requests", "bytes")}
                       for r, ms in by_route.items()} for q, by_route in raw.items()}
        say("")
        say(f"{size / MiB:.0f} MiB Parquet, medians of {a.repeat} run(s); x mount / x s3fs: "
            "that route's time / this row's (above 1: this row is faster)")
        say(table(summary, size))
        a.results.mkdir(parents=True, exist_ok=True)
        out = a.results / f"fsspec-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({
            "size_bytes": size, "rows": rows, "repeat": a.repeat, "queries": QUERIES,
            "summary": summary, "runs": raw, "s3fs_python": s3fs_py,
            "wall_s": time.time() - started}, indent=1))
        say(f"figures: {out}")
    finally:
        if bench is not None:
            bench.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
