"""The sandbox parts of the `tilde-server` command line: options of `run` and `image ...`.

`sandbox_options` adds the `run` options without changing the signature of `run`: it pops
them into `SETTINGS`, which `start(app, store, endpoint)` reads.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from tilde_server.location import Location, location_options

log = logging.getLogger("tilde_server.sandbox")

SETTINGS: dict[str, Any] = {}
# Per-sandbox cgroup limits (cgroups.py): each a default and a maximum a request may ask for.
_RESOURCE_KEYS = ("sandbox_cpus", "sandbox_cpus_max", "sandbox_memory_mb",
                  "sandbox_memory_mb_max", "sandbox_pids", "sandbox_pids_max",
                  "sandbox_cpu_seconds", "sandbox_cpu_seconds_max")
_KEYS = ("sandbox_network", "sandbox_max_procs", "sandbox_max_file_size",
         "sandbox_max_memory", "sandbox_allow_host", "sandbox_env", "sandbox_log_retention",
         "unsafe_egress_test_exempt", "unsafe_egress_test_resolve", "advertise_url",
         *_RESOURCE_KEYS)


def sandbox_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for k in _KEYS:
            SETTINGS[k] = kwargs.pop(k, None)
        return fn(*args, **kwargs)

    opts = [
        click.option("--sandbox-network", type=click.Choice(["proxy", "off", "unsafe-host"]),
                     default="proxy", show_default=True, envvar="TILDE_SERVER_SANDBOX_NETWORK",
                     help="How sandboxes reach the network: 'proxy' (only through the "
                          "egress proxy: baseline, policies, log), 'off' (not at all), or "
                          "'unsafe-host' (the host's network, UNFILTERED and UNLOGGED: code "
                          "in a sandbox reaches whatever the host reaches)."),
        click.option("--sandbox-allow-host", multiple=True, metavar="HOST[:PORT]",
                     help="Deployment-wide egress allow-list entry (repeatable): a host, "
                          "'*.domain' for names below it; without :PORT ports 80 and 443. "
                          "The baseline and a policy's deny still win."),
        click.option("--sandbox-env", multiple=True, metavar="NAME=VALUE",
                     help="Environment variable of every sandbox (repeatable), e.g. a "
                          "package mirror; a request's env_vars override it."),
        click.option("--advertise-url", envvar="TILDE_SERVER_ADVERTISE_URL", metavar="URL",
                     default=None,
                     help="How the deployment's other processes reach this one (they relay "
                          "a sandbox's exec and terminal WebSockets to the process running "
                          "it; env TILDE_SERVER_ADVERTISE_URL). Default: the address it "
                          "listens on."),
        click.option("--sandbox-log-retention", type=click.FloatRange(min=0, min_open=True),
                     default=30.0,
                     show_default=True, metavar="DAYS",
                     help="Days a finished sandbox's logs are kept; then logs/* answer 410."),
        click.option("--unsafe-egress-test-exempt", multiple=True, hidden=True,
                     metavar="ADDRESS:PORT",
                     help="TESTS ONLY: let this address:port pass the egress baseline."),
        click.option("--unsafe-egress-test-resolve", multiple=True, hidden=True,
                     metavar="NAME=ADDRESS",
                     help="TESTS ONLY: the egress proxy resolves NAME to ADDRESS."),
        click.option("--sandbox-max-procs", type=click.IntRange(16), default=1024,
                     show_default=True, help="RLIMIT_NPROC of sandboxes (root server only)."),
        click.option("--sandbox-max-file-size", type=click.IntRange(1), default=16 * 1024**3,
                     show_default=True, help="RLIMIT_FSIZE of sandbox processes, in bytes."),
        click.option("--sandbox-max-memory", type=click.IntRange(64 * 1024**2),
                     default=16 * 1024**3, show_default=True,
                     help="RLIMIT_AS (address space) of sandbox processes, in bytes."),
        click.option("--sandbox-cpus", type=click.FloatRange(0.01), default=1.0,
                     show_default=True, help="CPU bandwidth of a sandbox, in CPUs (cgroup)."),
        click.option("--sandbox-cpus-max", type=click.FloatRange(0.01),
                     default=float(os.cpu_count() or 1), show_default="the CPU count",
                     help="The most 'resources.cpus' a request may ask for."),
        click.option("--sandbox-memory-mb", type=click.IntRange(16), default=2048,
                     show_default=True,
                     help="Memory of a sandbox, all its processes and tmpfs together, "
                          "in MiB (cgroup; no swap)."),
        click.option("--sandbox-memory-mb-max", type=click.IntRange(16), default=16 * 1024,
                     show_default=True,
                     help="The most 'resources.memory_mb' a request may ask for."),
        click.option("--sandbox-pids", type=click.IntRange(8), default=512, show_default=True,
                     help="Processes and threads a sandbox may have at once (cgroup)."),
        click.option("--sandbox-pids-max", type=click.IntRange(8), default=1024,
                     show_default=True, help="The most 'resources.pids' a request may ask for."),
        click.option("--sandbox-cpu-seconds", type=click.FloatRange(1), default=None,
                     help="CPU-time budget of a sandbox, in CPU seconds (default: none, or "
                          "--sandbox-cpu-seconds-max when that is set)."),
        click.option("--sandbox-cpu-seconds-max", type=click.FloatRange(1), default=None,
                     help="The most 'resources.cpu_seconds' a request may ask for (default: "
                          "no maximum)."),
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
    from tilde_server.sandbox.egress_rules import EgressRules

    try:
        rules = EgressRules.from_options(SETTINGS.get("sandbox_allow_host") or (),
                                         SETTINGS.get("unsafe_egress_test_exempt") or (),
                                         SETTINGS.get("unsafe_egress_test_resolve") or ())
        env = _env_pairs(SETTINGS.get("sandbox_env") or ())
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    network = SETTINGS.get("sandbox_network") or "proxy"
    if network == "unsafe-host":
        log.warning("sandboxes use the host's network (--sandbox-network unsafe-host): their "
                    "traffic is neither filtered nor logged")
    if rules.exempt or rules.resolve:
        log.warning("TEST-ONLY egress options are set: %s pass the baseline; names "
                    "resolved by hand: %s", sorted(f"{a}:{p}" for a, p in rules.exempt),
                    sorted(rules.resolve))
    retention = SETTINGS.get("sandbox_log_retention") or 30.0
    resources = _resource_policy()
    return setup(app, store, endpoint, network=network, limits=limits, egress_rules=rules,
                 sandbox_env=env, log_retention=retention * 86400, resources=resources,
                 advertise_url=SETTINGS.get("advertise_url") or None)


def _resource_policy() -> Any:
    from tilde_server.sandbox.spec import ResourcePolicy

    given = {k[len("sandbox_"):]: SETTINGS.get(k) for k in _RESOURCE_KEYS}
    fields = {("max_" + k[:-4] if k.endswith("_max") else k): v for k, v in given.items()
              if v is not None}
    policy = ResourcePolicy(**fields)
    try:
        policy.check()
    except ValueError as exc:
        raise click.UsageError(f"--sandbox-*: {exc}") from None
    return policy


def _env_pairs(items: Any) -> dict[str, str]:
    from tilde_server.sandbox.spec import check_env
    from tilde_server.store import BadRequest

    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--sandbox-env {item!r}: expected NAME=VALUE")
        out[name] = value
    try:
        return check_env(out)
    except BadRequest as exc:
        raise ValueError(f"--sandbox-env: {exc.message}") from None


def stop(manager: Any) -> None:
    if manager is not None:
        manager.shutdown()


def _open(where: Location) -> Any:
    from tilde_server.sandbox import records

    store = where.open_beside_server()
    records.ensure_schema(store.db)
    return store


@click.group("image")
def image_group() -> None:
    """Sandbox images: root file system directories (works while the server runs)."""


@image_group.command("add")
@location_options
@click.argument("name")
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
def image_add(where: Location, name: str, root: Path) -> None:
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
    store = _open(where)
    try:
        records.put_image(store.db, name, real)
    finally:
        store.close()
    click.echo(f"image {name} -> {real}")


@image_group.command("list")
@location_options
def image_list(where: Location) -> None:
    """Registered images, the built-in `host` and the alias table."""
    from tilde_server.sandbox import images, records

    store = _open(where)
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
@location_options
@click.argument("name")
def image_remove(where: Location, name: str) -> None:
    """Forget image NAME (its directory is left alone)."""
    from tilde_server.sandbox import records

    store = _open(where)
    try:
        removed = records.remove_image(store.db, name)
    finally:
        store.close()
    if not removed:
        click.echo(f"tilde-server: error: no image named {name!r}", err=True)
        sys.exit(1)
    click.echo(f"removed image {name}")
