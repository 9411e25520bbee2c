"""`tilde-server run --data DIR`: the embedded server in the foreground.

On first start with an empty DIR an admin user is created with the --admin-key (or
TILDE_SERVER_ADMIN_KEY) or a generated key. A generated key is printed once on stdout and, if
~/.tilde/config.yaml does not exist yet, written there (0600) with the endpoint, so the client
works at once. On a later start a different --admin-key is added as another key of the admin
(the stored keys keep working). Logs go to stderr; SIGINT/SIGTERM stop it cleanly.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path

import click

from tilde_server import __version__
from tilde_server.sandbox.cli import image_group, sandbox_options

log = logging.getLogger("tilde_server")


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
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Data directory (created if missing; must be empty or a tilde-server dir).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--admin-key", envvar="TILDE_SERVER_ADMIN_KEY", default=None,
              help="Admin API key (env TILDE_SERVER_ADMIN_KEY). Generated on first start "
                   "if not given.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@sandbox_options
def run(data_dir: Path, host: str, port: int, admin_key: str | None, log_level: str) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM."""
    logging.basicConfig(stream=sys.stderr, level=getattr(logging, log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    from tilde_server.app import build_app
    from tilde_server.store import DataDirError, Store

    try:
        store, generated = Store.open(data_dir, admin_key or None)
    except DataDirError as exc:
        click.echo(f"tilde-server: error: {exc}", err=True)
        sys.exit(2)
    ttl = os.environ.get("TILDE_SERVER_UPLOAD_TTL")
    if ttl:
        store.upload_ttl = store.multipart_ttl = int(ttl)
    endpoint = _endpoint(host, port)
    if generated:
        click.echo(f"tilde-server: created admin API key (shown once): {generated}")
        written = write_client_config(generated, endpoint)
        if written:
            click.echo(f"tilde-server: wrote {written} (api_key, endpoint_url)")
    log.info("tilde-server %s: data %s, listening on %s", __version__, data_dir, endpoint)
    from tilde_server.sandbox import cli as sandbox_cli

    app = build_app(store)
    sandboxes = sandbox_cli.start(app, store, endpoint)
    config = uvicorn.Config(app, host=host, port=port, log_config=None,
                            log_level=log_level, timeout_graceful_shutdown=10,
                            server_header=False)
    try:
        _server_class()(config).run()
    finally:
        sandbox_cli.stop(sandboxes)
        store.close()
        log.info("tilde-server stopped")


main.add_command(image_group)
