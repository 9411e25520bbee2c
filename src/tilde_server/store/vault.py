"""Encryption at rest for secrets and connector credentials, and the secrets store (spec 2.14).

Every method blocks (the database): call it from a worker thread.

Subtleties:
1. One 256-bit key per deployment (keys.py: `secret.key` in an embedded data directory,
   the `vault` key of the --secret-key-file beside a database). Values are sealed with
   AES-256-GCM: a fresh 96-bit nonce per value, stored as `nonce || ciphertext+tag`. The
   associated data binds a sealed value to the row it belongs to (scope, owner, name), so a
   ciphertext copied into another row does not decrypt.
2. The key never enters the database: a copy of the database alone reveals names and
   timestamps but no value. Losing the key loses every secret and connector credential; the
   server refuses to start when sealed values exist but the key does not (rather than
   silently making a new key that can open nothing).
3. Values are never logged and never part of a list answer; only `get` opens one.
4. `environment_for()` is the one function a sandbox launcher calls to get decrypted
   secrets as environment variables, with the precedence of the product notes (repository
   secrets, overridden by the agent's own when the sandbox runs as an agent).
"""

from __future__ import annotations

import re
import secrets as _random
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tilde_server.store.db import Conn, Row
from tilde_server.store.engine import now_rfc3339
from tilde_server.store.errors import BadRequest, NotFound, StoreError

if TYPE_CHECKING:
    from tilde_server.store.engine import Principal, Store

SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,255}$")
MAX_SECRET_BYTES = 64 * 1024
_NONCE = 12


class Vault:
    """Seals and opens small values with the data directory's key."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, context: str) -> bytes:
        nonce = _random.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def unseal(self, sealed: bytes, context: str) -> bytes:
        try:
            return self._aead.decrypt(sealed[:_NONCE], sealed[_NONCE:], context.encode())
        except (InvalidTag, ValueError):
            raise StoreError("a stored secret cannot be decrypted with this data directory's "
                             "key", "decryption_failed") from None


def has_sealed_values(c: Conn) -> bool:
    return bool(c.execute("SELECT EXISTS(SELECT 1 FROM secrets) "
                          "OR EXISTS(SELECT 1 FROM connectors)").fetchone()[0])


def secret_name(name: str) -> str:
    if not SECRET_NAME_RE.match(name):
        raise BadRequest("invalid secret name: 1-256 of A-Z, a-z, 0-9, '_' and '-', starting "
                         "with a letter or '_'", "invalid_name")
    return name


class SecretStore:
    """Repository and agent secrets. A scope is ('repo', repository uid) or ('agent', id)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def _db(self) -> Any:
        return self._store.db

    @staticmethod
    def _context(scope: str, owner: str, name: str) -> str:
        return f"secret\x00{scope}\x00{owner}\x00{name}"

    @staticmethod
    def _meta(row: Row) -> dict[str, Any]:
        return {"key": row["name"], "created_by_type": row["created_by_type"],
                "created_by": row["created_by"], "created_at": row["created_at"],
                "updated_at": row["updated_at"]}

    # -- scopes ------------------------------------------------------------------------------
    def repo_scope(self, org: str, repo: str) -> tuple[str, str]:
        with self._db.read() as c:
            return "repo", str(self._store.repo_row(c, org, repo)["uid"])

    def agent_scope(self, org: str, agent: str) -> tuple[str, str]:
        """('agent', agent id) of a live agent of `org` (agents: store/identity.py)."""
        with self._db.read() as c:
            o = self._store.org_row(c, org)
            row = c.execute("SELECT id FROM agents WHERE org_id = ? AND name = ?",
                            (o["id"], agent)).fetchone() if c.has_table("agents") else None
        if row is None:
            raise NotFound(f"agent {agent!r} not found", "agent_not_found")
        return "agent", str(row[0])

    # -- operations --------------------------------------------------------------------------
    def list_meta(self, scope: tuple[str, str]) -> list[dict[str, Any]]:
        with self._db.read() as c:
            rows = c.execute("SELECT * FROM secrets WHERE scope = ? AND scope_id = ? "
                             "ORDER BY name", scope).fetchall()
        return [self._meta(r) for r in rows]

    def get(self, scope: tuple[str, str], name: str) -> dict[str, Any]:
        """Metadata plus the decrypted `value`."""
        secret_name(name)
        with self._db.read() as c:
            row = c.execute("SELECT * FROM secrets WHERE scope = ? AND scope_id = ? "
                            "AND name = ?", (*scope, name)).fetchone()
        if row is None:
            raise NotFound(f"secret {name!r} not found", "secret_not_found")
        value = self._store.vault.unseal(row["value"], self._context(*scope, name))
        return {**self._meta(row), "value": value.decode("utf-8")}

    def put(self, scope: tuple[str, str], name: str, value: str,
            who: Principal) -> dict[str, Any]:
        """Create or replace (upsert); created_at survives a replace."""
        secret_name(name)
        raw = value.encode("utf-8")
        if not raw:
            raise BadRequest("secret value must not be empty", "invalid_input")
        if len(raw) > MAX_SECRET_BYTES:
            raise BadRequest(f"secret value is larger than {MAX_SECRET_BYTES} bytes",
                             "invalid_input")
        sealed = self._store.vault.seal(raw, self._context(*scope, name))
        t = now_rfc3339()
        kind = who.type
        with self._db.write() as c:
            c.execute(
                "INSERT INTO secrets(scope, scope_id, name, value, created_by_type, created_by, "
                "created_at, updated_at) VALUES (?,?,?,?,?,?,?,?) "
                "ON CONFLICT(scope, scope_id, name) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (*scope, name, sealed, kind, who.user_id, t, t))
            row = c.execute("SELECT * FROM secrets WHERE scope = ? AND scope_id = ? "
                            "AND name = ?", (*scope, name)).fetchone()
        return self._meta(row)

    def delete(self, scope: tuple[str, str], name: str) -> None:
        secret_name(name)
        with self._db.write() as c:
            if not c.execute("DELETE FROM secrets WHERE scope = ? AND scope_id = ? AND name = ? "
                             "RETURNING name", (*scope, name)).fetchone():
                raise NotFound(f"secret {name!r} not found", "secret_not_found")

    def environment_for(self, org: str, repo: str, agent: str | None = None) -> dict[str, str]:
        """Decrypted secrets for a sandbox of `org/repo`, as environment variables.

        Repository secrets first; when the sandbox runs as `agent`, the agent's secrets
        override them. The sandbox's own `env` (applied by the caller) overrides both.
        """
        env: dict[str, str] = {}
        scopes = [self.repo_scope(org, repo)]
        if agent is not None:
            scopes.append(self.agent_scope(org, agent))
        for scope in scopes:
            with self._db.read() as c:
                rows = c.execute("SELECT name, value FROM secrets WHERE scope = ? "
                                 "AND scope_id = ?", scope).fetchall()
            for row in rows:
                env[row["name"]] = self._store.vault.unseal(
                    row["value"], self._context(*scope, row["name"])).decode("utf-8")
        return env
