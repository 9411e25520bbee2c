"""``tilde``: the command line of the bundled client (docs/cli.md).

Commands live by noun: account.py (auth, org, repo), history.py (log), files.py (ls, cat,
cp, rm: through the ``tilde://`` filesystem), sandboxes.py (sandbox, shell); _common.py
holds settings, output and the one exception-to-exit-status table. Heavy imports (httpx,
fsspec) happen inside commands, so ``tilde --help`` stays quick.
"""

from __future__ import annotations

import sys

import click

from .. import __version__
from ._common import EXIT_INTERRUPTED, EXIT_USAGE, State
from .account import auth, org, repo
from .files import cat, cp, ls, rm
from .history import log
from .sandboxes import exec_cmd, sandbox, shell


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--endpoint-url", metavar="URL", default=None,
              help="Endpoint (else TILDE_ENDPOINT_URL, then ~/.tilde/config.yaml).")
@click.option("--api-key", metavar="KEY", default=None,
              help="API key (else TILDE_API_KEY, then ~/.tilde/config.yaml); visible to "
                   "other users in the process list, so prefer those.")
@click.version_option(__version__, prog_name="tilde")
@click.pass_context
def cli(ctx: click.Context, endpoint_url: str | None, api_key: str | None) -> None:
    """Work with Tilde repositories: accounts, history, files and sandboxes."""
    st = ctx.ensure_object(State)
    st.endpoint_flag = endpoint_url
    st.key_flag = api_key
    ctx.call_on_close(st.close)


for command in (auth, org, repo, log, ls, cat, cp, rm, sandbox, exec_cmd, shell):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """The console script: click's own errors become one ``tilde:`` line too (exit 2)."""
    try:
        code = cli.main(args=argv, prog_name="tilde", standalone_mode=False)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else "tilde"
        click.echo(f"tilde: {exc.format_message()} (see `{where} --help`)", err=True)
        sys.exit(EXIT_USAGE)
    except click.ClickException as exc:
        click.echo(f"tilde: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("tilde: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["cli", "main"]
