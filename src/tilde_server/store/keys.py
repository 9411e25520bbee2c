"""The server's own secrets: what every process of one deployment must hold alike.

Three keys, each 256 bits, each for one use:

- ``identity``: the HMAC of agent and role API keys (identity.py 2.);
- ``signing``: signatures of upload URLs and download grants (signing.py);
- ``vault``: AES-256-GCM of secrets and connector credentials (vault.py).

Subtleties:
1. An embedded deployment keeps them where it always has: ``identity.key`` and
   ``secret.key`` in the data directory, the signing key in the database's ``meta`` row.
   Nothing about an existing directory changes.
2. A ``--database`` deployment keeps all three in one ``--secret-key-file`` (JSON, mode
   0600, created with O_EXCL on first start when missing), given to every process. The keys
   are separate and explicit rather than derived from one seed, so that `tilde-server
   migrate` can carry an embedded deployment's keys over unchanged: its agent keys keep
   working and its sealed values stay readable.
3. The database records a fingerprint of the key file (an HMAC under the identity key: it
   reveals nothing about the keys). A process whose file does not match is refused at
   start, before it could issue keys or seal values no other process can check or open;
   so is a file readable by anyone but its owner.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from tilde_server.store.blobs import fsync_dir, mkdirs
from tilde_server.store.errors import DataDirError

KEY_FILE_FORMAT = 1
_NAMES = ("identity", "signing", "vault")


@dataclass(frozen=True)
class Keys:
    identity: bytes
    signing: bytes
    vault: bytes

    @classmethod
    def generate(cls) -> Keys:
        return cls(*(secrets.token_bytes(32) for _ in _NAMES))

    def fingerprint(self) -> str:
        """Names this set of keys without revealing them (3.)."""
        msg = b"tilde-server key file fingerprint:" + self.signing + self.vault
        return hmac.new(self.identity, msg, hashlib.sha256).hexdigest()[:32]

    def to_json(self) -> str:
        body = {"format": KEY_FILE_FORMAT, **{n: getattr(self, n).hex() for n in _NAMES}}
        return json.dumps(body, indent=2) + "\n"


def _parse(path: Path, text: str) -> Keys:
    try:
        body = json.loads(text)
        if body.get("format") != KEY_FILE_FORMAT:
            raise ValueError(f"format {body.get('format')!r}")
        raw = [bytes.fromhex(body[n]) for n in _NAMES]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataDirError(f"{path} is not a tilde-server key file ({e})") from None
    if any(len(k) != 32 for k in raw):
        raise DataDirError(f"{path} is not a tilde-server key file (keys of 32 bytes)")
    return Keys(*raw)


def read_key_file(path: Path) -> Keys:
    """The keys of an existing file; refused when anyone but its owner may read it."""
    try:
        fd = os.open(path, os.O_RDONLY)  # a symlink is fine (mounted secrets are ones)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DataDirError(f"cannot read the key file {path}: {e.strerror}") from None
    with os.fdopen(fd) as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise DataDirError(f"the key file {path} is not a regular file")
        if mode & 0o077:
            raise DataDirError(f"the key file {path} is readable by others (mode "
                               f"{stat.S_IMODE(mode):04o}); chmod 600 it")
        return _parse(path, f.read())


def write_key_file(path: Path, keys: Keys) -> None:
    """Create `path` (0600, never over an existing file) holding `keys`, durably."""
    mkdirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(keys.to_json())
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    fsync_dir(path.parent)


def open_key_file(path: Path) -> tuple[Keys, bool]:
    """The file's keys, creating it with new ones when missing; (keys, created). Two
    processes starting at once with one path both end with the same keys."""
    path = path.expanduser()
    try:
        return read_key_file(path), False
    except FileNotFoundError:
        pass
    keys = Keys.generate()
    try:
        write_key_file(path, keys)
    except FileExistsError:  # the other process was first
        return read_key_file(path), False
    return keys, True


IDENTITY_KEY_FILE = "identity.key"
VAULT_KEY_FILE = "secret.key"


def embedded_keys(root: Path, signing_hex: str, has_sealed_values: bool) -> Keys:
    """An embedded deployment's keys, from where it keeps them (1.); the two files are made
    (0600) on first need. `has_sealed_values`: a missing vault key is then refused, not
    replaced by a new one that can open nothing."""
    return Keys(_identity_key(root), bytes.fromhex(signing_hex),
                _vault_key(root, has_sealed_values))


def _identity_key(root: Path) -> bytes:
    path = root / IDENTITY_KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process (a maintenance command) made it meanwhile
        return bytes.fromhex(path.read_text().strip())
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(root)  # its name too: agent keys issued later depend on it
    return bytes.fromhex(secret)


def _vault_key(root: Path, has_sealed_values: bool) -> bytes:
    path = root / VAULT_KEY_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if has_sealed_values:
            raise DataDirError(
                f"{path} is missing but the database holds encrypted secrets or connector "
                "credentials; restore the key file (without it they cannot be read)"
            ) from None
        raw = secrets.token_bytes(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _vault_key(root, has_sealed_values)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(root)  # its name too: the database will soon depend on it
    if len(raw) != 32:
        raise DataDirError(f"{path} is not a 32-byte key")
    return raw
