"""The sandbox parts of the `tilde-server` command line: options of `run` and `image ...`.

`sandbox_options` adds the `run` options without changing the signature of `run`: it pops
them into `SETTINGS`, which `start(app, store, endpoint)` reads.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

SETTINGS: dict[str, Any] = {}
_KEYS = ("sandbox_network", "sandbox_max_procs", "sandbox_max_file_size",
         "sandbox_max_memory")


def sandbox_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for k in _KEYS:
            SETTINGS[k] = kwargs.pop(k, None)
        return fn(*args, **kwargs)

    opts = [
        click.option("--sandbox-network/--no-sandbox-network", default=False,
                     envvar="TILDE_SERVER_SANDBOX_NETWORK",
                     help="Give sandboxes the host's network (off by default: a private "
                          "network namespace with loopback only)."),
        click.option("--sandbox-max-procs", type=click.IntRange(16), default=1024,
                     show_default=True, help="RLIMIT_NPROC of sandboxes (root server only)."),
        click.option("--sandbox-max-file-size", type=click.IntRange(1), default=16 * 1024**3,
                     show_default=True, help="RLIMIT_FSIZE of sandbox processes, in bytes."),
        click.option("--sandbox-max-memory", type=click.IntRange(64 * 1024**2),
                     default=16 * 1024**3, show_default=True,
                     help="RLIMIT_AS (address space) of sandbox processes, in bytes."),
    ]
    out: Callable[..., Any] = wrapper
    for o in opts:
        out = o(out)
    return out


def start(app: Any, store: Any, endpoint: str) -> Any:
    """Wire sandboxes into the app; returns the manager (stop it with `stop`)."""
    from tilde_server.sandbox import Limits, setup

    limits = Limits(nproc=SETTINGS.get("sandbox_max_procs") or 1024,
                    fsize=SETTINGS.get("sandbox_max_file_size") or 16 * 1024**3,
                    address_space=SETTINGS.get("sandbox_max_memory") or 16 * 1024**3)
    return setup(app, store, endpoint, network=bool(SETTINGS.get("sandbox_network")),
                 limits=limits)


def stop(manager: Any) -> None:
    if manager is not None:
        manager.shutdown()


def _open(data_dir: Path) -> Any:
    from tilde_server.sandbox import records
    from tilde_server.store import DataDirError, Store

    if not (data_dir / "tilde.db").exists():
        click.echo(f"tilde-server: error: {data_dir} is not a tilde-server data directory",
                   err=True)
        sys.exit(2)
    try:
        store, _ = Store.open(data_dir, None, recover=False)  # beside a running server
    except DataDirError as exc:
        click.echo(f"tilde-server: error: {exc}", err=True)
        sys.exit(2)
    records.ensure_schema(store.db)
    return store


_DATA = click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
                     help="Data directory of the server.")


@click.group("image")
def image_group() -> None:
    """Sandbox images: root file system directories (works while the server runs)."""


@image_group.command("add")
@_DATA
@click.argument("name")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
def image_add(data_dir: Path, name: str, root: Path) -> None:
    """Register ROOT (a root file system, e.g. a debootstrap tree) as image NAME."""
    from tilde_server.sandbox import images, records

    if not name.strip() or name == images.HOST or len(name) > 200:
        click.echo(f"tilde-server: error: {name!r} cannot be used as an image name", err=True)
        sys.exit(2)
    try:
        real = images.check_root(str(root))
    except ValueError as exc:
        click.echo(f"tilde-server: error: {exc}", err=True)
        sys.exit(2)
    store = _open(data_dir)
    try:
        records.put_image(store.db, name, real)
    finally:
        store.close()
    click.echo(f"image {name} -> {real}")


@image_group.command("list")
@_DATA
def image_list(data_dir: Path) -> None:
    """Registered images, the built-in `host` and the alias table."""
    from tilde_server.sandbox import images, records

    store = _open(data_dir)
    try:
        rows = records.list_images(store.db)
    finally:
        store.close()
    click.echo(f"{images.HOST}\t/ (built-in: the host's system directories, read-only)")
    for name, root in rows:
        click.echo(f"{name}\t{root}")
    registered = {n for n, _ in rows}
    for alias, target in sorted(images.ALIASES.items()):
        if alias not in registered:
            click.echo(f"{alias}\t-> {target} (alias)")


@image_group.command("remove")
@_DATA
@click.argument("name")
def image_remove(data_dir: Path, name: str) -> None:
    """Forget image NAME (its directory is left alone)."""
    from tilde_server.sandbox import records

    store = _open(data_dir)
    try:
        removed = records.remove_image(store.db, name)
    finally:
        store.close()
    if not removed:
        click.echo(f"tilde-server: error: no image named {name!r}", err=True)
        sys.exit(1)
    click.echo(f"removed image {name}")
