"""Downloads through redirects against streamed downloads, side by side in one run.

    .venv/bin/python benchmarks/download_modes.py [--size-mib 256] [--random 200] [--repeat 3]

Starts two tilde-servers on loopback: one streaming object bytes itself (``--downloads
stream``, the default) and one answering as the hosted service does (``--wire current
--downloads redirect``: every GET is a 307 to an expiring signed URL, here on another origin,
http://localhost instead of http://127.0.0.1). Seeds the same file into both, then for each
mode and run mounts it fresh with a cold cache and measures:

- a cold sequential read of the whole file (``cat`` to /dev/null): MiB/s;
- ``--random`` cold 4 KiB reads at random offsets of another file: median latency;
- the daemon's own request counters (``tilde-mount status --json``): requests per MiB read
  and how many of them were redirects.

``--modes stream,redirect,redirect-same-origin`` adds a redirecting server whose signed URLs
are on the API's own origin. Prints medians of ``--repeat`` runs and each mode's ratio to
the first one; writes the
figures to benchmarks/results/download-modes-<time>.json. Never a timed test:
tests/test_benchmark_smoke.py only checks that it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mountbench import env as E

MiB = E.MiB
MODES = {
    "stream": ["--downloads", "stream"],
    "redirect": ["--wire", "current", "--downloads", "redirect",
                 "--signed-url-base", "http://localhost:{port}"],
    # the same, with signed URLs on the API's own origin (--modes to pick)
    "redirect-same-origin": ["--wire", "current", "--downloads", "redirect"],
}




def seed(endpoint: str, key: str, files: dict[str, Path]) -> None:
    import tilde

    client = tilde.Client(endpoint_url=endpoint, api_key=key)
    try:
        client.organizations.create(E.ORG, display_name=E.ORG)
        client.organization(E.ORG).repositories.create(E.REPO)
        repo = client.repository(f"{E.ORG}/{E.REPO}")
        with repo.session() as s:
            for name, local in files.items():
                s.objects.put(name, local)
            s.commit("benchmark data")
    finally:
        client.close()


def mount(root: Path, endpoint: str, key: str, mnt: Path, run: int) -> dict[str, str]:
    env = dict(os.environ, TILDE_API_KEY=key)
    cache = root / f"cache-{run}"
    mnt.mkdir(parents=True, exist_ok=True)
    E.force_unmount(mnt)
    exe = shutil.which("tilde-mount", path=str(E.BIN))
    base = [exe] if exe else [sys.executable, "-m", "tilde_mount"]
    r = subprocess.run([*base, "mount", f"{E.ORG}/{E.REPO}", str(mnt), "--endpoint", endpoint,
                        "--cache-dir", str(cache), "--read-only",
                        "--log-file", str(root / f"mount-{run}.log")],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"tilde-mount failed: {r.stdout}{r.stderr}")
    return env


def tm(*args: str) -> list[str]:
    exe = shutil.which("tilde-mount", path=str(E.BIN))
    return [*([exe] if exe else [sys.executable, "-m", "tilde_mount"]), *args]


def requests(mnt: Path, env: dict[str, str]) -> dict[str, int]:
    r = subprocess.run(tm("status", str(mnt), "--json"), capture_output=True, text=True,
                       env=env, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"tilde-mount status failed: {r.stderr}")
    st = json.loads(r.stdout)["requests"]
    return {**st.get("by_kind", {}), "total": st.get("total", 0),
            "redirect": st.get("redirects", 0)}


def unmount(mnt: Path, env: dict[str, str]) -> None:
    subprocess.run(tm("unmount", str(mnt)), capture_output=True, env=env, timeout=300)
    E.force_unmount(mnt)


def one_run(root: Path, endpoint: str, key: str, run: int, size: int, n_random: int,
            rnd_size: int) -> dict[str, Any]:
    mnt = root / "mnt"
    env = mount(root, endpoint, key, mnt, run)
    try:
        before = requests(mnt, env)
        t0 = time.perf_counter()
        subprocess.run(["cat", str(mnt / "big.bin")], stdout=subprocess.DEVNULL, check=True)
        seq_s = time.perf_counter() - t0
        after_seq = requests(mnt, env)
        rng = random.Random(run)
        lat = []
        with open(mnt / "random.bin", "rb", buffering=0) as f:
            for _ in range(n_random):
                off = rng.randrange(0, rnd_size - 4096) & ~4095
                t = time.perf_counter()
                os.pread(f.fileno(), 4096, off)
                lat.append(time.perf_counter() - t)
        after = requests(mnt, env)
    finally:
        unmount(mnt, env)
        shutil.rmtree(root / f"cache-{run}", ignore_errors=True)

    def delta(a: dict[str, int], b: dict[str, int], kinds: tuple[str, ...]) -> int:
        return sum(b.get(k, 0) - a.get(k, 0) for k in kinds)

    reads = ("read", "read_url")
    return {
        "seq_mib_s": size / MiB / seq_s,
        "seq_requests": delta(before, after_seq, reads),
        "seq_redirects": delta(before, after_seq, ("redirect",)),
        "random_ms": E.median(lat) * 1000,
        "random_requests": delta(after_seq, after, reads),
        "random_redirects": delta(after_seq, after, ("redirect",)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--random", type=int, default=200, help="cold 4 KiB reads per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--tmp", type=Path, default=None)
    ap.add_argument("--modes", default="stream,redirect",
                    help=f"comma-separated, the first is the ratios' base: {', '.join(MODES)}")
    a = ap.parse_args()
    modes = a.modes.split(",")
    if len(modes) < 2 or any(m not in MODES for m in modes):
        ap.error(f"--modes takes two or more of {', '.join(MODES)}")
    size, rnd_size = a.size_mib * MiB, 64 * MiB
    work = Path(tempfile.mkdtemp(prefix="tilde-download-modes-", dir=a.tmp))
    procs: list[E.Proc] = []
    try:
        files = {"big.bin": work / "big.bin", "random.bin": work / "random.bin"}
        for name, n in (("big.bin", size), ("random.bin", rnd_size)):
            with open(files[name], "wb") as f:
                for _ in range(n // MiB):
                    f.write(os.urandom(MiB))
        key = "tk-bench-" + secrets.token_hex(16)
        results: dict[str, list[dict[str, Any]]] = {}
        for mode in modes:
            root = work / mode
            root.mkdir()
            proc, endpoint = E.start_tilde_server(root, mode, key, MODES[mode])
            procs.append(proc)
            seed(endpoint, key, files)
            results[mode] = [one_run(root, endpoint, key, i, size, a.random, rnd_size)
                             for i in range(a.repeat)]
            proc.stop()
        print(f"download modes: {a.size_mib} MiB sequential, {a.random} random 4 KiB reads, "
              f"{a.repeat} run(s), medians")
        rows = [("cold seq read (MiB/s)", "seq_mib_s", "{:.0f}"),
                ("requests per MiB, seq", None, "{:.2f}"),
                ("redirects, seq", "seq_redirects", "{:.0f}"),
                ("random 4 KiB read (ms)", "random_ms", "{:.2f}"),
                ("requests per random read", None, "{:.2f}"),
                ("redirects, random", "random_redirects", "{:.0f}")]
        summary: dict[str, dict[str, float]] = {}
        for mode, runs in results.items():
            summary[mode] = {
                "seq_mib_s": E.median([r["seq_mib_s"] for r in runs]),
                "seq_requests_per_mib": E.median([r["seq_requests"] / a.size_mib for r in runs]),
                "seq_redirects": E.median([r["seq_redirects"] for r in runs]),
                "random_ms": E.median([r["random_ms"] for r in runs]),
                "random_requests_per_read": E.median([r["random_requests"] / a.random
                                                    for r in runs]),
                "random_redirects": E.median([r["random_redirects"] for r in runs]),
            }
        keys = ["seq_mib_s", "seq_requests_per_mib", "seq_redirects", "random_ms",
                "random_requests_per_read", "random_redirects"]
        base, others = modes[0], modes[1:]
        print(f"{'':28}" + "".join(f"{m:>22}" for m in modes))
        for (label, _, fmt), k in zip(rows, keys, strict=True):
            s = summary[base][k]
            cells = [fmt.format(s)] + [
                fmt.format(summary[m][k]) + (f" ({summary[m][k] / s:.2f}x)" if s else "")
                for m in others]
            print(f"{label:28}" + "".join(f"{c:>22}" for c in cells))
        a.results.mkdir(parents=True, exist_ok=True)
        out = a.results / f"download-modes-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"size_mib": a.size_mib, "random": a.random,
                                   "repeat": a.repeat, "runs": results,
                                   "medians": summary}, indent=2))
        print(f"results: {out}")
        return 0
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
