"""Validation of sandbox create bodies and trigger sandbox configs (spec 2.8.1, 2.9).

Everything here is pure: a bad body raises `BadRequest` with a message that names the field,
before anything is started. The result is a `SandboxSpec`, stored as JSON with the sandbox.

`resources` (an extension: CPU, memory, process-count and CPU-time limits, cgroups.py) is
checked against the operator's `ResourcePolicy` when one is given (the create route): above a
maximum is a 400, and the spec then holds the effective limits. Without a policy (a trigger's
sandbox_config) only the shape is checked and the manager fills in defaults and clamps to the
maxima when the sandbox starts.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from tilde_server.store import BadRequest

DEFAULT_MOUNTPOINT = "/sandbox"
DEFAULT_TIMEOUT = 3600
MAX_TIMEOUT = 7 * 24 * 3600
MAX_ARGS = 4096
MAX_ARGV_BYTES = 256 * 1024
MAX_ENV_VARS = 256
MAX_ENV_BYTES = 64 * 1024
MODES = ("one-shot", "interactive", "service")

# Sandbox paths the repository may not be mounted on or under: the system the image provides
# and the kernel file systems the sandbox gets.
RESERVED_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
                 "/proc", "/dev", "/sys", "/tmp", "/run", "/var", "/opt/tilde")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# `resources` fields: (type, smallest value, unit shown in messages).
RESOURCE_FIELDS: dict[str, tuple[type, float, str]] = {
    "cpus": (float, 0.01, " CPUs"), "memory_mb": (int, 16, " MiB"), "pids": (int, 8, ""),
    "cpu_seconds": (float, 1, " s")}


@dataclass(frozen=True)
class ResourcePolicy:
    """The operator's per-sandbox defaults and maxima (`tilde-server run --sandbox-...`).
    `cpu_seconds` None: no CPU-time budget; `max_cpu_seconds` None: any budget may be asked
    for (with a maximum but no default, the maximum is the default)."""

    cpus: float = 1.0
    memory_mb: int = 2048
    pids: int = 512
    cpu_seconds: float | None = None
    max_cpus: float = float(os.cpu_count() or 1)
    max_memory_mb: int = 16 * 1024
    max_pids: int = 1024
    max_cpu_seconds: float | None = None

    def check(self) -> None:
        """Defaults within the maxima (ValueError names the option pair otherwise)."""
        for name in RESOURCE_FIELDS:
            default, top = getattr(self, name), getattr(self, "max_" + name)
            if default is not None and top is not None and default > top:
                raise ValueError(f"the default {name} ({default:g}) is above its maximum "
                                 f"({top:g})")

    def resolve(self, requested: dict[str, Any] | None, strict: bool) -> dict[str, Any]:
        """The effective limits: the defaults, overridden by `requested`. Above a maximum:
        BadRequest when `strict`, else the maximum."""
        out: dict[str, Any] = {}
        for name, (_, _, unit) in RESOURCE_FIELDS.items():
            top = getattr(self, "max_" + name)
            value = (requested or {}).get(name)
            if value is None:
                value = getattr(self, name)
                if value is None:
                    value = top
            if value is not None and top is not None and value > top:
                if strict:
                    raise BadRequest(f"resources.{name} is {value:g}{unit}; this server allows "
                                     f"at most {top:g}{unit}", "invalid_input")
                value = top
            out[name] = value
        return out


def check_resources(value: Any) -> dict[str, Any] | None:
    """The shape of a `resources` object: known fields, numbers, at least the minimum."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadRequest("field 'resources' must be an object", "invalid_input")
    unknown = sorted(set(value) - set(RESOURCE_FIELDS))
    if unknown:
        raise BadRequest(f"resources: unknown field {unknown[0]!r} (known: "
                         f"{', '.join(RESOURCE_FIELDS)})", "invalid_input")
    out: dict[str, Any] = {}
    for name, (kind, least, unit) in RESOURCE_FIELDS.items():
        x = value.get(name)
        if x is None:
            continue
        ok = isinstance(x, int) or (kind is float and isinstance(x, float))
        if isinstance(x, bool) or not ok:
            what = "a number" if kind is float else "an integer"
            raise BadRequest(f"resources.{name} must be {what}", "invalid_input")
        if x != x or x in (float("inf"), float("-inf")):
            raise BadRequest(f"resources.{name} must be a finite number", "invalid_input")
        if x <= 0:
            raise BadRequest(f"resources.{name} must be greater than 0", "invalid_input")
        if x < least:
            raise BadRequest(f"resources.{name} must be at least {least:g}{unit}",
                             "invalid_input")
        out[name] = float(x) if kind is float else x
    return out


