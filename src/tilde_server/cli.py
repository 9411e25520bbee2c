"""`tilde-server run --data DIR`: the embedded server in the foreground.

On first start with an empty DIR an admin user is created with the --admin-key (or
TILDE_SERVER_ADMIN_KEY) or a generated key. A generated key is printed once on stdout and, if
~/.tilde/config.yaml does not exist yet, written there (0600) with the endpoint, so the client
works at once. On a later start a different --admin-key is added as another key of the admin
(the stored keys keep working). Logs go to stderr; SIGINT/SIGTERM stop it cleanly.

One server per data directory: `run` takes an exclusive OS lock on DIR/tilde-server.lock for
its whole life (store/lock.py) and refuses to start when another process holds it. At start
it sweeps what a crash left behind (unreferenced blobs, stale spool files), then again every
--gc-interval seconds for files older than --gc-grace (engine subtlety 10); `tilde-server gc`
sweeps a stopped server's directory.

`--wire` picks the wire dialect (every official release at once, or one service era) and
`--downloads` how object bytes are served (docs/server.md, "Wire dialect and downloads").
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any

import click

from tilde_server import __version__
from tilde_server.location import Location, fail, location_options
from tilde_server.sandbox.cli import image_group, sandbox_options
from tilde_server.wire import DEFAULT_DOWNLOAD_URL_TTL, DOWNLOADS, WIRES, check_base_url

log = logging.getLogger("tilde_server")

#: query values that authorize by themselves (signed URLs): never written to a log
_SECRET_QUERY = re.compile(r"(?<=[?&])(token|upload_token|signature)=[^&\s]*")


class RedactSignedUrls(logging.Filter):
    """Blank the grants in the access log's request lines: a signed download URL is a read
    grant for as long as it lives, an upload signature or token a write grant."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET_QUERY.sub(r"\1=REDACTED", a) if isinstance(a, str)
                                else a for a in record.args)
        return True


def _endpoint(host: str, port: int) -> str:
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def write_client_config(api_key: str, endpoint: str) -> Path | None:
    """Write ~/.tilde/config.yaml (0600, dir 0700) unless it exists; returns its path."""
    import yaml

    cfg_dir = Path.home() / ".tilde"
    cfg = cfg_dir / "config.yaml"
    if cfg.exists():
        return None
    cfg_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(cfg_dir, 0o700)
    text = yaml.safe_dump({"api_key": api_key, "endpoint_url": endpoint}, sort_keys=False)
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return cfg


def _base_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        return check_base_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown (exit status 1 or death
        by signal); a stop by signal is the normal way to end this server, so exit 0 instead."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[no-untyped-def]
            with super().capture_signals():
                yield
                captured = getattr(self, "_captured_signals", None)
                if captured:
                    log.info("stopping on signal %s", ", ".join(str(s) for s in captured))
                    captured.clear()

    return Server


@click.group()
@click.version_option(__version__, prog_name="tilde-server")
def main() -> None:
    """The embedded Tilde server: the Tilde HTTP API on one machine."""


