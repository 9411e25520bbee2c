"""``tilde log``: commits newest first, each with the paths it changed."""

from __future__ import annotations

from itertools import islice
from typing import Any

import click

from ._common import emit_json, run_command, split_repo, state, usage_error

MARKS = {"added": "+", "removed": "-", "changed": "~"}


def _commit_json(c: Any, changes: list[dict[str, str]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": c.id, "message": c.message, "committer": c.committer,
        "date": c.creation_date.isoformat() if c.creation_date else None,
        "parents": list(c.parents), "metadata": dict(c.metadata)}
    if changes is not None:
        out["changes"] = changes
    return out


def _changes(c: Any) -> list[dict[str, str]]:
    return [{"path": e.path, "status": e.status or "changed"} for e in c.diff()
            if e.type != "common_prefix"]


@click.command()
@click.argument("repo_path", metavar="ORG/REPO")
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=1), default=None,
              help="Show at most N commits.")
@click.option("--ref", default=None, metavar="COMMIT", help="Start at this commit.")
@click.option("--changes/--no-changes", default=True, show_default=True,
              help="List each commit's changed paths.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per commit and line.")
def log(repo_path: str, limit: int | None, ref: str | None, changes: bool,
        as_json: bool) -> None:
    """The history of a repository, newest first, with what each commit changed."""
    def body() -> None:
        org, name = split_repo(repo_path)
        if "@" in name:
            raise usage_error("use --ref COMMIT to start the log at a commit")
        commits = state().client().repository(f"{org}/{name}").commits.list(ref=ref)
        for i, c in enumerate(islice(commits, limit)):
            diff = _changes(c) if changes else None
            if as_json:
                emit_json(_commit_json(c, diff))
                continue
            if i:
                click.echo()
            click.echo(f"commit {c.id}")
            click.echo(f"Author: {c.committer}")
            date = c.creation_date.isoformat() if c.creation_date else "?"
            click.echo(f"Date:   {date}")
            for k, v in sorted(c.metadata.items()):
                click.echo(f"Meta:   {k}={v}")
            click.echo()
            for line in (c.message or "(no message)").splitlines() or [""]:
                click.echo(f"    {line}")
            if diff:
                click.echo()
                for e in diff:
                    click.echo(f"    {MARKS.get(e['status'], '?')} {e['path']}")
    run_command(body)
