"""Import jobs (spec 2.16): copy a connector's objects, or another repository's, into a
repository as ONE commit, in the background. No HTTP here.

Subtleties:
1. `start_*` validates everything it can synchronously (repository, connector state and
   attachment, prefixes), so bad input is a 4xx and no job; then it records the job as
   `pending` and hands it to a small thread pool (JOB_WORKERS jobs at a time). The job row is
   written before the answer, so `GET .../import/{id}` works at once.
2. A job stages into an internal session (state 'import', invisible to the API) through the
   store's own staging and commit code, so an import commits, conflicts and counts exactly
   like a session commit. Bytes stream from the source into spool files (never whole in
   memory), READ_CONCURRENCY objects at a time; each finished spool is adopted as a blob and
   staged in one write transaction, which is what keeps blob garbage collection safe
   (engine.py subtlety 4).
3. Every imported entry carries `source` (SourceMetadata JSON): connector id and type, the
   source URI of the object, its version id and ETag, the job id and the job's start time.
4. Terminal states: `completed` (commit_id set, or "" when the source held no object, which
   makes no commit) or `failed` (`error` set, nothing committed, staged bytes released). A
   job cannot survive a restart: at start-up every `pending`/`running` job is marked `failed`
   ("interrupted by a server restart") and its internal session is discarded. Stopping the
   server asks running jobs to stop between chunks; they end `failed` the same way.
5. `objects_imported` is null until the job runs, then counts staged objects (written at most
   about once a second while running) and is exact once the job ends.
6. Beside a database several processes share (`shared`), a job is held by a lease: the
   process that runs it (`lease_owner`, a random id per process) renews `lease_until` every
   third of `lease` seconds. Every process looks for jobs whose lease ran out (their owner
   died or hung) and takes them over with one conditional UPDATE, which only one process
   can win; the job starts again from the beginning in a new internal session (the old
   one's staged rows and blobs are released), so its result is still one commit. The
   commit checks, in its own transaction and under the job row's lock, that the lease is
   still this process's and marks the job completed there: a process that lost its lease
   while it was slow cannot commit the import a second time. Stopping a process hands its
   jobs over (the lease is released) instead of failing them; the 4. rule (fail at start)
   is for the embedded server, the one process of its directory.
"""

from __future__ import annotations

import collections
import concurrent.futures
import json
import logging
import mimetypes
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from tilde_server import crashpoints as cp
from tilde_server.store import validation as v
from tilde_server.store.blobs import Spool
from tilde_server.store.connectors import check_uuid
from tilde_server.store.db import Row
from tilde_server.store.engine import STAGE_REPLACE, Obj, now_rfc3339
from tilde_server.store.errors import BadRequest, NotFound, StoreError
from tilde_server.store.listing import key_successor
from tilde_server.store.sources import Source, SourceObject, open_source

if TYPE_CHECKING:
    from tilde_server.store.engine import Principal, Store

log = logging.getLogger("tilde_server.imports")

JOB_WORKERS = 2
LEASE = 30.0  # seconds a process holds an import job without renewing it (6.)
READ_CONCURRENCY = 8
PROGRESS_INTERVAL = 1.0
DEFAULT_MESSAGE = "Import from {source}"
GENERIC_TYPES = ("", "binary/octet-stream", "application/octet-stream")


class _Stopped(Exception):
    """The server is shutting down: the job ends `failed` (or is handed over, 6.)."""


class _LostLease(Exception):
    """Another process took the job over (6.): this run must not commit it."""


@dataclass(frozen=True)
class _Fetched:
    obj: SourceObject
    dest: str
    spool: Spool
    sha: str
    md5: str
    size: int
    version_id: str
    content_type: str


