"""Where a deployment's state is, for the maintenance commands (user, image, approve, gc):
`--data DIR` and, when the metadata is in PostgreSQL, `--database URL` (env
TILDE_SERVER_DATABASE), the same two the server was started with."""

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

    def open_beside_server(self) -> Any:
        """The store, opened as a maintenance command may while a server runs (no lock, no
        recovery: those are the server's); exit 2 with one line if it is not there."""
        from tilde_server.store import DataDirError, Store

        if not self.database and not (self.data_dir / DB_FILE).exists():
            fail(f"{self.data_dir} is not a tilde-server data directory (start "
                 "`tilde-server run --data DIR` once first)")
        try:
            store, _ = Store.open(self.data_dir, None, recover=False, database=self.database)
        except DataDirError as exc:
            fail(str(exc))
        return store


def fail(message: str, status: int = 2) -> None:
    click.echo(f"tilde-server: error: {message}", err=True)
    sys.exit(status)


def location_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`--data` and `--database`, given to the command as one `where: Location`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        where = Location(kwargs.pop("data_dir"), kwargs.pop("database") or None)
        return fn(*args, where=where, **kwargs)

    wrapper = click.option(
        "--database", default=None, envvar="TILDE_SERVER_DATABASE", metavar="URL",
        help="The server's PostgreSQL database, if it has one (env TILDE_SERVER_DATABASE)."
    )(wrapper)
    return click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
                        help="Data directory of the server.")(wrapper)