@dataclass
class SandboxSpec:
    image: str
    command: list[str] | None
    mode: str  # one-shot | interactive | service
    env_vars: dict[str, str] = field(default_factory=dict)
    mountpoint: str = DEFAULT_MOUNTPOINT
    path_prefix: str = ""
    timeout_seconds: int | None = None
    run_as: dict[str, str] | None = None
    resources: dict[str, Any] | None = None  # module docstring; None in rows before it

    @property
    def interactive(self) -> bool:
        return self.mode == "interactive"

    @property
    def effective_timeout(self) -> int:
        return self.timeout_seconds or DEFAULT_TIMEOUT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SandboxSpec:
        return cls(**d)


def _str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string", "invalid_input")
    if "\x00" in value:
        raise BadRequest(f"field {name!r} must not contain NUL", "invalid_input")
    return value


def _str_map(body: dict[str, Any], name: str) -> dict[str, str] | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in value.items()):
        raise BadRequest(f"field {name!r} must be an object of string to string",
                         "invalid_input")
    return dict(value)


def check_command(value: Any, name: str = "command") -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise BadRequest(f"field {name!r} must be an array of strings", "invalid_input")
    if not value or value[0] == "":
        raise BadRequest(f"field {name!r} must not be empty (its first item is the program)",
                         "invalid_input")
    if len(value) > MAX_ARGS or sum(len(a.encode()) + 1 for a in value) > MAX_ARGV_BYTES:
        raise BadRequest(f"field {name!r} is too long", "invalid_input")
    if any("\x00" in a for a in value):
        raise BadRequest(f"field {name!r} must not contain NUL characters", "invalid_input")
    return list(value)


def check_env(env: dict[str, str] | None) -> dict[str, str]:
    if not env:
        return {}
    if len(env) > MAX_ENV_VARS:
        raise BadRequest(f"env_vars has {len(env)} variables; at most {MAX_ENV_VARS}",
                         "invalid_input")
    total = sum(len(k.encode()) + len(x.encode()) + 2 for k, x in env.items())
    if total > MAX_ENV_BYTES:
        raise BadRequest(f"env_vars is {total} bytes; at most {MAX_ENV_BYTES}", "invalid_input")
    for k, x in env.items():
        if not _ENV_NAME.match(k):
            raise BadRequest(f"env_vars: {k!r} is not a valid variable name", "invalid_input")
        if "\x00" in x:
            raise BadRequest(f"env_vars: the value of {k!r} contains NUL", "invalid_input")
    return env


def check_mountpoint(value: str | None) -> str:
    if value is None or value == "":
        return DEFAULT_MOUNTPOINT
    if not value.startswith("/"):
        raise BadRequest(f"mountpoint {value!r} must be an absolute path", "invalid_mountpoint")
    parts = value.split("/")
    if ".." in parts or "." in parts:
        raise BadRequest(f"mountpoint {value!r} must not contain '.' or '..' components "
                         "(it must stay inside the sandbox root)", "invalid_mountpoint")
    norm = posixpath.normpath(value)
    if norm == "/":
        raise BadRequest("mountpoint must not be the sandbox root '/'", "invalid_mountpoint")
    if len(norm) > 1024 or any(len(p) > 255 for p in parts):
        raise BadRequest("mountpoint is too long", "invalid_mountpoint")
    for reserved in RESERVED_DIRS:
        if norm == reserved or norm.startswith(reserved + "/"):
            raise BadRequest(f"mountpoint {value!r} lies in the system directory {reserved} "
                             "of the sandbox; choose another path such as /sandbox",
                             "invalid_mountpoint")
    return norm


