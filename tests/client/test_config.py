"""Endpoint and key resolution (spec 1.2)."""

from pathlib import Path

import pytest

from tilde import _config


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    for k in ("TILDE_API_KEY", "TILDE_ENDPOINT_URL", "TILDE_API_URL",
              "TILDE_DEFAULT_SANDBOX_IMAGE"):
        monkeypatch.delenv(k, raising=False)
    return tmp_path


def write_config(home: Path, text: str | bytes) -> None:
    (home / ".tilde").mkdir(exist_ok=True)
    p = home / ".tilde" / "config.yaml"
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)


def test_defaults(home: Path) -> None:
    s = _config.resolve()
    assert s.endpoint_url == "https://tilde.run"
    assert s.api_key is None
    assert s.default_sandbox_image == "ubuntu"


def test_order_explicit_env_file(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(home, "api_key: file-key\nendpoint_url: http://file\n")
    assert _config.resolve().api_key == "file-key"
    assert _config.resolve().endpoint_url == "http://file"
    monkeypatch.setenv("TILDE_API_URL", "http://api-url")
    assert _config.resolve().endpoint_url == "http://api-url"
    monkeypatch.setenv("TILDE_ENDPOINT_URL", "http://endpoint")
    monkeypatch.setenv("TILDE_API_KEY", "env-key")
    s = _config.resolve()
    assert (s.endpoint_url, s.api_key) == ("http://endpoint", "env-key")
    s = _config.resolve(endpoint_url="http://arg", api_key="arg-key")
    assert (s.endpoint_url, s.api_key) == ("http://arg", "arg-key")


def test_empty_values_count_as_unset(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(home, "api_key: file-key\n")
    monkeypatch.setenv("TILDE_API_KEY", "")
    monkeypatch.setenv("TILDE_ENDPOINT_URL", "")
    s = _config.resolve(api_key="", endpoint_url="")
    assert s.api_key == "file-key"
    assert s.endpoint_url == "https://tilde.run"


@pytest.mark.parametrize("text", [
    "api_key: [1, 2\n",          # malformed YAML
    "- a\n- b\n",                # not a mapping
    "api_key: 123\nendpoint_url: ''\n",   # non-string / empty values
    "other: x\n",
])
def test_unusable_file_is_ignored(home: Path, text: str) -> None:
    write_config(home, text)
    s = _config.resolve()
    assert s.api_key is None and s.endpoint_url == "https://tilde.run"


def test_non_utf8_file_fails(home: Path) -> None:
    write_config(home, b"api_key: \xff\xfe\n")
    with pytest.raises(UnicodeDecodeError):
        _config.resolve()


def test_sandbox_image(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_DEFAULT_SANDBOX_IMAGE", "")
    assert _config.resolve().default_sandbox_image == ""
    assert _config.resolve(default_sandbox_image="alpine").default_sandbox_image == "alpine"