def job_json(row: Row, repo_uid: str, source_repo_uid: str) -> dict[str, Any]:
    return {
        "id": row["id"], "status": row["status"], "repository_id": repo_uid,
        "connector_id": row["connector_id"] or "", "source_prefix": row["source_prefix"],
        "destination_path": row["destination_path"], "commit_message": row["commit_message"],
        "objects_imported": row["objects_imported"], "commit_id": row["commit_id"],
        "error": row["error"], "source_repository_id": source_repo_uid,
        "source_organization": row["source_organization"],
        "source_repository": row["source_repository"],
        "created_by_type": row["created_by_type"], "created_by": row["created_by"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def destination_prefix(destination_path: str) -> str:
    """'' (the root) or a directory prefix ending in '/'."""
    v.text(destination_path, "destination_path")
    d = destination_path.lstrip("/") if destination_path.strip("/") else ""
    if d and not d.endswith("/"):
        d += "/"
    if d:
        v.object_key(d + "x", "destination_path")
    return d


def dir_part(key_prefix: str) -> str:
    """What is cut from a source key to name its destination: up to the last '/'."""
    return key_prefix[: key_prefix.rfind("/") + 1]


class ImportRunner:
    """`shared`: other processes run jobs of the same database (6.); `lease`: seconds."""

    def __init__(self, store: Store, shared: bool = False, lease: float = LEASE) -> None:
        self._store = store
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=JOB_WORKERS, thread_name_prefix="tilde-import")
        self._stop = threading.Event()
        self.shared = shared
        self.lease = lease
        self.owner = secrets.token_hex(8)
        self._keeper: threading.Thread | None = None

    # ======================================================================== leases (6.)
    def start_keeper(self) -> None:
        """Renew this process's leases and take over expired ones, in a daemon thread."""
        if self.shared and self._keeper is None:
            self._keeper = threading.Thread(target=self._keep, name="tilde-import-leases",
                                            daemon=True)
            self._keeper.start()

    def _keep(self) -> None:
        while not self._stop.wait(self.lease / 3):
            try:
                self.renew()
                self.take_over()
            except Exception:  # a database outage: try again next round
                if self._stop.is_set():  # stopping: the store closes its database now
                    return
                log.exception("import leases: renewal or takeover failed")

    def renew(self) -> None:
        with self._db.write() as c:
            c.execute("UPDATE import_jobs SET lease_until = ? WHERE lease_owner = ? "
                      "AND status IN ('pending', 'running')",
                      (time.time() + self.lease, self.owner))

    def take_over(self) -> list[str]:
        """Claim and restart every job whose lease ran out; returns their ids."""
        now = time.time()
        with self._db.read() as c:
            candidates = [r[0] for r in c.execute(
                "SELECT id FROM import_jobs WHERE status IN ('pending', 'running') "
                "AND (lease_until IS NULL OR lease_until < ?)", (now,))]
        taken = []
        for job_id in candidates:
            with self._db.write() as c:
                row = c.execute(
                    "UPDATE import_jobs SET lease_owner = ?, lease_until = ?, "
                    "status = 'pending', objects_imported = NULL, updated_at = ? "
                    "WHERE id = ? AND status IN ('pending', 'running') "
                    "AND (lease_until IS NULL OR lease_until < ?) "
                    "RETURNING session_uid, created_by_type, created_by",
                    (self.owner, time.time() + self.lease, now_rfc3339(), job_id,
                     now)).fetchone()
                who = self._principal(c, row["created_by_type"], row["created_by"]) \
                    if row is not None else None
            if row is None:  # another process was first
                continue
            if row["session_uid"]:
                self._discard_session(row["session_uid"])
            if who is None:
                self._fail(job_id, "the principal that started the import no longer exists")
                continue
            log.info("import %s: lease expired, taken over by this process", job_id)
            taken.append(job_id)
            self._pool.submit(self._run, job_id, who)
        return taken

    @staticmethod
    def _principal(c: Any, kind: str, pid: str) -> Principal | None:
        from tilde_server.store.engine import Principal

        if kind == "user":
            u = c.execute("SELECT username FROM users WHERE id = ?", (pid,)).fetchone()
            return Principal(pid, u[0]) if u else None
        table = {"agent": "agents", "role": "roles"}.get(kind)
        if table is None:
            return None
        row = c.execute(f"SELECT name, org_id FROM {table} WHERE id = ?", (pid,)).fetchone()
        return Principal(pid, row[0], kind, row[1]) if row else None

    @property
    def _db(self) -> Any:
        return self._store.db

    # ======================================================================== lifecycle
    def recover(self) -> None:
        """Start-up: jobs a previous run left unfinished end `failed`; their sessions go."""
        with self._db.read() as c:
            rows = c.execute("SELECT id, session_uid FROM import_jobs "
                             "WHERE status IN ('pending', 'running')").fetchall()
        for row in rows:
            self._fail(row["id"], "interrupted by a server restart; start the import again")
            if row["session_uid"]:
                self._discard_session(row["session_uid"])
        if rows:
            log.info("marked %d unfinished import job(s) failed (restart)", len(rows))
        # Internal sessions whose job row is gone or finished (crash between steps).
        with self._db.read() as c:
            stale = [r[0] for r in c.execute(
                "SELECT uid FROM sessions WHERE state = 'import' AND uid NOT IN (SELECT "
                "session_uid FROM import_jobs WHERE session_uid IS NOT NULL AND status = "
                "'running')")]
        for uid in stale:
            self._discard_session(uid)

    def shutdown(self) -> None:
        """Ask running jobs to stop and wait for the workers. They end `failed`, or beside
        other processes go back to them: the lease is released (6.)."""
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.shared:
            with self._db.write() as c:
                c.execute("UPDATE import_jobs SET lease_until = 0 WHERE lease_owner = ? "
                          "AND status IN ('pending', 'running')", (self.owner,))
            return
        with self._db.read() as c:
            left = [r[0] for r in c.execute(
                "SELECT id FROM import_jobs WHERE status IN ('pending', 'running')")]
        for job_id in left:
            self._fail(job_id, "the server stopped before the import finished")

    # ======================================================================== API
    def start_from_connector(self, org: str, repo: str, connector_id: str,
                             destination_path: str, source_prefix: str | None,
                             commit_message: str | None, who: Principal) -> str:
        dest = destination_prefix(destination_path)
        with self._db.read() as c:
            r = self._store.repo_row(c, org, repo)
            k = self._store.connectors.for_import(c, r, connector_id)
            self._key_prefix(k["type"], self._store.connectors.config_of(k), source_prefix)
        message = commit_message if commit_message is not None else DEFAULT_MESSAGE.format(
            source=source_prefix or k["source_uri"])
        v.text(message, "commit_message")
        return self._insert(r, who, connector_id=k["id"], source_prefix=source_prefix or "",
                            destination=dest, message=message)

    def start_from_repository(self, org: str, repo: str, source_org: str, source_repo: str,
                              destination_path: str, source_prefix: str | None,
                              commit_message: str | None, who: Principal) -> str:
        dest = destination_prefix(destination_path)
        prefix = v.text(source_prefix or "", "source_prefix").lstrip("/")
        with self._db.read() as c:
            r = self._store.repo_row(c, org, repo)
            src = self._store.repo_row(c, source_org, source_repo)
        message = commit_message if commit_message is not None else DEFAULT_MESSAGE.format(
            source=f"{source_org}/{source_repo}" + (f"/{prefix}" if prefix else ""))
        v.text(message, "commit_message")
        return self._insert(r, who, source_repo_id=src["id"], source_org=source_org,
                            source_repo=source_repo, source_prefix=prefix, destination=dest,
                            message=message)

    def get(self, org: str, repo: str, job_id: str) -> dict[str, Any]:
        jid = check_uuid(job_id, "job_id")
        with self._db.read() as c:
            r = self._store.repo_row(c, org, repo)
            row = c.execute("SELECT * FROM import_jobs WHERE id = ? AND repo_id = ?",
                            (jid, r["id"])).fetchone()
            if row is None:
                raise NotFound(f"import job {job_id!r} not found", "import_not_found")
            src_uid = ""
            if row["source_repo_id"] is not None:
                s = c.execute("SELECT uid FROM repos WHERE id = ?",
                              (row["source_repo_id"],)).fetchone()
                src_uid = s[0] if s else ""
        return job_json(row, r["uid"], src_uid)

    # ======================================================================== helpers
    def _insert(self, r: Row, who: Principal, *, connector_id: str | None = None,
                source_repo_id: int | None = None, source_org: str = "", source_repo: str = "",
                source_prefix: str, destination: str, message: str) -> str:
        job_id = str(uuid.uuid4())
        t = now_rfc3339()
        with self._db.write() as c:
            c.execute(
                "INSERT INTO import_jobs(id, repo_id, connector_id, source_repo_id, "
                "source_organization, source_repository, source_prefix, destination_path, "
                "commit_message, status, objects_imported, commit_id, error, created_by_type, "
                "created_by, created_at, updated_at, lease_owner, lease_until) "
                "VALUES (?,?,?,?,?,?,?,?,?,'pending',NULL,'','',?,?,?,?,?,?)",
                (job_id, r["id"], connector_id, source_repo_id, source_org, source_repo,
                 source_prefix, destination, message, who.type,
                 who.user_id, t, t, self.owner, time.time() + self.lease))
        self._pool.submit(self._run, job_id, who)
        return job_id

    @staticmethod
    def _key_prefix(kind: str, config: dict[str, Any], source_prefix: str | None) -> str:
        """The source key prefix an import lists: the connector's base prefix, narrowed by
        `source_prefix` (relative to it, or a full URI inside the connector's source)."""
        base = config.get("prefix", "") if kind == "s3" else ""
        sp = v.text(source_prefix or "", "source_prefix")
        if "://" not in sp:
            return base + sp.lstrip("/")
        u = urlparse(sp)
        if kind == "s3":
            key = u.path.lstrip("/")
            if u.scheme != "s3" or u.netloc != config["bucket"] or not key.startswith(base):
                raise BadRequest(f"source_prefix {sp!r} is not inside this connector's "
                                 f"source s3://{config['bucket']}/{base}", "invalid_source")
            return key
        root = config["path"].rstrip("/") + "/"
        path = unquote(u.path)
        if u.scheme != "file" or not (path + "/").startswith(root):
            raise BadRequest(f"source_prefix {sp!r} is not inside this connector's directory "
                             f"{root}", "invalid_source")
        return path[len(root):]

    def _set(self, job_id: str, **fields: Any) -> None:
        """Update the job row; beside other processes only while this one holds it (6.)."""
        fields["updated_at"] = now_rfc3339()
        cols = ", ".join(f"{k} = ?" for k in fields)
        held = " AND lease_owner = ?" if self.shared else ""
        with self._db.write() as c:
            c.execute(f"UPDATE import_jobs SET {cols} WHERE id = ?{held}",
                      (*fields.values(), job_id, *([self.owner] if self.shared else [])))

    def _fail(self, job_id: str, error: str) -> None:
        self._set(job_id, status="failed", error=error)

    def _discard_session(self, uid: str) -> None:
        """Drop an internal session's staged rows and spools, then unreferenced blobs."""
        with self._db.write() as c:
            s = c.execute("SELECT id FROM sessions WHERE uid = ?", (uid,)).fetchone()
            blobs: list[str] = []
            if s is not None:
                blobs = [row[0] for row in c.execute(
                    "SELECT DISTINCT blob FROM staged WHERE session_id = ? AND blob IS NOT NULL",
                    (s[0],))]
                c.execute("DELETE FROM staged WHERE session_id = ?", (s[0],))
                c.execute("UPDATE sessions SET state = 'rolled_back', closed_at = ? "
                          "WHERE id = ? AND state = 'import'", (now_rfc3339(), s[0]))
        self._store.blobs.drop_spools(uid)
        self._store.collect_blobs(blobs)

    def _new_session(self, job_id: str, repo_id: int, who: Principal) -> Row:
        uid = str(uuid.uuid4())
        with self._db.write() as c:
            r = c.execute("SELECT * FROM repos WHERE id = ? AND deleted_at IS NULL",
                          (repo_id,)).fetchone()
            if r is None:
                raise NotFound("the repository was deleted", "repository_not_found")
            s = c.execute(
                "INSERT INTO sessions(uid, repo_id, base_seq, state, created_by, created_at) "
                "VALUES (?,?,?,'import',?,?) RETURNING *",
                (uid, repo_id, r["head_seq"], who.user_id, now_rfc3339())).fetchone()
            held = " AND lease_owner = ?" if self.shared else ""
            if not c.execute("UPDATE import_jobs SET session_uid = ?, status = 'running', "
                             f"objects_imported = 0, updated_at = ? WHERE id = ?{held} "
                             "RETURNING id", (uid, now_rfc3339(), job_id,
                                              *([self.owner] if self.shared else []))
                             ).fetchone():
                raise _LostLease
        row: Row = s
        return row

    def _commit(self, job_id: str, s: Row, message: str, who: Principal,
                count: int) -> str:
        """Commit the internal session (conflict check included) and mark the job completed,
        in one transaction that holds the job's lease (6.); '' when nothing was staged."""
        with self._db.write() as c:
            job = c.execute("SELECT lease_owner FROM import_jobs WHERE id = ?" + c.for_update(),
                            (job_id,)).fetchone()
            if self.shared and (job is None or job[0] != self.owner):
                raise _LostLease
            r = c.execute("SELECT * FROM repos WHERE id = ? AND deleted_at IS NULL"
                          + c.for_update(), (s["repo_id"],)).fetchone()
            if r is None:
                raise NotFound("the repository was deleted", "repository_not_found")
            commit_id = ""
            if not c.execute("SELECT 1 FROM staged WHERE session_id = ? LIMIT 1",
                             (s["id"],)).fetchone():
                c.execute("UPDATE sessions SET state = 'committed', closed_at = ? WHERE id = ?",
                          (r["created_at"], s["id"]))
            else:
                self._store.check_conflicts(c, r, s)
                commit_id = self._store.apply_session(c, r, s, message, {"import_job_id": job_id},
                                               who)
            c.execute("UPDATE import_jobs SET status = 'completed', objects_imported = ?, "
                      "commit_id = ?, error = '', updated_at = ? WHERE id = ?",
                      (count, commit_id, now_rfc3339(), job_id))
            cp.reached(cp.IMPORT_BEFORE_DB_COMMIT)
            return commit_id

    # ======================================================================== the worker
    def _run(self, job_id: str, who: Principal) -> None:
        session: Row | None = None
        try:
            with self._db.read() as c:
                job = c.execute("SELECT * FROM import_jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None or job["status"] != "pending":
                return
            if self._stop.is_set():
                raise _Stopped
            session = self._new_session(job_id, job["repo_id"], who)
            started = now_rfc3339()
            if job["connector_id"]:
                count = self._import_connector(job, session, started)
            else:
                count = self._import_repository(job, session, started)
            cp.reached(cp.IMPORT_STAGED)
            commit_id = self._commit(job_id, session, job["commit_message"], who, count)
            log.info("import %s completed: %d object(s), commit %s", job_id, count,
                     commit_id or "(none)")
        except _Stopped:
            if not self.shared:  # beside other processes shutdown() hands the job over
                self._fail(job_id, "the server stopped before the import finished")
        except _LostLease:
            log.warning("import %s: another process took the job over (this one was too "
                        "slow to renew its lease); this run's work is dropped", job_id)
            if session is not None:  # rows it staged after the taker released the session
                self._discard_session(session["uid"])
        except StoreError as exc:
            log.info("import %s failed: %s", job_id, exc.message)
            self._fail(job_id, exc.message)
        except Exception as exc:  # a bug or an unexpected source failure: keep the job honest
            log.exception("import %s failed unexpectedly", job_id)
            self._fail(job_id, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            if session is not None:
                with self._db.read() as c:
                    state = c.execute("SELECT state FROM sessions WHERE id = ?",
                                      (session["id"],)).fetchone()
                if state is not None and state[0] == "import":
                    self._discard_session(session["uid"])

    def _import_connector(self, job: Row, s: Row, started: str) -> int:
        conns = self._store.connectors
        with self._db.read() as c:
            r = c.execute("SELECT * FROM repos WHERE id = ?", (job["repo_id"],)).fetchone()
            k = conns.for_import(c, r, job["connector_id"])
        config = conns.config_of(k)
        source = open_source(k["type"], config, conns.settings)
        key_prefix = self._key_prefix(k["type"], config, job["source_prefix"] or None)
        cut, dest = dir_part(key_prefix), job["destination_path"]

        def fetch(obj: SourceObject, target: str) -> _Fetched:
            return self._fetch(source, s["uid"], obj, target)

        count = 0
        last = time.monotonic()
        inflight: collections.deque[concurrent.futures.Future[_Fetched]] = collections.deque()
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=READ_CONCURRENCY, thread_name_prefix="tilde-import-read") as pool:
            try:
                for obj in source.list(key_prefix):
                    if self._stop.is_set():
                        raise _Stopped
                    if obj.key.endswith("/"):
                        continue  # a "directory marker": no content to import
                    rel = obj.key[len(cut):]
                    target = dest + rel
                    v.object_key(target, f"destination of {source.uri_of(obj.key)}")
                    inflight.append(pool.submit(fetch, obj, target))
                    if len(inflight) >= 2 * READ_CONCURRENCY:
                        self._stage(s, k, job, inflight.popleft().result(), source, started)
                        count += 1
                    if time.monotonic() - last > PROGRESS_INTERVAL:
                        self._set(job["id"], objects_imported=count)
                        last = time.monotonic()
                while inflight:
                    self._stage(s, k, job, inflight.popleft().result(), source, started)
                    count += 1
            finally:
                for f in inflight:
                    f.cancel()
        return count

    def _fetch(self, source: Source, session_uid: str, obj: SourceObject,
               target: str) -> _Fetched:
        """Stream one object into a spool file (worker thread of the job's read pool)."""
        opened = source.read(obj)
        spool = self._store.blobs.open_spool(session_uid, "i-" + secrets.token_hex(12))
        try:
            for chunk in opened.chunks:
                if self._stop.is_set():
                    raise _Stopped
                spool.write(chunk)
            sha, md5, size = spool.finish()
        except BaseException:
            spool.abort()
            raise
        ctype = opened.content_type
        if ctype in GENERIC_TYPES:
            ctype = mimetypes.guess_type(target)[0] or "application/octet-stream"
        return _Fetched(obj, target, spool, sha, md5, size, opened.version_id, ctype)

    def _stage(self, s: Row, k: Row, job: Row, f: _Fetched,
               source: Source, started: str) -> None:
        meta = {"connector_id": k["id"], "connector_type": k["type"],
                "source_path": source.uri_of(f.obj.key), "version_id": f.version_id,
                "source_etag": f.obj.etag, "import_job_id": job["id"], "import_time": started}
        with self._db.write() as c:
            self._store.adopt_blob(c, f.spool.path, f.sha)
            replaced = self._store.stage_put(c, s["id"], Obj(
                f.dest, f.sha, f.size, f.md5, f.content_type, {}, now_rfc3339(), True, meta))
        if replaced:
            self._store.collect_blobs([replaced])

    def _import_repository(self, job: Row, s: Row, started: str) -> int:
        """Reference the source repository's blobs at its head: no bytes are copied."""
        prefix, cut, dest = job["source_prefix"], dir_part(job["source_prefix"]), \
            job["destination_path"]
        upper = key_successor(prefix) if prefix else None
        with self._db.write() as c:
            src = c.execute("SELECT r.*, o.name AS org_name FROM repos r JOIN orgs o "
                            "ON o.id = r.org_id WHERE r.id = ? AND r.deleted_at IS NULL",
                            (job["source_repo_id"],)).fetchone()
            if src is None:
                raise NotFound("the source repository was deleted", "repository_not_found")
            head = c.execute("SELECT id FROM commits WHERE repo_id = ? AND seq = ?",
                             (src["id"], src["head_seq"])).fetchone()
            version = head[0] if head else ""
            base = f"{job['source_organization']}/{job['source_repository']}/"
            bound = " AND path < ?" if upper is not None else ""
            args: tuple[Any, ...] = (src["id"], prefix) + ((upper,) if upper else ())
            rows = c.execute(
                "SELECT path, blob, size, etag, content_type, metadata FROM entries "
                f"WHERE repo_id = ? AND to_seq IS NULL AND path >= ?{bound} ORDER BY path",
                args)
            count = 0
            t = now_rfc3339()
            for row in rows:
                if self._stop.is_set():
                    raise _Stopped
                target = dest + row["path"][len(cut):]
                v.object_key(target, "destination path")
                meta = {"connector_id": "", "connector_type": "repository",
                        "source_path": base + row["path"], "version_id": version,
                        "source_etag": row["etag"], "import_job_id": job["id"],
                        "import_time": started}
                c.execute(
                    "INSERT INTO staged(session_id, path, op, blob, size, etag, "
                    "content_type, metadata, last_modified, source) "
                    "VALUES (?,?,'put',?,?,?,?,?,?,?)" + STAGE_REPLACE,
                    (s["id"], target, row["blob"], row["size"], row["etag"],
                     row["content_type"], row["metadata"], t, json.dumps(meta)))
                count += 1
        return count

