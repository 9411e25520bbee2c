"""Unit tests of the sans-I/O sandbox pieces: terminal and /exec frames, terminal markers,
sandbox/trigger routes and parsers, both status vocabularies, credentials parsing,
OutputStream and RunResult."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tilde import _wire, _ws_wire
from tilde._values import OutputStream, RunResult, SandboxStatusData, SandboxTriggerConfig

TOKEN = "0123456789abcdef0123456789abcdef"


# --- frames ------------------------------------------------------------------------------

def test_client_frames() -> None:
    assert _ws_wire.encode_stdin("ls\n") == b"\x00ls\n"
    assert _ws_wire.encode_stdin("é") == b"\x00\xc3\xa9"
    frame = _ws_wire.decode_frame(_ws_wire.encode_resize(80, 24))
    assert frame is not None and frame.kind == _ws_wire.RESIZE and frame.resize() == (80, 24)


def test_server_frames_round_trip() -> None:
    out = _ws_wire.decode_frame(_ws_wire.encode_output(b"hi\n"))
    assert out == _ws_wire.Frame(_ws_wire.OUTPUT, b"hi\n")
    ex = _ws_wire.decode_frame(_ws_wire.encode_exit(3))
    assert ex is not None and ex.kind == _ws_wire.EXIT and ex.exit_code() == 3
    assert json.loads(ex.payload) == {"exited": True, "exit_code": 3}
    assert out.exit_code() is None


def test_text_frames_are_output_and_empty_frames_are_nothing() -> None:
    assert _ws_wire.decode_frame("text") == _ws_wire.Frame(_ws_wire.OUTPUT, b"text")
    assert _ws_wire.decode_frame(b"") is None
    unknown = _ws_wire.decode_frame(b"\x09zz")
    assert unknown is not None and unknown.kind == 9
    t = _ws_wire.Transcript()
    assert not t.feed(unknown) and not t.feed(None) and t.text() == ""


def test_bad_exit_and_resize_payloads() -> None:
    assert _ws_wire.Frame(_ws_wire.EXIT, b"nope").exit_code() is None
    assert _ws_wire.Frame(_ws_wire.EXIT, b'{"exit_code": true}').exit_code() is None
    assert _ws_wire.Frame(_ws_wire.RESIZE, b"{}").resize() is None


# --- stdin lines exactly as 0.7.2 sends them (2.8.4) ---------------------------------------

def test_probe_and_run_lines() -> None:
    assert _ws_wire.readiness_probe(TOKEN) == (
        f"export TERM=dumb; stty -echo cols 32767; echo '__TILDE_READY_{TOKEN}__'\n")
    assert _ws_wire.wrap_command("make", TOKEN) == (
        f"make; __ec=$?; echo; echo '__TILDE_BEGIN_{TOKEN}__'; echo $__ec; "
        f"echo '__TILDE_END_{TOKEN}__'\n")
    assert _ws_wire.EXIT_LINE == "exit\n"
    token = _ws_wire.new_token()
    assert len(token) == 32 and int(token, 16) >= 0 and token == token.lower()
    assert token != _ws_wire.new_token()


# --- transcripts ---------------------------------------------------------------------------

def _transcript(*chunks: bytes) -> _ws_wire.Transcript:
    t = _ws_wire.Transcript()
    for c in chunks:
        t.feed(_ws_wire.Frame(_ws_wire.OUTPUT, c))
    return t


def _run_output(body: str, code: str = "0") -> bytes:
    return (f"{body}\n__TILDE_BEGIN_{TOKEN}__\n{code}\n__TILDE_END_{TOKEN}__\n").encode()


def test_run_parsed_from_split_frames_with_crlf_and_csi() -> None:
    raw = _run_output("\x1b[1;32mok\x1b[0m\r\nline two\r\n", "0").replace(b"\n", b"\r\n")
    t = _ws_wire.Transcript(watch=(_ws_wire.end_marker(TOKEN),))
    finished = []
    for i in range(0, len(raw), 5):
        t.feed(_ws_wire.Frame(_ws_wire.OUTPUT, raw[i:i + 5]))
        finished.append(_ws_wire.run_finished(t, TOKEN))
    assert finished[-1] and not any(finished[:-1])
    outcome = _ws_wire.parse_run(t, "echo ok", TOKEN)
    assert outcome == _ws_wire.RunOutcome("ok\nline two", 0)


def test_multibyte_character_split_across_frames_survives() -> None:
    data = _run_output("größe")
    cut = data.index(b"\xc3") + 1
    t = _transcript(data[:cut], data[cut:])
    assert _ws_wire.parse_run(t, "cat f", TOKEN).output == "größe"


def test_echoed_command_line_is_not_a_marker() -> None:
    cmd = "cat results.csv"
    echoed = _ws_wire.wrap_command(cmd, TOKEN).encode()
    t = _transcript(echoed)
    assert not _ws_wire.run_finished(t, TOKEN)
    t.feed(_ws_wire.Frame(_ws_wire.OUTPUT, _run_output("a,b\n1,2", "0")))
    assert _ws_wire.run_finished(t, TOKEN)
    assert _ws_wire.parse_run(t, cmd, TOKEN) == _ws_wire.RunOutcome("a,b\n1,2", 0)
    ready = _transcript(_ws_wire.readiness_probe(TOKEN).encode())
    assert not ready.has_line_ending_with(_ws_wire.ready_marker(TOKEN))
    ready.feed(_ws_wire.Frame(_ws_wire.OUTPUT, f"$ __TILDE_READY_{TOKEN}__\r\n".encode()))
    assert ready.has_line_ending_with(_ws_wire.ready_marker(TOKEN))


def test_exit_code_and_unparsable_exit_code() -> None:
    assert _ws_wire.parse_run(_transcript(_run_output("", "127")), "x", TOKEN).exit_code == 127
    assert _ws_wire.parse_run(_transcript(_run_output("", "??")), "x", TOKEN).exit_code == -1


def test_marker_of_another_run_does_not_end_this_one() -> None:
    other = "f" * 32
    t = _transcript(f"__TILDE_BEGIN_{other}__\n0\n__TILDE_END_{other}__\n".encode())
    assert not _ws_wire.run_finished(t, TOKEN)


def test_end_before_begin_is_not_finished() -> None:
    t = _transcript(f"__TILDE_END_{TOKEN}__\n".encode())
    assert not _ws_wire.run_finished(t, TOKEN)


def test_clean_run_output_rules() -> None:
    lines = ["", "  ", "$ python train.py", "result 1", "", "result 2", "", ""]
    assert _ws_wire.clean_run_output(lines, "python train.py") == "result 1\n\nresult 2"
    assert _ws_wire.clean_run_output(["", ""], "true") == ""
    assert _ws_wire.clean_terminal_text("a\x1b[2Kb\r\n\x1b]0;title\x07") == "ab\n\x1b]0;title\x07"


# --- sandbox routes and parsers (2.8, 2.9) --------------------------------------------------

def test_create_sandbox_body_sends_only_what_is_given() -> None:
    w = _wire.create_sandbox("o", "r", image="ubuntu", command=["sh", "-c", "x"])
    assert (w.method, w.path) == ("POST", "/organizations/o/repositories/r/sandboxes")
    assert w.json == {"image": "ubuntu", "command": ["sh", "-c", "x"]}
    w = _wire.create_sandbox("o", "r", image="i", interactive=True, env_vars={"A": "1"},
                             mountpoint="/m", path_prefix="p/", timeout_seconds=5,
                             run_as={"principal_type": "agent", "principal_id": "a1"})
    assert w.json == {"image": "i", "interactive": True, "env_vars": {"A": "1"},
                      "mountpoint": "/m", "path_prefix": "p/", "timeout_seconds": 5,
                      "run_as": {"principal_type": "agent", "principal_id": "a1"}}


def test_shell_create_bodies_and_finish() -> None:
    w = _wire.create_sandbox("o", "r", image="ubuntu:22.04", mode="service", env_vars={"A": "1"})
    assert w.json == {"image": "ubuntu:22.04", "mode": "service", "env_vars": {"A": "1"}}
    w = _wire.finish_sandbox("o", "r", "sb-1")
    assert (w.method, w.path, w.json) == (
        "POST", "/organizations/o/repositories/r/sandboxes/sb-1/finish", None)
    assert _wire.sandbox_exec_path("o", "r", "sb-1") == (
        "/organizations/o/repositories/r/sandboxes/sb-1/exec")


def test_command_argv() -> None:
    assert _wire.command_argv("echo hi") == ["sh", "-c", "echo hi"]
    assert _wire.command_argv(["python3", "-c", "1"]) == ["python3", "-c", "1"]


def test_sandbox_routes() -> None:
    s = "/organizations/o/repositories/r/sandboxes/sb-1"
    assert _wire.sandbox_status("o", "r", "sb-1").path == f"{s}/status"
    assert _wire.cancel_sandbox("o", "r", "sb-1") == _wire.WireRequest("DELETE", s)
    assert _wire.sandbox_stdout_log("o", "r", "sb-1").path == f"{s}/logs/stdout"
    assert _wire.sandbox_network_log("o", "r", "sb-1").path == f"{s}/logs/network"
    assert _wire.list_sandboxes("o", "r", after="x").params == (("amount", "100"), ("after", "x"))
    assert _wire.websocket_url("http://h:8080/api/v1", _wire.sandbox_terminal_path(
        "o", "r", "sb-1")) == f"ws://h:8080/api/v1{s}/terminal"
    assert _wire.websocket_url("https://tilde.run/api/v1", "/x") == "wss://tilde.run/api/v1/x"


def test_parse_sandbox_status() -> None:
    st = _wire.parse_sandbox_status({"status": "error", "status_reason": "exit_non_zero",
                                     "exit_code": 2, "commit_id": "", "web_url": None})
    assert (st.state, st.status_reason, st.exit_code, st.web_url) == (
        "error", "exit_non_zero", 2, "")
    assert _wire.parse_sandbox_status({"status": "running", "exit_code": None}).exit_code is None
    assert _wire.parse_sandbox_id({"sandbox_id": "sb-9"}) == "sb-9"
    with pytest.raises(KeyError):
        _wire.parse_sandbox_id({"id": "sb-9"})


@pytest.mark.parametrize(("state", "reason", "exit_code", "expected"), [
    # state, reason, exit code -> (ended, approval, ended well, committed, no changes, no exit)
    ("starting", "initializing", None, (False, False, False, False, False, False)),
    ("running", "", None, (False, False, False, False, False, False)),
    ("committed", "committed", 0, (True, False, True, True, False, False)),
    ("committed", "no_changes", 0, (True, False, True, False, True, False)),
    ("committed", "", 0, (True, False, True, True, False, False)),
    ("awaiting_approval", "awaiting_approval", 0, (True, True, True, False, False, False)),
    ("error", "exit_non_zero", 2, (True, False, False, False, False, False)),
    ("error", "internal_error", None, (True, False, False, False, False, True)),
    ("done", "committed", 0, (True, False, True, True, False, False)),
    ("done", "no_changes", 0, (True, False, True, False, True, False)),
    ("done", "awaiting_approval", 0, (True, True, True, False, False, False)),
    ("errored", "exit_non_zero", 3, (True, False, False, False, False, False)),
    ("failed", "timeout", None, (True, False, False, False, False, True)),
    ("cancelled", "cancelled_by_user", None, (True, False, False, False, False, True)),
])
def test_both_status_vocabularies(state: str, reason: str, exit_code: int | None,
                                  expected: tuple[bool, ...]) -> None:
    d = SandboxStatusData(state=state, status_reason=reason, exit_code=exit_code)
    assert (_wire.sandbox_ended(d), _wire.sandbox_awaits_approval(d),
            _wire.sandbox_ended_well(d), _wire.sandbox_committed(d),
            _wire.sandbox_without_changes(d), _wire.sandbox_without_exit_code(d)) == expected
    union = {"committed", "awaiting_approval", "error", "done", "errored", "failed", "cancelled"}
    assert union == _wire.SANDBOX_TERMINAL_STATES


# --- /exec (tilde-api-changes.md 2.10) ----------------------------------------------------

def test_exec_launch_and_stdin_frames() -> None:
    assert _ws_wire.encode_launch(["ls", "-l"]) == b'\x00{"cmd": ["ls", "-l"]}'
    assert _ws_wire.encode_launch(["x"], {"K": "é"}, "/tmp") == (
        b'\x00{"cmd": ["x"], "env": {"K": "\\u00e9"}, "cwd": "/tmp"}')
    assert _ws_wire.encode_exec_stdin(b"in") == [b"\x01in", b"\x02"]
    assert _ws_wire.encode_exec_stdin(b"") == [b"\x02"]


def test_exec_argv_merges_stderr_at_the_source() -> None:
    assert _ws_wire.merged_argv("echo a >&2") == ["sh", "-c", "exec 2>&1\necho a >&2"]
    assert _ws_wire.merged_argv(["printf", "%s", "a b"]) == [
        "sh", "-c", 'exec 2>&1; exec "$@"', "sh", "printf", "%s", "a b"]


def test_exec_server_frames() -> None:
    assert _ws_wire.decode_exec_frame(b"\x03out") == _ws_wire.Frame(_ws_wire.EXEC_STDOUT, b"out")
    assert _ws_wire.decode_exec_frame("text") is None and _ws_wire.decode_exec_frame(b"") is None
    assert _ws_wire.exec_exit_code(b'{"exit_code": 4, "reason": "exited"}') == 4
    for bad in (b"", b"nope", b'{"exit_code": null}', b'{"exit_code": true}', b"[]",
                b'{"exit_code": "1"}'):
        assert _ws_wire.exec_exit_code(bad) == -1, bad
    assert _ws_wire.exec_output(b"a\nb\r\n\n") == b"a\nb"
    assert _ws_wire.exec_output(b"\n  x  ") == b"\n  x  "


def test_terminal_command_for_0_7_9_arguments() -> None:
    assert _ws_wire.terminal_command("ls") == "ls"
    assert _ws_wire.terminal_command(["printf", "%s", "a b"]) == "printf %s 'a b'"
    assert _ws_wire.terminal_command("env", {"A": "x y"}, "/t m") == (
        "(cd '/t m' || exit $?; export A='x y'; env)")
    with pytest.raises(ValueError):
        _ws_wire.terminal_command("env", {"A-B": "1"})


def test_trigger_routes_and_parsing() -> None:
    t = "/organizations/o/repositories/r/sandbox-triggers"
    w = _wire.create_trigger("o", "r", name="n", conditions=[{"type": "prefix", "prefix": "a/"}],
                             sandbox_config={"image": "ubuntu", "command": ["true"]})
    assert (w.method, w.path) == ("POST", t)
    assert w.json == {"name": "n", "conditions": [{"type": "prefix", "prefix": "a/"}],
                      "sandbox_config": {"image": "ubuntu", "command": ["true"]}}
    assert _wire.update_trigger("o", "r", "t1", description="d").json == {"description": "d"}
    assert _wire.toggle_trigger("o", "r", "t1", enabled=False) == _wire.WireRequest(
        "PATCH", f"{t}/t1", json={"enabled": False})
    assert _wire.list_trigger_runs("o", "r", "t1").path == f"{t}/t1/runs"
    data = _wire.parse_trigger({
        "id": "t1", "name": "n", "description": "", "enabled": True,
        "conditions": [{"type": "path", "path": "a.csv", "prefix": "", "diff_type": "added"}],
        "sandbox_config": {"image": "ubuntu", "command": ["true"], "timeout_seconds": None},
        "run_as": None, "repository_id": "r1", "created_by": "u1",
        "created_at": "2026-05-01T10:00:00Z", "updated_at": "2026-05-01T10:00:00Z"})
    assert data.conditions[0].path == "a.csv" and data.conditions[0].diff_type == "added"
    assert data.sandbox_config == SandboxTriggerConfig(image="ubuntu", command=["true"])
    assert data.created_at == datetime(2026, 5, 1, 10, tzinfo=UTC)
    run = _wire.parse_trigger_run({"id": "run1", "status": "succeeded", "sandbox_id": None,
                                   "matched_paths": ["a.csv"]})
    assert run.matched_paths == ("a.csv",) and run.sandbox_id is None


# --- credentials (2.17) --------------------------------------------------------------------

def test_parse_credentials() -> None:
    c = _wire.parse_sandbox_credentials({"access_token": "tok",
                                         "expires_at": "2030-01-01T00:00:00",
                                         "principal_type": "user", "api_url": "http://x"})
    assert c.access_token == "tok" and c.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    assert c.principal_type == "user" and c.principal_id is None and c.api_url == "http://x"
    for bad in ([], {"expires_at": "2030-01-01T00:00:00Z"},
                {"access_token": "", "expires_at": "2030-01-01T00:00:00Z"},
                {"access_token": "t"}, {"access_token": "t", "expires_at": "soon"},
                {"access_token": "t", "expires_at": "2030-01-01T00:00:00Z",
                 "principal_id": 5}):
        with pytest.raises(ValueError):
            _wire.parse_sandbox_credentials(bad)


# --- OutputStream / RunResult (3.9) --------------------------------------------------------

def test_output_stream() -> None:
    data = "a,b\r\n1,é\n\nlast".encode()
    o = OutputStream(data)
    assert o.read() == data and o.text() == data.decode() and str(o) == data.decode()
    assert b"".join(o.iter_bytes(3)) == data and all(len(c) <= 3 for c in o.iter_bytes(3))
    assert "".join(o.iter_text(1)) == data.decode()
    assert list(o.iter_lines()) == ["a,b", "1,é", "", "last"]
    assert o == OutputStream(data) and o == data and o != OutputStream(b"x")
    assert OutputStream() == OutputStream(None) == b"" and OutputStream().text() == ""
    assert list(OutputStream().iter_lines()) == [] and list(OutputStream().iter_bytes()) == []
    assert OutputStream(b"\xe9").text("latin-1") == "é"
    with pytest.raises(ValueError):
        list(o.iter_bytes(0))


def test_run_result() -> None:
    r = RunResult(OutputStream(b"x"), 0)  # 0.7.2's positional form
    assert r.stdout.text() == "x" and r.exit_code == 0 and r.stderr == b""
    assert r == RunResult(stdout=OutputStream(b"x"), exit_code=0)
    assert repr(r) == "RunResult(stdout=OutputStream(1 bytes), exit_code=0)"  # 0.7.2's form
    r2 = RunResult(stdout=OutputStream(b"o"), stderr=OutputStream(b"e"), exit_code=1)  # 0.7.9's
    assert r2.stderr.text() == "e" and "stderr=OutputStream(1 bytes)" in repr(r2)


def test_watched_marker_split_byte_by_byte_and_large_output() -> None:
    """Fed one byte at a time, the run ends exactly at the end marker's final newline."""
    end = _ws_wire.end_marker(TOKEN)
    body = ("x" * 100 + "\n") * 2000
    data = _run_output(body)
    t = _ws_wire.Transcript(watch=(end,))
    finished_at = None
    for i in range(len(data)):
        t.feed(_ws_wire.Frame(_ws_wire.OUTPUT, data[i:i + 1]))
        if finished_at is None and _ws_wire.run_finished(t, TOKEN):
            finished_at = i
    # The line "...END__" counts as soon as its last character arrived.
    assert finished_at == len(data) - 2
    out = _ws_wire.parse_run(t, "gen", TOKEN)
    assert out.exit_code == 0 and out.output == body.rstrip("\n")