@main.command()
@location_options(data_help="Data directory (created if missing; must be empty or a "
                            "tilde-server dir); beside --database, this process's scratch.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--admin-key", envvar="TILDE_SERVER_ADMIN_KEY", default=None,
              help="Admin API key (env TILDE_SERVER_ADMIN_KEY: prefer it, a command line "
                   "is visible to every local user in ps). Generated on first start if not "
                   "given.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@sandbox_options
@click.option("--connector-root", "connector_roots", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="TILDE_SERVER_CONNECTOR_ROOTS",
              help="Directory under which `local` connectors may read (repeatable; env "
                   "TILDE_SERVER_CONNECTOR_ROOTS, ':'-separated). None: local connectors "
                   "are refused.")
@click.option("--s3-endpoint", envvar="TILDE_SERVER_S3_ENDPOINT", default=None,
              help="S3 endpoint URL for s3 connectors whose config names none (env "
                   "TILDE_SERVER_S3_ENDPOINT). Default: AWS / the AWS_ENDPOINT_URL variable. "
                   "The --blobs bucket has its own --blobs-s3-endpoint.")
@click.option("--s3-ambient-credentials/--no-s3-ambient-credentials", default=False,
              envvar="TILDE_SERVER_S3_AMBIENT_CREDENTIALS",
              help="Let s3 connectors without access keys use this server's own AWS "
                   "credentials (environment, ~/.aws). Off by default.")
@click.option("--wire", type=click.Choice(WIRES), default="all", show_default=True,
              envvar="TILDE_SERVER_WIRE",
              help="Wire dialect. all: every official client release 0.7.2-0.7.9 at once "
                   "(both upload flows, both multipart dialects). current: only what today's "
                   "hosted service serves (openapi-current.yaml; the 0.7.2-0.7.6 upload "
                   "routes answer 405, the batch upload extension 404). legacy: only the "
                   "0.7.4-era protocol (openapi.yaml; the 0.7.7+ upload routes answer 405).")
@click.option("--downloads", type=click.Choice(DOWNLOADS), default="stream",
              show_default=True, envvar="TILDE_SERVER_DOWNLOADS",
              help="How GET .../object serves bytes. stream: in the response itself "
                   "(presign is ignored); the default, because every release reads it without "
                   "User-Agent sniffing and a read costs one request. redirect: 307 to a "
                   "signed, expiring URL on this server, as the hosted service redirects to "
                   "storage (with --wire current every GET; otherwise presign=true, or no "
                   "presign from any caller but tilde-python-sdk < 0.7.7, which cannot "
                   "follow a redirect then). HEAD never redirects.")
@click.option("--download-url-ttl", type=click.IntRange(1, 7 * 86400),
              default=DEFAULT_DOWNLOAD_URL_TTL, show_default=True, metavar="SECONDS",
              envvar="TILDE_SERVER_DOWNLOAD_URL_TTL",
              help="Lifetime of a signed download URL (--downloads redirect).")
@click.option("--signed-url-base", default=None, callback=_base_url, metavar="URL",
              envvar="TILDE_SERVER_SIGNED_URL_BASE",
              help="scheme://host[:port][/prefix] that signed upload, part and download URLs "
                   "are built on (e.g. the address clients reach this server by behind a "
                   "proxy, which must forward /_tilde/... under that prefix). "
                   "Default: the base URL of the request that asks for one.")
@click.option("--gc-interval", type=click.IntRange(0, None), default=3600, show_default=True,
              metavar="SECONDS", envvar="TILDE_SERVER_GC_INTERVAL",
              help="How often the running server sweeps unreferenced blobs and stale upload "
                   "files (0: only at startup).")
@click.option("--gc-grace", type=click.IntRange(60, None), default=3600, show_default=True,
              metavar="SECONDS", envvar="TILDE_SERVER_GC_GRACE",
              help="A periodic sweep leaves files modified in the last SECONDS alone.")
def run(where: Location, host: str, port: int, admin_key: str | None, log_level: str,
        connector_roots: tuple[Path, ...], s3_endpoint: str | None,
        s3_ambient_credentials: bool, wire: str,
        downloads: str, download_url_ttl: int,
        signed_url_base: str | None, gc_interval: int, gc_grace: int) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from tilde_server import crashpoints
    from tilde_server.app import build_app
    from tilde_server.store.sources import SourceSettings, networks_from_env
    from tilde_server.wire import WireOptions

    try:  # operator settings from the environment: a bad one is one line, exit 2
        crashpoints.check()
        allow_networks = networks_from_env()
    except ValueError as exc:
        click.echo(f"tilde-server: error: {exc}", err=True)
        sys.exit(2)
    lock, store, generated = _open_owned(where, admin_key or None)
    store.connectors.settings = SourceSettings(
        connector_roots=tuple(p.resolve() for p in connector_roots),
        s3_endpoint=s3_endpoint or None, s3_ambient_credentials=s3_ambient_credentials,
        allow_networks=allow_networks)
    ttl = os.environ.get("TILDE_SERVER_UPLOAD_TTL")
    if ttl:
        store.upload_ttl = store.multipart_ttl = int(ttl)
    lease = os.environ.get("TILDE_SERVER_IMPORT_LEASE")  # seconds (tests shorten it)
    if lease:
        store.imports.lease = float(lease)
    store.imports.start_keeper()
    endpoint = _endpoint(host, port)
    if generated:
        click.echo(f"tilde-server: created admin API key (shown once): {generated}")
        written = write_client_config(generated, endpoint)
        if written:
            click.echo(f"tilde-server: wrote {written} (api_key, endpoint_url)")
    log.info("tilde-server %s: data %s%s, listening on %s (wire %s, downloads %s)",
             __version__, where.data_dir,
             f", database {store.db.description}" if where.database else "",
             endpoint, wire, downloads)
    from tilde_server.sandbox import cli as sandbox_cli

    app = build_app(store, wire=WireOptions(wire, downloads, download_url_ttl, signed_url_base))
    sandboxes = sandbox_cli.start(app, store, endpoint)
    logging.getLogger("uvicorn.access").addFilter(RedactSignedUrls())
    config = uvicorn.Config(app, host=host, port=port, log_config=None,
                            log_level=log_level, timeout_graceful_shutdown=10,
                            server_header=False)
    sweeper = _Sweeper(store, gc_interval, gc_grace)
    try:
        _server_class()(config).run()
    finally:
        sweeper.stop()
        sandbox_cli.stop(sandboxes)
        store.close()
        lock.release()
        log.info("tilde-server stopped")


def _open_owned(where: Location, admin_key: str | None) -> tuple[Any, Any, str | None]:
    """Lock DIR (exit 2 naming the holder when another process has it), then open it as its
    owner: recovery and the startup sweep run. Returns (lock, store, generated key)."""
    from tilde_server.store import DataDirError, Store
    from tilde_server.store.lock import DataDirLock

    data_dir, database = where.data_dir.expanduser(), where.database
    try:
        Store.check_root(data_dir, database)
        lock = DataDirLock.acquire(data_dir)
    except DataDirError as exc:
        click.echo(f"tilde-server: error: {exc}", err=True)
        sys.exit(2)
    try:
        store, generated = Store.open(data_dir, admin_key, database=database,
                                      key_file=where.key_file, blobs=where.blobs,
                                      s3=where.s3())
    except DataDirError as exc:
        lock.release()
        click.echo(f"tilde-server: error: {exc}", err=True)
        sys.exit(2)
    return lock, store, generated


class _Sweeper:
    """The periodic sweep of a running server, in a daemon thread (sweeps block)."""

    def __init__(self, store: Any, interval: int, grace: int) -> None:
        self._store, self._interval, self._grace = store, interval, grace
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if interval > 0:
            self._thread = threading.Thread(target=self._loop, name="tilde-sweep", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                r = self._store.sweep(self._grace)
            except Exception:
                log.exception("periodic sweep failed")
                continue
            if r.blobs or r.spool_files or r.expired_uploads:
                log.info("sweep: removed %d unreferenced blob(s), %d spool file(s), "
                         "%d expired upload(s)", r.blobs, r.spool_files, r.expired_uploads)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


def _open_identity(where: Location):  # type: ignore[no-untyped-def]
    """Open the deployment for a maintenance command; safe while the server runs (SQLite
    WAL, or PostgreSQL), so it neither takes the lock nor recovers (that is the server's)."""
    from tilde_server.store.identity import Identity

    store = where.open_beside_server()
    return store, Identity(store)


def _fail(exc: Exception) -> None:
    click.echo(f"tilde-server: error: {getattr(exc, 'message', exc)}", err=True)
    sys.exit(1)


@main.command()
@click.option("--from", "source", required=True, type=click.Path(path_type=Path),
              help="The embedded deployment's data directory (its server stopped).")
@location_options(data_help="The target's scratch directory (the first process's --data): "
                            "sandbox logs are copied there.")
def migrate(source: Path, where: Location) -> None:
    """Copy an embedded deployment to PostgreSQL (--database) and a shared blob directory
    or bucket (--blobs), keys into --secret-key-file, then verify counts and checksums."""
    from tilde_server.migrate import migrate as run_migration
    from tilde_server.store import DataDirError

    if not where.database or not where.key_file or not where.blobs:
        fail("migrate needs --database, --secret-key-file and --blobs (the target)")
    assert where.database and where.key_file and where.blobs
    try:
        report = run_migration(source, where.data_dir, where.database, where.key_file,
                               where.blobs, where.s3())
    except DataDirError as exc:
        fail(str(exc))
    rows = sum(report.tables.values())
    click.echo(f"copied {rows} row(s) in {len(report.tables)} table(s), {report.blobs} "
               f"blob(s) ({report.blob_bytes} bytes), {report.logs} sandbox log dir(s)")
    if report.problems:
        for p in report.problems:
            click.echo(f"tilde-server: verify: {p}", err=True)
        sys.exit(1)
    click.echo("verified: every table's row count and every blob's sha256 match")


@main.command()
@location_options
def gc(where: Location) -> None:
    """Sweep a stopped server's DIR now: unreferenced blobs, stale spool files, expired
    uploads (refused while a server runs; a running server sweeps by itself)."""
    if not where.database and not (where.data_dir / "tilde.db").exists():
        fail(f"{where.data_dir} is not a tilde-server data directory")
    lock, store, _ = _open_owned(where, None)
    try:
        r = store.startup_sweep
        click.echo(f"removed {r.blobs} unreferenced blob(s), {r.spool_files} spool file(s), "
                   f"{r.expired_uploads} expired upload(s)")
    finally:
        store.close()
        lock.release()


@main.group()
def user() -> None:
    """Manage users (works while the server runs)."""


@user.command("add")
@location_options
@click.argument("name")
@click.option("--admin", is_flag=True, help="A server admin: allowed everything everywhere.")
def user_add(where: Location, name: str, admin: bool) -> None:
    """Add user NAME and print its API key (shown once)."""
    from tilde_server.store import StoreError

    store, ident = _open_identity(where)
    try:
        info, key = ident.add_user(name, admin=admin)
    except StoreError as exc:
        _fail(exc)
    finally:
        store.close()
    click.echo(f"user {info['username']} (id {info['id']}){' [server admin]' if admin else ''}")
    click.echo(f"API key (shown once): {key}")


@user.command("list")
@location_options
def user_list(where: Location) -> None:
    """List users: id, name, server admin or not, live key count."""
    store, ident = _open_identity(where)
    try:
        for u in ident.list_users():
            flag = "admin" if u["admin"] else "-"
            click.echo(f"{u['id']}  {u['username']}  {flag}  keys={u['keys']}")
    finally:
        store.close()


@user.command("remove")
@location_options
@click.argument("name")
def user_remove(where: Location, name: str) -> None:
    """Remove user NAME with its keys, memberships and attachments (effective at once)."""
    from tilde_server.store import StoreError

    store, ident = _open_identity(where)
    try:
        ident.remove_user(name)
    except StoreError as exc:
        _fail(exc)
    finally:
        store.close()
    click.echo(f"removed user {name}")


def _decide(where: Location, repo_path: str, session_id: str, approve: bool) -> None:
    from tilde_server.store import Principal, StoreError

    org, sep, repo = repo_path.partition("/")
    if not sep or not org or not repo:
        click.echo("tilde-server: error: give the repository as ORG/REPO", err=True)
        sys.exit(2)
    store, ident = _open_identity(where)
    operator = Principal("cli", "tilde-server-cli", "user", None, True)
    try:
        if approve:
            click.echo(f"approved: commit {ident.approve(org, repo, session_id, operator)}")
        else:
            ident.reject(org, repo, session_id, operator)
            click.echo(f"rejected: session {session_id} rolled back")
    except StoreError as exc:
        _fail(exc)
    finally:
        store.close()


@main.command()
@location_options
@click.argument("repo_path", metavar="ORG/REPO")
@click.argument("session_id")
def approve(where: Location, repo_path: str, session_id: str) -> None:
    """Approve a commit waiting for approval: apply it now (fails on a conflict)."""
    _decide(where, repo_path, session_id, True)


@main.command()
@location_options
@click.argument("repo_path", metavar="ORG/REPO")
@click.argument("session_id")
def reject(where: Location, repo_path: str, session_id: str) -> None:
    """Reject a commit waiting for approval: roll its session back."""
    _decide(where, repo_path, session_id, False)


main.add_command(image_group)
