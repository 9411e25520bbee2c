"""Scale figures of the tilde-server store (not a test; prints numbers).

Shows the two design properties side by side in one run:
1. a commit of 10 changed paths costs the same in a repository of 1k objects as in one of
   2 x --big objects (--big default 1,000,000: a flat dir/ plus a 100-way tree/);
2. one listing page (100 entries, the client default) costs the same for a directory of 100
   objects as for one of --big objects, with and without delimiter, at head, inside a
   session and at an older commit.

The big repository is built with direct store calls (one bulk commit), not over HTTP.
`--backend postgresql` runs the same on a PostgreSQL 15 started on loopback
(tests/postgres.py); `--backend both` runs SQLite, then PostgreSQL, in one run.
Usage: .venv/bin/python benchmarks/server_scale.py [--big 1000000] [--repeat 5]
       [--backend sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tilde_server.store import Principal, Store


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time in milliseconds."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def build(store: Store, who: Principal, repo: str, flat: int, tree: int) -> str:
    """Repo with `flat` objects directly in dir/ and `tree` objects under tree/dNNNN/."""
    store.create_repo("bench", repo, {}, who)
    width = 100  # sub-directories of tree/

    def rows() -> Iterator[tuple[str, bytes]]:
        for i in range(flat):
            yield f"dir/f{i:08d}", b"x"
        for i in range(tree):
            yield f"tree/d{i % width:04d}/f{i:08d}", b"y"
    t0 = time.perf_counter()
    cid = store.bulk_load("bench", repo, rows(), "bulk load", who)
    print(f"  built {repo}: {flat + tree:,} objects in {time.perf_counter() - t0:.1f} s")
    return cid


def commit_10(store: Store, who: Principal, repo: str, round_: int) -> float:
    sid = store.create_session("bench", repo, who)
    for i in range(10):
        store.copy_object("bench", repo, sid, "dir/f00000001", f"new/r{round_}/p{i}")
    t0 = time.perf_counter()
    store.commit_session("bench", repo, sid, "ten paths", {}, who)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="sqlite")
    args = ap.parse_args()
    for backend in ("sqlite", "postgresql") if args.backend == "both" else (args.backend,):
        print(f"=== {backend}")
        with tempfile.TemporaryDirectory(prefix="tilde-bench-") as tmp:
            if backend == "sqlite":
                store, _ = Store.open(Path(tmp) / "data", "bench-key")
                run(store, args)
                continue
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from postgres import start_postgres

            with start_postgres(Path(tmp)) as pg:
                store, _ = Store.open(Path(tmp) / "data", "bench-key", database=pg.dsn,
                                      key_file=Path(tmp) / "keys.json")
                run(store, args)


def run(store: Store, args: argparse.Namespace) -> None:
    who = store.authenticate("bench-key")
    store.create_org("bench", "bench")
    print("building repositories ...")
    small_c1 = build(store, who, "small", 100, 900)
    big_c1 = build(store, who, "big", args.big, args.big)
    sizes = {"small": 1_000, "big": 2 * args.big}

    print("\n1. commit of 10 new paths (median ms; staging excluded)")
    for repo in ("small", "big"):
        times = [commit_10(store, who, repo, r) for r in range(args.repeat)]
        med = statistics.median(times)
        print(f"  {repo:5} repo ({sizes[repo]:>9,} objects): {med:7.2f} ms")

    print("\n2. one listing page of 100 entries (median ms)")
    print(f"  {'case':44} {'dir of 100':>11} {'dir of ' + format(args.big, ','):>16}")
    sid_small = store.create_session("bench", "small", who)
    sid_big = store.create_session("bench", "big", who)
    for repo, sid in (("small", sid_small), ("big", sid_big)):
        store.copy_object("bench", repo, sid, "dir/f00000001", "dir/f00000050x")
        store.delete_objects("bench", repo, sid, ["dir/f00000060"])
    mid_small, mid_big = "dir/f00000050", f"dir/f{args.big // 2:08d}"
    cases: list[tuple[str, dict[str, object], dict[str, object]]] = [
        ("head, first page", {}, {}),
        ("head, page from the middle", {"after": mid_small}, {"after": mid_big}),
        ("head, delimiter '/'", {"delimiter": "/"}, {"delimiter": "/"}),
        ("session (staged merge), first page", {"session": sid_small},
         {"session": sid_big}),
        ("session, delimiter '/'", {"session": sid_small, "delimiter": "/"},
         {"session": sid_big, "delimiter": "/"}),
        ("older commit (ref=), first page", {"ref": small_c1}, {"ref": big_c1}),
    ]
    for name, small_kw, big_kw in cases:
        out = []
        for repo, kw in (("small", small_kw), ("big", big_kw)):
            out.append(timed(lambda repo=repo, kw=kw: store.list_objects(
                "bench", repo, prefix="dir/", amount=100, **kw), args.repeat))
        print(f"  {name:44} {out[0]:9.2f}   {out[1]:12.2f}")
    tree_n = f"{args.big:,}"
    out = []
    for repo in ("small", "big"):
        out.append(timed(lambda repo=repo: store.list_objects(
            "bench", repo, prefix="tree/", delimiter="/", amount=100), args.repeat))
    print(f"  tree/ with delimiter, 100 sub-dirs holding 900 vs {tree_n} objects:\n"
          f"  {'':44} {out[0]:9.2f}   {out[1]:12.2f}")
    big_page = timed(lambda: store.list_objects("bench", "big", prefix="dir/", amount=1000),
                     args.repeat)
    print(f"\n  a full page of 1000 in the big dir: {big_page:.2f} ms")
    store.close()


if __name__ == "__main__":
    main()
