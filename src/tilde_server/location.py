"""Where a deployment's state is, for `run` and the maintenance commands (user, image,
approve, gc): `--data DIR` and, when the metadata is in PostgreSQL, `--database URL` (env
TILDE_SERVER_DATABASE), `--secret-key-file FILE` (env TILDE_SERVER_SECRET_KEY_FILE) and
`--blobs DIR` (env TILDE_SERVER_BLOBS), the same ones the server was started with."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

DB_FILE = "tilde.db"  # store.engine.DB_FILE, without importing the store for --help


@dataclass(frozen=True)
class Location:
    data_dir: Path
    database: str | None = None
    key_file: Path | None = None
    blobs: str | None = None

    def open_beside_server(self) -> Any:
        """The store, opened as a maintenance command may while a server runs (no lock, no
        recovery: those are the server's); exit 2 with one line if it is not there."""
        from tilde_server.store import DataDirError, Store

        if not self.database and not (self.data_dir / DB_FILE).exists():
            fail(f"{self.data_dir} is not a tilde-server data directory (start "
                 "`tilde-server run --data DIR` once first)")
        try:
            store, _ = Store.open(self.data_dir, None, recover=False, database=self.database,
                                  key_file=self.key_file, blobs=self.blobs)
        except DataDirError as exc:
            fail(str(exc))
        return store


def fail(message: str, status: int = 2) -> None:
    click.echo(f"tilde-server: error: {message}", err=True)
    sys.exit(status)


def location_options(fn: Callable[..., Any] | None = None, *,
                     data_help: str = "Data directory of the server.") -> Any:
    """`--data`, `--database` and `--secret-key-file`, given to the command as one
    `where: Location`. Bare (`@location_options`) or with another `data_help`."""
    if fn is None:
        return functools.partial(location_options, data_help=data_help)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        where = Location(kwargs.pop("data_dir"), kwargs.pop("database") or None,
                         kwargs.pop("key_file") or None, kwargs.pop("blobs") or None)
        return fn(*args, where=where, **kwargs)

    wrapper = click.option(
        "--blobs", default=None, envvar="TILDE_SERVER_BLOBS", metavar="DIR",
        help="With --database: the blob directory every process of the deployment shares "
             "(absolute; env TILDE_SERVER_BLOBS). Default: this process's own, in --data."
    )(wrapper)
    wrapper = click.option(
        "--secret-key-file", "key_file", default=None, envvar="TILDE_SERVER_SECRET_KEY_FILE",
        type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
        help="With --database: the keys every process of the deployment shares (API key "
             "HMAC, URL signing, secrets encryption), JSON, 0600; created on first start "
             "when missing (env TILDE_SERVER_SECRET_KEY_FILE)."
    )(wrapper)
    wrapper = click.option(
        "--database", default=None, envvar="TILDE_SERVER_DATABASE", metavar="URL",
        help="Keep the metadata in PostgreSQL: postgresql://USER:PASSWORD@HOST:PORT/DB "
             "(env TILDE_SERVER_DATABASE: prefer it, the URL holds a password). Several "
             "servers may share one database (docs/deploy.md); --data is then this "
             "process's own blobs and scratch. Default: SQLite in --data."
    )(wrapper)
    return click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
                        help=data_help)(wrapper)
