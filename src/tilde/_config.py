"""Endpoint and API key resolution (spec 1.2).

Order, first non-empty wins:
  endpoint: argument, ``TILDE_ENDPOINT_URL``, ``TILDE_API_URL``, ``~/.tilde/config.yaml``
            ``endpoint_url``, then ``https://tilde.run``;
  api key:  argument, ``TILDE_API_KEY``, config file ``api_key``, then none (no error until
            the first request).
  image:    argument, ``TILDE_DEFAULT_SANDBOX_IMAGE`` (set-but-empty gives ""), ``ubuntu``.
  sandbox credentials: ``TILDE_SANDBOX_CREDENTIALS_URI`` only when no static key was found
            and no ``api_key`` argument was given (not even ``""``).

The config file is read only when a setting is not resolved before it. Only non-empty string
values of those two keys count; a missing, unreadable, malformed or non-mapping file is
ignored, but a file that is not UTF-8 raises (as the official client does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._wire import DEFAULT_ENDPOINT

CONFIG_RELATIVE_PATH = Path(".tilde") / "config.yaml"
DEFAULT_SANDBOX_IMAGE = "ubuntu"


@dataclass(frozen=True)
class Settings:
    endpoint_url: str
    api_key: str | None
    default_sandbox_image: str
    # TILDE_SANDBOX_CREDENTIALS_URI, only when no static key and no explicit api_key (1.2).
    credentials_uri: str | None = None


def config_file_path() -> Path:
    return Path.home() / CONFIG_RELATIVE_PATH


def read_config_file(path: Path | None = None) -> dict[str, str]:
    """The usable keys of the config file ({} when there is nothing usable)."""
    path = config_file_path() if path is None else path
    try:
        raw = path.read_bytes()
    except OSError:
        return {}
    text = raw.decode("utf-8")  # a decode error is deliberately not swallowed (1.2)
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k in ("api_key", "endpoint_url")
            if isinstance(v := data.get(k), str) and v}


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def resolve(*, endpoint_url: str | None = None, api_key: str | None = None,
            default_sandbox_image: str | None = None) -> Settings:
    endpoint = endpoint_url or _env("TILDE_ENDPOINT_URL") or _env("TILDE_API_URL")
    key = api_key or _env("TILDE_API_KEY")
    if not endpoint or not key:
        file = read_config_file()
        endpoint = endpoint or file.get("endpoint_url")
        key = key or file.get("api_key")
    image = default_sandbox_image
    if image is None:
        image = os.environ.get("TILDE_DEFAULT_SANDBOX_IMAGE", DEFAULT_SANDBOX_IMAGE)
    # A static key, or an explicit api_key argument even when empty, turns auto-detection of
    # the sandbox credentials endpoint off (1.2).
    credentials_uri = None
    if api_key is None and not key:
        credentials_uri = _env("TILDE_SANDBOX_CREDENTIALS_URI")
    return Settings(endpoint_url=endpoint or DEFAULT_ENDPOINT, api_key=key or None,
                    default_sandbox_image=image, credentials_uri=credentials_uri)
