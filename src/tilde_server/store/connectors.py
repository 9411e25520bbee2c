"""Organization connectors and their attachment to repositories (spec 2.15). No HTTP here.

Every method blocks (SQLite): call it from a worker thread.

Subtleties:
1. `config` is write-only: it is checked and normalized at create (sources.normalize_config),
   then stored sealed with the data directory's key (vault.py) and never returned. The
   Connector JSON carries only id, name, type, source_uri, disabled, public_key, created_at.
2. Delete is soft: the row stays with `deleted_at` so that later uses of the id answer 410
   (Gone) instead of 404, as spec 5.17 recommends; its attachments are dropped. A disabled
   connector (extension: PATCH {disabled}) is listed as such and answers 423 (Locked) to
   attach and import.
3. Ids are UUIDs; a malformed one is 400 before any lookup. A connector of another
   organization is simply not found (404).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any

from tilde_server.store import validation as v
from tilde_server.store.db import Conn, Row
from tilde_server.store.engine import now_rfc3339
from tilde_server.store.errors import BadRequest, Conflict, Gone, Locked, NotFound
from tilde_server.store.sources import SourceSettings, normalize_config

if TYPE_CHECKING:
    from tilde_server.store.engine import Principal, Store

MAX_NAME = 100
_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}$")


def check_uuid(value: str, what: str) -> str:
    if not _UUID_RE.match(value):
        raise BadRequest(f"{what} {value!r} is not a valid id", "invalid_id")
    return value.lower()


def connector_name(name: str) -> str:
    v.text(name, "name")
    if not name.strip() or len(name) > MAX_NAME or any(ord(ch) < 0x20 for ch in name):
        raise BadRequest(f"connector name must be 1-{MAX_NAME} printable characters",
                         "invalid_name")
    return name


def connector_json(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "type": row["type"],
            "source_uri": row["source_uri"], "disabled": bool(row["disabled"]),
            "public_key": None, "created_at": row["created_at"]}


class ConnectorStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.settings = SourceSettings()

    @property
    def _db(self) -> Any:
        return self._store.db

    @staticmethod
    def _context(connector_id: str) -> str:
        return f"connector\x00{connector_id}"

    def config_of(self, row: Row) -> dict[str, Any]:
        """The decrypted config of a connector row (for the import worker only)."""
        raw = self._store.vault.unseal(row["config"], self._context(row["id"]))
        config: dict[str, Any] = json.loads(raw)
        return config

    def _row(self, c: Conn, org_id: int, connector_id: str,
             *, usable: bool = False) -> Row:
        """The connector row; Gone when deleted, Locked when disabled and `usable` asked."""
        cid = check_uuid(connector_id, "connector_id")
        row = c.execute("SELECT * FROM connectors WHERE id = ? AND org_id = ?",
                        (cid, org_id)).fetchone()
        if row is None:
            raise NotFound(f"connector {connector_id!r} not found", "connector_not_found")
        if row["deleted_at"] is not None:
            raise Gone(f"connector {connector_id!r} was deleted", "connector_deleted")
        if usable and row["disabled"]:
            raise Locked(f"connector {connector_id!r} is disabled", "connector_disabled")
        return row

    # -- organization level ------------------------------------------------------------------
    def create(self, org: str, name: str, kind: str, source_uri: str, config: dict[str, Any],
               who: Principal) -> dict[str, Any]:
        connector_name(name)
        v.text(kind, "type")
        v.text(source_uri, "source_uri")
        uri, normalized = normalize_config(kind, source_uri, config, self.settings)
        cid = str(uuid.uuid4())
        sealed = self._store.vault.seal(json.dumps(normalized).encode(), self._context(cid))
        with self._db.write() as c:
            o = self._store.org_row(c, org)
            if c.execute("SELECT 1 FROM connectors WHERE org_id = ? AND name = ? "
                         "AND deleted_at IS NULL", (o["id"], name)).fetchone():
                raise Conflict(f"connector {name!r} already exists in {org!r}",
                               "already_exists")
            c.execute("INSERT INTO connectors(id, org_id, name, type, source_uri, config, "
                      "created_by, created_at) VALUES (?,?,?,?,?,?,?,?)",
                      (cid, o["id"], name, kind, uri, sealed, who.user_id, now_rfc3339()))
            return connector_json(self._row(c, o["id"], cid))

    def list_org(self, org: str) -> list[dict[str, Any]]:
        with self._db.read() as c:
            o = self._store.org_row(c, org)
            rows = c.execute("SELECT * FROM connectors WHERE org_id = ? AND deleted_at IS NULL "
                             "ORDER BY name", (o["id"],)).fetchall()
        return [connector_json(r) for r in rows]

    def get(self, org: str, connector_id: str) -> dict[str, Any]:
        with self._db.read() as c:
            return connector_json(self._row(c, self._store.org_row(c, org)["id"], connector_id))

    def delete(self, org: str, connector_id: str) -> None:
        with self._db.write() as c:
            row = self._row(c, self._store.org_row(c, org)["id"], connector_id)
            c.execute("UPDATE connectors SET deleted_at = ? WHERE id = ?",
                      (now_rfc3339(), row["id"]))
            c.execute("DELETE FROM repo_connectors WHERE connector_id = ?", (row["id"],))

    def set_disabled(self, org: str, connector_id: str, disabled: bool) -> dict[str, Any]:
        with self._db.write() as c:
            o = self._store.org_row(c, org)
            row = self._row(c, o["id"], connector_id)
            c.execute("UPDATE connectors SET disabled = ? WHERE id = ?",
                      (int(disabled), row["id"]))
            return connector_json(self._row(c, o["id"], row["id"]))

    # -- repository level --------------------------------------------------------------------
    def attach(self, org: str, repo: str, connector_id: str, who: Principal) -> None:
        with self._db.write() as c:
            r = self._store.repo_row(c, org, repo)
            row = self._row(c, r["org_id"], connector_id, usable=True)
            if c.execute("SELECT 1 FROM repo_connectors WHERE repo_id = ? AND connector_id = ?",
                         (r["id"], row["id"])).fetchone():
                raise Conflict(f"connector {connector_id!r} is already attached to "
                               f"{org}/{repo}", "already_attached")
            c.execute("INSERT INTO repo_connectors(repo_id, connector_id, attached_by, "
                      "attached_at) VALUES (?,?,?,?)",
                      (r["id"], row["id"], who.user_id, now_rfc3339()))

    def detach(self, org: str, repo: str, connector_id: str) -> None:
        with self._db.write() as c:
            r = self._store.repo_row(c, org, repo)
            cid = check_uuid(connector_id, "connector_id")
            if not c.execute("DELETE FROM repo_connectors WHERE repo_id = ? AND connector_id = ? "
                             "RETURNING repo_id", (r["id"], cid)).fetchone():
                raise NotFound(f"connector {connector_id!r} is not attached to {org}/{repo}",
                               "not_attached")

    def list_attached(self, org: str, repo: str) -> list[dict[str, Any]]:
        with self._db.read() as c:
            r = self._store.repo_row(c, org, repo)
            rows = c.execute(
                "SELECT k.* FROM repo_connectors a JOIN connectors k ON k.id = a.connector_id "
                "WHERE a.repo_id = ? AND k.deleted_at IS NULL ORDER BY k.name",
                (r["id"],)).fetchall()
        return [connector_json(x) for x in rows]

    def for_import(self, c: Conn, repo: Row,
                   connector_id: str) -> Row:
        """The connector an import may read: live, enabled and attached to `repo`."""
        row = self._row(c, repo["org_id"], connector_id, usable=True)
        if not c.execute("SELECT 1 FROM repo_connectors WHERE repo_id = ? AND connector_id = ?",
                         (repo["id"], row["id"])).fetchone():
            raise Conflict(f"connector {connector_id!r} is not attached to this repository "
                           "(attach it first: POST {R}/connectors)", "connector_not_attached")
        return row
