"""Sandboxes (spec 2.8, 4, 5.1): create/list/get/status/cancel/finish, logs, the terminal and
exec WebSockets, and the in-sandbox credentials endpoint (2.17).

Subtleties:
1. The status vocabulary is chosen per request: 0.7.2 names by default, 0.7.9 names (`done`,
   `errored`) when the User-Agent starts with `tilde-python-sdk/X.Y.Z` >= 0.7.9 (spec 5.1,
   tilde-api-changes.md item 16), on `GET {S}/status`, `GET {S}`, list items and finish.
2. The HTTP middleware does not look at WebSocket scopes, so both WebSocket routes check the
   bearer token themselves before accepting (a refused handshake is an HTTP 403/401).
3. Terminal frames: input (0x00) is written to the shell's stdin in order, in a worker thread;
   output goes out as 0x01 frames of at most 64 KiB, never splitting a UTF-8 sequence. A
   client closing the socket is not a cancel and does not close the shell's stdin: the shell
   ends on `exit`, on DELETE, or at its timeout. When the shell exits: 0x03 exit frame, close
   1000.
4. `POST {S}/finish` answers once the commit (or the move to approval) is done, waiting at
   most FINISH_WAIT seconds (0.7.6/0.7.7 clients give up after 5 s and never poll after
   finish): 200 with the final status, 202 if the teardown is still going, 409 if the
   sandbox ended (or ends) unsuccessfully. Finishing a sandbox that already committed is 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import threading
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tilde_server.routes.common import (
    amount,
    client_version,
    json_body,
    org_repo,
    principal,
    query,
    run,
)
from tilde_server.routes.identity import approval_url
from tilde_server.sandbox import records
from tilde_server.sandbox.manager import (
    CHUNK,
    NETWORK_LOG,
    TERMINAL,
    LiveSandbox,
    SandboxManager,
    utf8_cut,
)
from tilde_server.sandbox.spec import SandboxSpec, check_command, check_env, parse_create
from tilde_server.store import (
    BadRequest,
    Conflict,
    Gone,
    Principal,
    StoreError,
    Unauthorized,
    Unavailable,
)

R = "/organizations/{org}/repositories/{repo}"
S = R + "/sandboxes/{sandbox_id}"
MAX_WS_MESSAGE = 1024 * 1024
STDIN_GRACE = 0.3
FINISH_WAIT = 4.0

with contextlib.suppress(ImportError):  # the authorization layer, when present
    from tilde_server.authz import declare

    declare(R + "/sandboxes", GET="sandbox:read", POST="sandbox:write")
    declare(S, GET="sandbox:read", DELETE="sandbox:write")
    declare(S + "/status", GET="sandbox:read")
    declare(S + "/logs/stdout", GET="sandbox:read")
    declare(S + "/logs/network", GET="sandbox:read")
    declare(S + "/finish", POST="sandbox:write")


def manager(request: Request | WebSocket) -> SandboxManager:
    mgr: SandboxManager | None = getattr(request.app.state, "sandboxes", None)
    if mgr is None:
        raise Unavailable("sandboxes are not enabled on this server", "sandboxes_disabled")
    return mgr


def new_vocabulary(request: Request) -> bool:
    version = client_version(request)
    return version is not None and version >= (0, 7, 9)


def view_status(row: records.SandboxRow, v079: bool) -> tuple[str, str]:
    status, reason = row.status, row.status_reason
    if v079:
        status = {"committed": "done", "error": "errored",
                  "awaiting_approval": "done"}.get(status, status)
    return status, reason


def web_url_of(request: Request, row: records.SandboxRow) -> str:
    """The review URL of a sandbox whose commit waits for a person ('' otherwise)."""
    if row.status != "awaiting_approval":
        return ""
    return approval_url(request, row.org, row.repo, row.session_id)


def status_json(row: records.SandboxRow, v079: bool, web_url: str = "") -> dict[str, Any]:
    status, reason = view_status(row, v079)
    return {"status": status, "status_reason": reason, "exit_code": row.exit_code,
            "commit_id": row.commit_id, "web_url": web_url, "error_message": row.error_message}


def sandbox_json(row: records.SandboxRow, v079: bool, web_url: str = "") -> dict[str, Any]:
    spec = SandboxSpec.from_json(row.spec)
    who = records.principal_from_json(row.created_by)
    d: dict[str, Any] = {
        "id": row.id, "repository_id": row.repo_uid, "image": spec.image,
        "command": spec.command or [], "mountpoint": spec.mountpoint,
        "path_prefix": spec.path_prefix, "timeout_seconds": spec.timeout_seconds,
        "interactive": spec.interactive, "mode": spec.mode, "env_vars": spec.env_vars,
        "session_id": row.session_id, "resources": spec.resources,
        "created_by_type": getattr(who, "type", "user"), "created_by": who.user_id,
        "created_at": row.created_at, "updated_at": row.updated_at,
        "finished_at": row.finished_at,
    }
    d.update(status_json(row, v079, web_url))
    if row.trigger_id:
        d["trigger_id"] = row.trigger_id
    return d


# ---------------------------------------------------------------- HTTP routes


async def create(request: Request) -> Response:
    org, repo = org_repo(request)
    mgr = manager(request)
    body = await json_body(request)
    spec = parse_create(body, resources=mgr.resources)
    sid = await run(mgr.create, org, repo, spec, principal(request))
    return JSONResponse({"sandbox_id": sid}, status_code=201)


async def list_(request: Request) -> Response:
    org, repo = org_repo(request)
    mgr = manager(request)
    await run(mgr.store.get_repo, org, repo)
    rows, has_more = await run(records.list_sandboxes, mgr.db, org, repo,
                               query(request, "after"), amount(request))
    rows = [await run(records.resolve_approval, mgr.db, r)
            if r.status == "awaiting_approval" else r for r in rows]
    v079 = new_vocabulary(request)
    return JSONResponse({"results": [sandbox_json(r, v079, web_url_of(request, r))
                                     for r in rows],
                         "pagination": {"has_more": has_more,
                                        "next_offset": rows[-1].id if has_more else None,
                                        "max_per_page": 1000}})


async def _row(request: Request) -> records.SandboxRow:
    org, repo = org_repo(request)
    mgr = manager(request)
    row = await run(records.get_sandbox, mgr.db, org, repo, request.path_params["sandbox_id"])
    if row.status == "awaiting_approval":  # a person may have decided since
        row = await run(records.resolve_approval, mgr.db, row)
    return row


async def get_or_cancel(request: Request) -> Response:
    if request.method == "DELETE":
        org, repo = org_repo(request)
        status = await run(manager(request).cancel, org, repo,
                           request.path_params["sandbox_id"])
        return JSONResponse({"message": f"sandbox {status}", "status": status},
                            status_code=202)
    row = await _row(request)
    return JSONResponse(sandbox_json(row, new_vocabulary(request), web_url_of(request, row)))


async def status(request: Request) -> Response:
    row = await _row(request)
    return JSONResponse(status_json(row, new_vocabulary(request), web_url_of(request, row)))


async def finish(request: Request) -> Response:
    """Subtlety 4: commit before answering."""
    org, repo = org_repo(request)
    mgr = manager(request)
    row = await run(mgr.finish, org, repo, request.path_params["sandbox_id"], FINISH_WAIT)
    if row.status == "awaiting_approval":  # a person may have decided since
        row = await run(records.resolve_approval, mgr.db, row)
    if row.status in ("failed", "error", "cancelled"):
        raise Conflict(f"sandbox {row.id} ended {row.status} ({row.status_reason})"
                       + (f": {row.error_message}" if row.error_message else ""),
                       "sandbox_finished")
    done = row.status in ("committed", "awaiting_approval")
    body = {"message": "finished" if done else "finishing",
            **status_json(row, new_vocabulary(request), web_url_of(request, row))}
    return JSONResponse(body, status_code=200 if done else 202)


async def _log(request: Request, name: str, media_type: str) -> Response:
    """What there is so far, then the response ends (no long-poll, spec 2.8.3); 410 once
    the server deleted the sandbox's logs (`--sandbox-log-retention`)."""
    row = await _row(request)
    mgr = manager(request)
    if mgr.logs_expired(row.id):
        raise Gone(f"the logs of sandbox {row.id} are no longer available (they are kept "
                   f"{_days(mgr.log_retention)} after the sandbox ends)", "logs_gone")
    data = await run(mgr.logs.read, row.id, name)
    return Response(data, media_type=media_type)


