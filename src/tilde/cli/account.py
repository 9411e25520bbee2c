"""``tilde auth``, ``tilde org`` and ``tilde repo``: who you are and what exists.

``auth login`` checks a key before it saves it and writes the config file the way a file
holding a secret must be written: a new 0600 file in a 0700 directory, flushed, then
renamed over the old one, so a crash leaves either the old file or the new one, and no
other user ever can read it. Other keys already in the file are kept.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
import yaml

from .. import _config, _wire
from ..exceptions import AuthenticationError, NotFoundError
from ._common import (
    EXIT_AUTH,
    CLIError,
    emit_json,
    emit_table,
    mask,
    run_command,
    split_repo,
    state,
    usage_error,
)

JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


# --- auth ----------------------------------------------------------------------------------

def _identity(client: Any) -> dict[str, Any]:
    """``/auth/me``, or, on servers without it, proof that the key works at all."""
    try:
        me = client._call(_wire.current_user())
        if isinstance(me, dict) and isinstance(me.get("user"), dict):
            return me
    except NotFoundError:
        pass
    body = client._call(_wire.list_organizations())
    orgs = body.get("results", []) if isinstance(body, dict) else []
    return {"user": None, "organizations": [o for o in orgs if isinstance(o, dict)]}


def write_config(path: Path, updates: dict[str, str]) -> None:
    """Merge ``updates`` into the YAML config at ``path``, atomically, mode 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    with contextlib.suppress(OSError, yaml.YAMLError, UnicodeDecodeError):
        loaded = yaml.safe_load(path.read_text("utf-8"))
        if isinstance(loaded, dict):
            data = loaded
    data.update(updates)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:  # mkstemp: already 0600
            yaml.safe_dump(data, f, default_flow_style=False, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _read_key() -> str:
    if sys.stdin.isatty():
        key: str = click.prompt("API key", hide_input=True, err=True)
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        raise usage_error("no API key given (type it at the prompt or pipe it in)")
    return key


@click.group()
def auth() -> None:
    """Log in, show who you are, log out."""


@auth.command()
@click.option("--endpoint-url", "endpoint", metavar="URL",
              help="The endpoint to log in to (default: as resolved without it).")
def login(endpoint: str | None) -> None:
    """Check an API key and save it to ~/.tilde/config.yaml (mode 0600).

    The key is read from the terminal without echo, or one line from standard input.
    """
    def body() -> None:
        from .._client import Client

        st = state()
        url = endpoint or st.endpoint_flag or _config.resolve().endpoint_url
        key = st.key_flag or _read_key()
        with Client(endpoint_url=url, api_key=key, extra_user_agent="tilde-cli") as client:
            try:
                me = _identity(client)
            except AuthenticationError:
                raise CLIError(f"{url} refused the key {mask(key)}; nothing was saved",
                               EXIT_AUTH) from None
        path = _config.config_file_path()
        write_config(path, {"api_key": key, "endpoint_url": url})
        who = me["user"]["username"] if me.get("user") else "the key's owner"
        click.echo(f"tilde: logged in to {url} as {who}; saved to {path}", err=True)
    run_command(body)


def _sources(st: Any) -> tuple[str, str]:
    """Where the endpoint and the key in use come from."""
    file = _config.read_config_file()
    if st.endpoint_flag:
        ep = "--endpoint-url"
    elif os.environ.get("TILDE_ENDPOINT_URL"):
        ep = "TILDE_ENDPOINT_URL"
    elif os.environ.get("TILDE_API_URL"):
        ep = "TILDE_API_URL"
    elif file.get("endpoint_url"):
        ep = "config file"
    else:
        ep = "default"
    if st.key_flag:
        key = "--api-key"
    elif os.environ.get("TILDE_API_KEY"):
        key = "TILDE_API_KEY"
    elif file.get("api_key"):
        key = "config file"
    elif os.environ.get("TILDE_SANDBOX_CREDENTIALS_URI"):
        key = "sandbox credentials"
    else:
        key = "none"
    return ep, key


@auth.command()
@JSON
def status(as_json: bool) -> None:
    """Show the endpoint, the key (masked) and who it belongs to; exit 4 if not logged in."""
    def body() -> None:
        st = state()
        s = st.settings()
        ep_src, key_src = _sources(st)
        out: dict[str, Any] = {"endpoint_url": s.endpoint_url, "endpoint_source": ep_src,
                               "key": mask(s.api_key) if s.api_key else None,
                               "key_source": key_src}
        me = _identity(st.client())
        user = me.get("user")
        out["identity"] = ({"name": user.get("username"), "type": user.get("source") or "user"}
                           if user else None)
        out["organizations"] = [o.get("name") for o in me.get("organizations", [])]
        if as_json:
            emit_json(out)
            return
        who = (f"{out['identity']['name']} ({out['identity']['type']})" if user
               else "accepted (this server does not say whose it is)")
        emit_table([("endpoint", f"{s.endpoint_url} ({ep_src})"),
                    ("key", f"{out['key']} ({key_src})"), ("identity", who),
                    ("organizations", ", ".join(out["organizations"]) or "(none)")])
    run_command(body)


@auth.command()
def logout() -> None:
    """Remove ~/.tilde/config.yaml (keys in the environment stay in effect)."""
    path = _config.config_file_path()
    try:
        path.unlink()
    except FileNotFoundError:
        click.echo(f"tilde: {path} does not exist; nothing to do", err=True)
        return
    click.echo(f"tilde: removed {path}", err=True)
    if os.environ.get("TILDE_API_KEY"):
        click.echo("tilde: TILDE_API_KEY is still set in this environment", err=True)


# --- organizations -------------------------------------------------------------------------

def _org_json(o: Any) -> dict[str, Any]:
    return {"id": o.id, "name": o.name, "display_name": o.display_name,
            "created_at": o.created_at.isoformat() if o.created_at else None}


@click.group()
def org() -> None:
    """Create and list organizations."""


@org.command("create")
@click.argument("name")
@click.option("--display-name", default=None, help="Human-readable name (default: NAME).")
@JSON
def org_create(name: str, display_name: str | None, as_json: bool) -> None:
    """Create an organization; you become its owner."""
    def body() -> None:
        created = state().client().organizations.create(name, display_name or name)
        emit_json(_org_json(created)) if as_json else click.echo(created.name)
    run_command(body)


@org.command("list")
@JSON
def org_list(as_json: bool) -> None:
    """The organizations your key can see."""
    def body() -> None:
        orgs = list(state().client().organizations.list())
        if as_json:
            emit_json([_org_json(o) for o in orgs])
        else:
            for o in orgs:
                click.echo(o.name)
    run_command(body)


# --- repositories --------------------------------------------------------------------------

def _repo_json(r: Any) -> dict[str, Any]:
    return {"id": r.id, "name": f"{r.org}/{r.name}", "description": r.description,
            "visibility": r.visibility, "created_by": r.created_by,
            "created_at": r.created_at.isoformat() if r.created_at else None,
            "session_max_duration_days": r.session_max_duration_days,
            "retention_days": r.retention_days}


@click.group()
def repo() -> None:
    """Create, list, show and delete repositories."""


@repo.command("create")
@click.argument("repo_path", metavar="ORG/REPO")
@click.option("--description", default="", help="What the repository holds.")
@click.option("--visibility", type=click.Choice(["private", "public"]), default="private",
              show_default=True)
@JSON
def repo_create(repo_path: str, description: str, visibility: str, as_json: bool) -> None:
    """Create a repository in an organization."""
    def body() -> None:
        org_name, name = split_repo(repo_path)
        r = state().client().organization(org_name).repositories.create(
            name, description=description, visibility=visibility)
        emit_json(_repo_json(r)) if as_json else click.echo(f"{r.org}/{r.name}")
    run_command(body)


@repo.command("list")
@click.argument("org_name", metavar="ORG")
@JSON
def repo_list(org_name: str, as_json: bool) -> None:
    """The repositories of an organization, one ORG/REPO per line."""
    def body() -> None:
        repos = list(state().client().organization(org_name).repositories.list())
        if as_json:
            emit_json([_repo_json(r) for r in repos])
        else:
            for r in repos:
                click.echo(f"{r.org}/{r.name}")
    run_command(body)


@repo.command("show")
@click.argument("repo_path", metavar="ORG/REPO")
@JSON
def repo_show(repo_path: str, as_json: bool) -> None:
    """A repository's settings."""
    def body() -> None:
        org_name, name = split_repo(repo_path)
        r = state().client().organization(org_name).repositories.get(name)
        d = _repo_json(r)
        if as_json:
            emit_json(d)
            return
        emit_table([("repository", d["name"]), ("id", d["id"]),
                    ("description", d["description"] or "(none)"),
                    ("visibility", d["visibility"]),
                    ("created", f"{d['created_at']} by {d['created_by']}"),
                    ("session max days", str(d["session_max_duration_days"] or "-")),
                    ("retention days", str(d["retention_days"] or "-"))])
    run_command(body)


@repo.command("delete")
@click.argument("repo_path", metavar="ORG/REPO")
@click.option("--yes", is_flag=True, help="Do not ask (needed when not on a terminal).")
def repo_delete(repo_path: str, yes: bool) -> None:
    """Delete a repository and its history."""
    def body() -> None:
        org_name, name = split_repo(repo_path)
        if not yes:
            if not sys.stdin.isatty():
                raise usage_error(f"deleting {org_name}/{name} needs --yes when not on a "
                                  "terminal")
            if not click.confirm(f"Delete {org_name}/{name} and all its history?", err=True):
                raise CLIError("not deleted")
        state().client().organization(org_name).repositories.delete(name)
        click.echo(f"tilde: deleted {org_name}/{name}", err=True)
    run_command(body)