def check_path_prefix(value: str | None) -> str:
    if not value:
        return ""
    prefix = value.strip("/")
    if not prefix:
        return ""
    parts = prefix.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise BadRequest(f"path_prefix {value!r} must be a repository path without empty, "
                         "'.' or '..' components", "invalid_input")
    if len(prefix.encode()) > 1024:
        raise BadRequest("path_prefix is too long", "invalid_input")
    return prefix


def check_timeout(value: Any, name: str = "timeout_seconds") -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"field {name!r} must be an integer", "invalid_input")
    if value <= 0:
        raise BadRequest(f"field {name!r} must be greater than 0", "invalid_input")
    if value > MAX_TIMEOUT:
        raise BadRequest(f"field {name!r} must be at most {MAX_TIMEOUT}", "invalid_input")
    return value


def parse_create(body: dict[str, Any], default_image: str = "ubuntu",
                 resources: ResourcePolicy | None = None) -> SandboxSpec:
    """The body of `POST {R}/sandboxes`, checked field by field (`resources`: the operator's
    policy, see the module docstring)."""
    image = _str(body, "image")
    if image is None:
        image = default_image
    if not image.strip():
        raise BadRequest("field 'image' must not be empty", "invalid_input")
    interactive = body.get("interactive")
    if interactive is not None and not isinstance(interactive, bool):
        raise BadRequest("field 'interactive' must be a boolean", "invalid_input")
    mode = _str(body, "mode")
    if mode is not None and mode not in MODES:
        raise BadRequest(f"field 'mode' must be one of {', '.join(MODES)}", "invalid_input")
    if mode is None:
        mode = "interactive" if interactive else "one-shot"
    elif interactive and mode != "interactive":
        raise BadRequest("'interactive: true' contradicts 'mode'", "invalid_input")
    command = check_command(body.get("command"))
    if mode == "one-shot" and command is None:
        raise BadRequest("field 'command' is required for a one-shot sandbox "
                         "(or set 'interactive': true)", "invalid_input")
    run_as = _str_map(body, "run_as")
    if run_as is not None and mode == "interactive":
        raise BadRequest("'run_as' cannot be combined with an interactive sandbox",
                         "invalid_input")
    wanted = check_resources(body.get("resources"))
    if resources is not None:
        wanted = resources.resolve(wanted, strict=True)
    return SandboxSpec(
        image=image, command=command, mode=mode,
        env_vars=check_env(_str_map(body, "env_vars")),
        mountpoint=check_mountpoint(_str(body, "mountpoint")),
        path_prefix=check_path_prefix(_str(body, "path_prefix")),
        timeout_seconds=check_timeout(body.get("timeout_seconds")),
        run_as=run_as,
        resources=wanted or None,
    )


def parse_trigger_config(value: Any) -> dict[str, Any]:
    """A trigger's `sandbox_config`: validated like a one-shot create body, stored as given."""
    if not isinstance(value, dict):
        raise BadRequest("field 'sandbox_config' must be an object", "invalid_input")
    if not isinstance(value.get("image"), str) or not value["image"].strip():
        raise BadRequest("sandbox_config.image must be a non-empty string", "invalid_input")
    body = {k: value.get(k) for k in ("image", "command", "mountpoint", "path_prefix",
                                      "timeout_seconds", "env_vars", "resources")}
    try:
        parse_create(body)
    except BadRequest as exc:
        raise BadRequest(f"sandbox_config: {exc.message}", exc.code) from None
    return {k: x for k, x in body.items() if x is not None}
