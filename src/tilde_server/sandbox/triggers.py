"""Sandbox triggers (spec 2.9, 5.18): stored definitions, matching against commits, runs.

Subtleties:
1. An on-commit hook (`Store.on_commit`): after any commit is durable (a session commit, an
   approved one, an import's, a revert), a background thread diffs it against its parent and
   starts the sandbox of every enabled trigger of the repository with a matching condition.
   The commit's answer never waits for that.
2. Commits made by a sandbox that a trigger started do not fire triggers (no loops: a trigger
   whose sandbox writes under its own prefix would otherwise run forever).
3. Conditions: `type` `prefix` (path starts with `prefix`) or `path` / `path_exact` (path
   equals `path`); `diff_type` `added`, `removed`, `changed`, or `""`/`any` for all.
4. Run status: `pending` -> `running` (sandbox started) -> `succeeded` (committed) or `failed`
   (the sandbox failed, errored or was cancelled; `reason` says which); `failed` with the
   reason at once when the sandbox could not be started.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from tilde_server.sandbox import records
from tilde_server.sandbox.spec import parse_create, parse_trigger_config
from tilde_server.store import BadRequest, NotFound, Principal, Store, StoreError
from tilde_server.store.db import Database
from tilde_server.store.engine import CommitEvent, now_rfc3339

if TYPE_CHECKING:
    from tilde_server.sandbox.manager import SandboxManager

log = logging.getLogger("tilde_server.sandbox")

CONDITION_TYPES = ("prefix", "path", "path_exact")
DIFF_TYPES = ("", "any", "added", "removed", "changed")
MAX_DIFF_PATHS = 100_000


# ---------------------------------------------------------------- validation


def check_conditions(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRequest("field 'conditions' must be a non-empty array", "invalid_input")
    if len(value) > 10:
        raise BadRequest("at most 10 conditions", "invalid_input")
    out = []
    for i, c in enumerate(value):
        if not isinstance(c, dict):
            raise BadRequest(f"conditions[{i}] must be an object", "invalid_input")
        for k in ("type", "prefix", "path", "diff_type"):
            if c.get(k) is not None and not isinstance(c[k], str):
                raise BadRequest(f"conditions[{i}].{k} must be a string", "invalid_input")
        ctype = c.get("type") or ("prefix" if c.get("prefix") is not None else "path")
        if ctype not in CONDITION_TYPES:
            raise BadRequest(f"conditions[{i}].type must be one of "
                             f"{', '.join(CONDITION_TYPES)}", "invalid_input")
        diff_type = c.get("diff_type") or ""
        if diff_type not in DIFF_TYPES:
            raise BadRequest(f"conditions[{i}].diff_type must be one of added, removed, "
                             "changed, any", "invalid_input")
        if ctype != "prefix" and not c.get("path"):
            raise BadRequest(f"conditions[{i}] of type {ctype} needs 'path'", "invalid_input")
        out.append({"type": ctype, "prefix": c.get("prefix") or "", "path": c.get("path") or "",
                    "diff_type": diff_type})
    return out


def _name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("field 'name' must be a non-empty string", "invalid_input")
    if len(value) > 100:
        raise BadRequest("field 'name' must be at most 100 characters", "invalid_input")
    return value


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"field {key!r} must be a string", "invalid_input")
    return value


def _run_as(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(x, str) for k, x in value.items()):
        raise BadRequest("field 'run_as' must be an object of string to string",
                         "invalid_input")
    return dict(value)


# ---------------------------------------------------------------- storage


def _trigger_json(row: Any) -> dict[str, Any]:
    who = records.principal_from_json(row["principal"])
    return {
        "id": row["id"], "name": row["name"], "description": row["description"],
        "enabled": bool(row["enabled"]), "conditions": json.loads(row["conditions"]),
        "sandbox_config": json.loads(row["sandbox_config"]),
        "run_as": json.loads(row["run_as"]) if row["run_as"] else None,
        "repository_id": row["repo_uid"], "created_by": row["created_by"],
        "created_by_type": getattr(who, "type", "user"),
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def _get(c: Any, org: str, repo: str, tid: str) -> Any:
    row = c.execute("SELECT * FROM sandbox_triggers WHERE id = ? AND org = ? AND repo = ?",
                    (tid, org, repo)).fetchone()
    if row is None:
        raise NotFound(f"sandbox trigger {tid!r} not found", "trigger_not_found")
    return row


def create(store: Store, org: str, repo: str, body: dict[str, Any],
           who: Principal) -> dict[str, Any]:
    repo_row = store.get_repo(org, repo)
    name = _name(body.get("name"))
    description = _opt_str(body, "description") or ""
    conditions = check_conditions(body.get("conditions"))
    config = parse_trigger_config(body.get("sandbox_config"))
    run_as = _run_as(body.get("run_as"))
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise BadRequest("field 'enabled' must be a boolean", "invalid_input")
    tid = records.time_ordered_id()
    t = now_rfc3339()
    with store.db.write() as c:
        c.execute(
            "INSERT INTO sandbox_triggers(id, org, repo, repo_uid, name, description, enabled, "
            "conditions, sandbox_config, run_as, created_by, principal, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (tid, org, repo, repo_row["uid"], name, description, int(enabled),
             json.dumps(conditions), json.dumps(config),
             json.dumps(run_as) if run_as is not None else None, who.user_id,
             records.principal_json(who), t, t))
        return _trigger_json(_get(c, org, repo, tid))


def get(store: Store, org: str, repo: str, tid: str) -> dict[str, Any]:
    store.get_repo(org, repo)
    with store.db.read() as c:
        return _trigger_json(_get(c, org, repo, tid))


def list_(store: Store, org: str, repo: str, after: str | None,
          amount: int) -> tuple[list[dict[str, Any]], bool]:
    store.get_repo(org, repo)
    with store.db.read() as c:
        rows = c.execute("SELECT * FROM sandbox_triggers WHERE org = ? AND repo = ? AND id > ? "
                         "ORDER BY id LIMIT ?", (org, repo, after or "", amount + 1)).fetchall()
    return [_trigger_json(r) for r in rows[:amount]], len(rows) > amount


def update(store: Store, org: str, repo: str, tid: str, body: dict[str, Any]) -> dict[str, Any]:
    """PUT: the given keys replace the stored ones (the 0.7.2 client sends only some)."""
    changes: dict[str, Any] = {}
    if "name" in body:
        changes["name"] = _name(body["name"])
    if "description" in body:
        changes["description"] = _opt_str(body, "description") or ""
    if "conditions" in body:
        changes["conditions"] = json.dumps(check_conditions(body["conditions"]))
    if "sandbox_config" in body:
        changes["sandbox_config"] = json.dumps(parse_trigger_config(body["sandbox_config"]))
    if "run_as" in body:
        run_as = _run_as(body["run_as"])
        changes["run_as"] = json.dumps(run_as) if run_as is not None else None
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BadRequest("field 'enabled' must be a boolean", "invalid_input")
        changes["enabled"] = int(body["enabled"])
    store.get_repo(org, repo)
    with store.db.write() as c:
        _get(c, org, repo, tid)
        if changes:
            changes["updated_at"] = now_rfc3339()
            cols = ", ".join(f"{k} = ?" for k in changes)
            c.execute(f"UPDATE sandbox_triggers SET {cols} WHERE id = ?", (*changes.values(), tid))
        return _trigger_json(_get(c, org, repo, tid))


def delete(store: Store, org: str, repo: str, tid: str) -> None:
    store.get_repo(org, repo)
    with store.db.write() as c:
        _get(c, org, repo, tid)
        c.execute("DELETE FROM sandbox_triggers WHERE id = ?", (tid,))


def _run_json(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"], "repository_id": row["repo_uid"], "trigger_id": row["trigger_id"],
        "commit_id": row["commit_id"], "status": row["status"], "reason": row["reason"],
        "sandbox_id": row["sandbox_id"], "matched_paths": json.loads(row["matched_paths"]),
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def list_runs(store: Store, org: str, repo: str, tid: str, after: str | None,
              amount: int) -> tuple[list[dict[str, Any]], bool]:
    store.get_repo(org, repo)
    with store.db.read() as c:
        _get(c, org, repo, tid)
        rows = c.execute("SELECT * FROM sandbox_trigger_runs WHERE trigger_id = ? AND id > ? "
                         "ORDER BY id LIMIT ?", (tid, after or "", amount + 1)).fetchall()
    return [_run_json(r) for r in rows[:amount]], len(rows) > amount


def _set_run(db: Database, run_id: str, **changes: Any) -> None:
    changes["updated_at"] = now_rfc3339()
    cols = ", ".join(f"{k} = ?" for k in changes)
    with db.write() as c:
        c.execute(f"UPDATE sandbox_trigger_runs SET {cols} WHERE id = ?",
                  (*changes.values(), run_id))


# ---------------------------------------------------------------- firing


def matches(cond: dict[str, str], path: str, status: str) -> bool:
    if cond.get("diff_type") not in ("", "any", None) and cond["diff_type"] != status:
        return False
    if cond["type"] == "prefix":
        return path.startswith(cond.get("prefix") or "")
    return path == cond.get("path")


def fire(store: Store, mgr: SandboxManager, org: str, repo: str, commit_id: str) -> None:
    """Start the sandboxes of the triggers that `commit_id` matches (blocking)."""
    with store.db.read() as c:
        rows = c.execute("SELECT * FROM sandbox_triggers WHERE org = ? AND repo = ? AND "
                         "enabled = 1 ORDER BY id", (org, repo)).fetchall()
    if not rows:
        return
    commit = store.get_commit(org, repo, commit_id)
    parent = commit["parents"][0] if commit["parents"] else ""
    changed: list[tuple[str, str]] = []
    after: str | None = None
    while len(changed) < MAX_DIFF_PATHS:
        page = store.diff(org, repo, left=parent, right=commit_id, after=after, amount=1000)
        changed += [(d.path, d.status) for d in page.items if d.kind == "object"]
        if not page.has_more:
            break
        after = page.next_offset
    for row in rows:
        conds = json.loads(row["conditions"])
        matched = sorted({p for p, st in changed if any(matches(c, p, st) for c in conds)})
        if not matched:
            continue
        run_id = records.time_ordered_id()
        t = now_rfc3339()
        with store.db.write() as c:
            c.execute("INSERT INTO sandbox_trigger_runs(id, trigger_id, repo_uid, commit_id, "
                      "status, reason, sandbox_id, matched_paths, created_at, updated_at) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (run_id, row["id"], row["repo_uid"], commit_id, "pending", "", None,
                       json.dumps(matched[:1000]), t, t))
        try:
            config = json.loads(row["sandbox_config"])
            spec = parse_create({**config, "command": config.get("command")})
            who = records.principal_from_json(row["principal"])
            sandbox_id = mgr.create(org, repo, spec, who, trigger_id=row["id"])
            _set_run(store.db, run_id, status="running", sandbox_id=sandbox_id)
        except StoreError as exc:
            _set_run(store.db, run_id, status="failed", reason=exc.code or "start_failed")
        except Exception:
            log.exception("trigger %s: could not start its sandbox", row["id"])
            _set_run(store.db, run_id, status="failed", reason="internal_error")


def on_sandbox_finished(db: Database, row: records.SandboxRow) -> None:
    """Close the trigger run of a finished sandbox (called by the manager)."""
    if not row.trigger_id:
        return
    ok = row.status in ("committed", "awaiting_approval")  # the latter: a person decides
    reason = ("" if row.status == "committed" else row.status_reason) if ok else (
        row.status_reason or row.status)
    with db.write() as c:
        c.execute("UPDATE sandbox_trigger_runs SET status = ?, reason = ?, updated_at = ? "
                  "WHERE sandbox_id = ?",
                  ("succeeded" if ok else "failed", reason, now_rfc3339(), row.id))


def install(store: Store, mgr: SandboxManager) -> None:
    """Subscribe trigger firing to the store's commits (subtlety 1)."""
    mgr.on_finished = lambda row: on_sandbox_finished(store.db, row)

    def on_commit(event: CommitEvent) -> None:
        if "sandbox_trigger_id" in event.metadata:  # subtlety 2: no loops
            return
        threading.Thread(target=_fire_logged,
                         args=(store, mgr, event.org, event.repo, event.commit_id),
                         daemon=True, name=f"triggers-{uuid.uuid4().hex[:6]}").start()

    store.on_commit(on_commit)


def _fire_logged(store: Store, mgr: SandboxManager, org: str, repo: str, commit_id: str) -> None:
    try:
        fire(store, mgr, org, repo, commit_id)
    except Exception:
        log.exception("sandbox triggers for commit %s failed", commit_id)
