"""Where a deployment's state is, for `run` and the maintenance commands (user, image,
approve, gc): `--data DIR` and, when the metadata is in PostgreSQL, `--database URL` (env
TILDE_SERVER_DATABASE), `--secret-key-file FILE` (env TILDE_SERVER_SECRET_KEY_FILE) and
`--blobs DIR|s3://BUCKET[/PREFIX]` (env TILDE_SERVER_BLOBS) with `--blobs-s3-endpoint`,
`--blobs-s3-region` and `--blobs-s3-profile` for a bucket, the same ones the server was
started with."""

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
    blobs_s3_endpoint: str | None = None
    blobs_s3_region: str | None = None
    blobs_s3_profile: str | None = None

    def s3(self) -> Any:
        """The bucket's S3Options (None: the AWS defaults)."""
        from tilde_server.store.s3blobs import S3Options

        return S3Options(self.blobs_s3_endpoint, self.blobs_s3_region, self.blobs_s3_profile)

    def open_beside_server(self) -> Any:
        """The store, opened as a maintenance command may while a server runs (no lock, no
        recovery: those are the server's); exit 2 with one line if it is not there."""
        from tilde_server.store import DataDirError, Store

        if not self.database and not (self.data_dir / DB_FILE).exists():
            fail(f"{self.data_dir} is not a tilde-server data directory (start "
                 "`tilde-server run --data DIR` once first)")
        try:
            store, _ = Store.open(self.data_dir, None, recover=False, database=self.database,
                                  key_file=self.key_file, blobs=self.blobs, s3=self.s3())
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
                         kwargs.pop("key_file") or None, kwargs.pop("blobs") or None,
                         kwargs.pop("blobs_s3_endpoint") or None,
                         kwargs.pop("blobs_s3_region") or None,
                         kwargs.pop("blobs_s3_profile") or None)
        return fn(*args, where=where, **kwargs)

    wrapper = click.option(
        "--blobs-s3-profile", default=None, envvar="TILDE_SERVER_BLOBS_S3_PROFILE",
        metavar="NAME",
        help="AWS profile (~/.aws/credentials, AWS_SHARED_CREDENTIALS_FILE) with the --blobs "
             "bucket's credentials (env TILDE_SERVER_BLOBS_S3_PROFILE). Default: the "
             "standard AWS chain (environment, ~/.aws, instance role)."
    )(wrapper)
    wrapper = click.option(
        "--blobs-s3-region", default=None, envvar="TILDE_SERVER_BLOBS_S3_REGION",
        metavar="REGION",
        help="Region of the --blobs bucket (env TILDE_SERVER_BLOBS_S3_REGION). Default: the "
             "AWS configuration's."
    )(wrapper)
    wrapper = click.option(
        "--blobs-s3-endpoint", default=None, envvar="TILDE_SERVER_BLOBS_S3_ENDPOINT",
        metavar="URL",
        help="S3 endpoint of the --blobs bucket when it is not AWS (env "
             "TILDE_SERVER_BLOBS_S3_ENDPOINT). Not the connectors' --s3-endpoint: the "
             "deployment's own storage and its users' sources are configured apart."
    )(wrapper)
    wrapper = click.option(
        "--blobs", default=None, envvar="TILDE_SERVER_BLOBS", metavar="DIR|s3://BUCKET",
        help="With --database: where the blobs of the deployment are, shared by every "
             "process: an absolute directory, or s3://BUCKET[/PREFIX] (clients then upload "
             "and download through presigned URLs of the bucket; env TILDE_SERVER_BLOBS). "
             "Default: this process's own, in --data."
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