def _days(seconds: float | None) -> str:
    if seconds is None:
        return "for ever"
    return f"{seconds / 86400:g} days" if seconds >= 86400 else f"{seconds:g} s"


async def logs_stdout(request: Request) -> Response:
    return await _log(request, "stdout.log", "text/plain; charset=utf-8")


async def logs_network(request: Request) -> Response:
    """NDJSON, one line per request or tunnel through the sandbox's egress proxy
    (sandbox/egress.py; docs/sandboxes.md has the fields)."""
    return await _log(request, NETWORK_LOG, "application/x-ndjson")


# ---------------------------------------------------------------- credentials (2.17)


async def credentials(request: Request) -> Response:
    """`GET /_tilde/sandbox-credentials/{id}/{secret}`: a fresh repository-scoped token."""
    mgr = manager(request)
    sid, secret = request.path_params["sandbox_id"], request.path_params["secret"]
    sb = mgr.live(sid)
    if sb is None or not _same(secret, mgr.credentials_secret(sid)):
        return JSONResponse({"message": "unknown or finished sandbox", "code": "not_found"},
                            status_code=404)
    token, expires = await run(mgr.issue_credentials, sb)
    import datetime as dt

    exp = dt.datetime.fromtimestamp(expires, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    who = sb.who
    return JSONResponse({
        "access_token": token, "expires_at": exp,
        "principal_type": getattr(who, "type", "user"), "principal_id": who.user_id,
        "principal_name": who.username, "organization_id": "", "api_url": mgr.endpoint,
    })


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


# ---------------------------------------------------------------- WebSockets


async def _ws_auth(ws: WebSocket) -> tuple[SandboxManager, LiveSandbox] | None:
    """Bearer check + lookup; on failure the handshake is refused (returns None)."""
    mgr: SandboxManager | None = getattr(ws.app.state, "sandboxes", None)
    auth = ws.headers.get("authorization", "")
    scheme, _, key = auth.partition(" ")
    if mgr is None or scheme.lower() != "bearer" or not key.strip():
        await ws.close(code=1008)
        return None
    try:
        who: Principal = await anyio.to_thread.run_sync(
            ws.app.state.authenticators.authenticate, key.strip())
        org, repo = ws.path_params["org"], ws.path_params["repo"]
        allowed = await anyio.to_thread.run_sync(mgr.ws_allowed, key.strip(), org, repo, who)
        if not allowed:
            raise Unauthorized("not allowed")
        row = await anyio.to_thread.run_sync(records.get_sandbox, mgr.db, org, repo,
                                             ws.path_params["sandbox_id"])
        authorizer = getattr(ws.app.state, "authorizer", None)
        if authorizer is not None:
            await anyio.to_thread.run_sync(authorizer.require, who, org, repo,
                                           [("sandbox:write", None)])
    except StoreError:
        await ws.close(code=1008)
        return None
    sb = mgr.live(row.id)
    if sb is None and row.status not in TERMINAL and mgr.shared and row.owner \
            and row.owner != mgr.owner and not ws.headers.get(RELAYED):
        target = await anyio.to_thread.run_sync(records.process_url, mgr.db, row.owner)
        if target:
            await _relay(ws, target)
            return None
    if sb is None or row.status in TERMINAL:
        await ws.close(code=1008)
        return None
    return mgr, sb


async def _relay(ws: WebSocket, target: str) -> None:
    """A sandbox's WebSocket that reached another process of the deployment: relayed, frame
    by frame both ways, to the same route of the process running the sandbox (manager.py
    8.), with the caller's bearer; one hop only (RELAYED). Close codes pass through."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    headers = {"Authorization": ws.headers.get("authorization", ""), RELAYED: "1"}
    if ws.headers.get("user-agent"):
        headers["User-Agent"] = ws.headers["user-agent"]
    query = f"?{ws.url.query}" if ws.url.query else ""
    url = "ws" + target.removeprefix("http") + ws.url.path + query
    try:
        upstream = await connect(url, additional_headers=headers, max_size=None,
                                 open_timeout=10, ping_interval=None)
    except Exception as exc:  # refused or unreachable: as a dead owner would be
        log.info("sandbox WebSocket relay to %s failed: %s", target, exc)
        await ws.close(code=1008)
        return
    await ws.accept()

    async def down() -> None:  # the owner -> the caller
        with contextlib.suppress(ConnectionClosed):
            async for msg in upstream:
                if isinstance(msg, bytes):
                    await ws.send_bytes(msg)
                else:
                    await ws.send_text(msg)

    async def up() -> None:  # the caller -> the owner
        while True:
            m = await ws.receive()
            if m["type"] == "websocket.disconnect":
                return
            if m.get("bytes") is not None:
                await upstream.send(m["bytes"])
            elif m.get("text") is not None:
                await upstream.send(m["text"])

    tasks = [asyncio.ensure_future(down()), asyncio.ensure_future(up())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        code = upstream.close_code or 1000
        await upstream.close()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await ws.close(code=code)


class _Feed:
    """Thread -> event loop bridge for output chunks (b"" ends the feed)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def __call__(self, data: bytes) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed
            self.loop.call_soon_threadsafe(self.queue.put_nowait, data)


log = logging.getLogger("tilde_server.sandbox")
# The header a relayed WebSocket carries: the owner serves it, never relays it again.
RELAYED = "x-tilde-relayed"


async def terminal(ws: WebSocket) -> None:
    found = await _ws_auth(ws)
    if found is None:
        return
    mgr, sb = found
    if sb.spec.mode != "interactive" or sb.proc is None:
        await ws.close(code=1008)
        return
    await ws.accept()
    feed = _Feed()
    unsubscribe = sb.output.subscribe(feed)

    async def pump_out() -> None:
        while True:
            data = await feed.queue.get()
            if not data:
                break
            for i in range(0, len(data), CHUNK):
                await ws.send_bytes(b"\x01" + data[i:i + CHUNK])
        proc = sb.proc
        code = await anyio.to_thread.run_sync(_wait, proc)
        await ws.send_bytes(b"\x03" + json.dumps({"exited": True, "exit_code": code}).encode())
        await ws.close(code=1000)

    async def pump_in() -> None:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                return
            data = msg.get("bytes")
            if data is None:
                text = msg.get("text")
                data = b"\x00" + text.encode() if text else None
            if not data:
                continue
            if data[0] == 0x00 and len(data) > 1:
                await anyio.to_thread.run_sync(mgr.write_stdin, sb, data[1:])
            # 0x02 resize: there is no terminal (pipes), nothing to resize

    out_task = asyncio.ensure_future(pump_out())
    in_task = asyncio.ensure_future(pump_in())
    try:
        await asyncio.wait({out_task, in_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        unsubscribe()
        for t in (out_task, in_task):
            if not t.done():
                t.cancel()
        for t in (out_task, in_task):
            with contextlib.suppress(BaseException):
                await t


def _wait(proc: subprocess.Popen[bytes] | None) -> int:
    if proc is None:
        return -1
    code = proc.wait()
    return code


async def exec_ws(ws: WebSocket) -> None:
    """0.7.9 `/exec`: one command per connection, separate stdout (0x03) and stderr (0x04),
    exit frame 0x05 `{"exit_code": N}`. Each run is a new bwrap process over the same mount."""
    found = await _ws_auth(ws)
    if found is None:
        return
    mgr, sb = found
    await ws.accept()
    try:
        first = await ws.receive_bytes()
    except (WebSocketDisconnect, KeyError, RuntimeError):
        return
    try:
        if not first or first[0] != 0x00:
            raise BadRequest("the first frame must be 0x00 launch JSON")
        launch = json.loads(first[1:])
        if not isinstance(launch, dict):
            raise BadRequest("launch frame must hold a JSON object")
        cmd = check_command(launch.get("cmd"), "cmd")
        assert cmd is not None
        env_in = launch.get("env")
        if env_in is not None and not isinstance(env_in, dict):
            raise BadRequest("env must be an object")
        env = check_env(env_in)
        cwd = launch.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise BadRequest("cwd must be a string")
    except (BadRequest, ValueError) as exc:
        msg = exc.message if isinstance(exc, BadRequest) else "launch frame is not valid JSON"
        await ws.send_bytes(b"\x04" + f"tilde: {msg}\n".encode())
        await ws.send_bytes(b"\x05" + json.dumps({"exit_code": 2}).encode())
        await ws.close(code=1000)
        return
    if cwd and not cwd.startswith("/"):
        cwd = sb.spec.mountpoint.rstrip("/") + "/" + cwd
    full_env = mgr.sandbox_env(sb)
    full_env.update(env)
    # A client with stdin sends 0x01/0x02 right after the launch frame; without them the child
    # must see a closed stdin, so wait briefly for them before choosing.
    early: list[bytes] = []
    with contextlib.suppress(TimeoutError):
        first_msg: Any = await asyncio.wait_for(_receive(ws), STDIN_GRACE)
        if first_msg["type"] == "websocket.disconnect":
            return
        if first_msg.get("bytes"):
            early.append(first_msg["bytes"])
    try:
        proc = await anyio.to_thread.run_sync(mgr.start_exec, sb, cmd, full_env, cwd,
                                              bool(early))
    except Exception as exc:
        await ws.send_bytes(b"\x04" + f"tilde: cannot start: {exc}\n".encode())
        await ws.send_bytes(b"\x05" + json.dumps({"exit_code": 127}).encode())
        await ws.close(code=1000)
        return
    out, err = _Feed(), _Feed()
    readers = [threading.Thread(target=_read_into, args=(proc.stdout, out, mgr, sb), daemon=True),
               threading.Thread(target=_read_into, args=(proc.stderr, err, mgr, sb), daemon=True)]
    for t in readers:
        t.start()

    async def forward(feed: _Feed, kind: bytes) -> None:
        while True:
            data = await feed.queue.get()
            if not data:
                return
            for i in range(0, len(data), CHUNK):
                await ws.send_bytes(kind + data[i:i + CHUNK])

    async def stdin_pump() -> None:
        while True:
            if early:
                data = early.pop(0)
            else:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    return
                data = msg.get("bytes") or b""
            if not data:
                continue
            if data[0] == 0x01:
                await anyio.to_thread.run_sync(_write, proc, data[1:])
            elif data[0] == 0x02:
                await anyio.to_thread.run_sync(_close_stdin, proc)

    in_task = asyncio.ensure_future(stdin_pump())
    try:
        await asyncio.gather(forward(out, b"\x03"), forward(err, b"\x04"))
        code = await anyio.to_thread.run_sync(proc.wait)
        await ws.send_bytes(b"\x05" + json.dumps({"exit_code": code}).encode())
        await ws.close(code=1000)
    finally:
        in_task.cancel()
        with contextlib.suppress(BaseException):
            await in_task
        if proc.poll() is None:
            await anyio.to_thread.run_sync(mgr.end_exec, sb, proc)
        sb.exec_procs.discard(proc)


async def _receive(ws: WebSocket) -> Any:
    return await ws.receive()


def _read_into(stream: Any, feed: _Feed, mgr: SandboxManager, sb: LiveSandbox) -> None:
    pending = b""
    fd = stream.fileno()
    import os

    while True:
        try:
            chunk = os.read(fd, CHUNK)
        except OSError:
            chunk = b""
        if not chunk:
            break
        mgr.append_log(sb, chunk)
        data = pending + chunk
        cut = utf8_cut(data)
        pending = data[cut:]
        if cut:
            feed(data[:cut])
    if pending:
        feed(pending)
    feed(b"")


def _write(proc: subprocess.Popen[bytes], data: bytes) -> None:
    if proc.stdin is None:
        return
    with contextlib.suppress(OSError, ValueError):
        proc.stdin.write(data)
        proc.stdin.flush()


def _close_stdin(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()


routes: list[BaseRoute] = [
    Route(R + "/sandboxes", create, methods=["POST"]),
    Route(R + "/sandboxes", list_, methods=["GET"]),
    Route(S, get_or_cancel, methods=["GET", "DELETE"]),
    Route(S + "/status", status, methods=["GET"]),
    Route(S + "/finish", finish, methods=["POST"]),
    Route(S + "/logs/stdout", logs_stdout, methods=["GET"]),
    Route(S + "/logs/network", logs_network, methods=["GET"]),
]
# WebSocket routes sit outside the /api/v1 Mount (whose routes the authorization layer wraps
# as plain HTTP routes): tilde_server.sandbox.setup puts them in front of it, with the prefix.
ws_routes: list[BaseRoute] = [
    WebSocketRoute("/api/v1" + S + "/terminal", terminal),
    WebSocketRoute("/api/v1" + S + "/exec", exec_ws),
]
credential_routes: list[BaseRoute] = [
    Route("/_tilde/sandbox-credentials/{sandbox_id}/{secret}", credentials, methods=["GET"]),
]
