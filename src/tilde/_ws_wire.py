"""Sans-I/O core of the sandbox shell WebSockets: the 0.7.2 terminal (spec 2.8.4-2.8.6,
5.21) and, at the end of the module, 0.7.6's per-run ``/exec`` (tilde-api-changes.md 2.10).

The 0.7.2 shell transport drives a POSIX shell through one binary WebSocket: the client
writes stdin frames and finds where each command's output ends by echoing random markers.
Everything here is pure (bytes and str in, bytes and str out), so the client's
``resources/shell.py`` and the server's terminal route can share one definition of the
frames, and the marker logic is unit-testable without a socket.

Subtleties worth knowing before editing:

1. Frame = one type byte + payload. Client -> server: ``0x00`` stdin, ``0x02`` resize
   (defined, never sent by 0.7.2). Server -> client: ``0x01`` output, ``0x03`` exit JSON.
   Server *text* frames count as output; empty frames and unknown types are ignored.
2. A marker counts only as a line that *ends* with it. The shell may echo the input line
   (before ``stty -echo`` takes effect, or with a pipe shell that echoes nothing at all);
   in an echoed line every marker is inside quotes, so the line ends with ``'`` or has more
   text after the marker. Matching a whole line therefore never fires on the echo, which
   0.7.2's plain substring search can. A prompt printed in front of the marker line
   (``$ __TILDE_END_x__``) still matches.
3. Output cleaning (``clean_terminal_text``) drops every ``\\r`` and ANSI CSI sequences
   (ESC ``[`` ... final letter), as 0.7.2 does; other escapes (OSC) survive. It runs on the
   whole decoded transcript, not frame by frame, so a sequence split across frames is still
   removed; decoding is incremental for the same reason (a multi-byte character split
   across frames is not replaced, unlike 0.7.2).
4. ``run`` output = the text before the begin-marker line, with leading blank lines and
   leading lines containing the command text dropped, trailing blank lines dropped, joined
   with LF and no final newline (2.8.6 step 4). The exit code is the integer between the
   markers, -1 when it does not parse.
"""

from __future__ import annotations

import codecs
import json
import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Any

STDIN = 0x00
OUTPUT = 0x01
RESIZE = 0x02
EXIT = 0x03

MAX_MESSAGE_SIZE = 1024 * 1024  # 1.4: inbound messages above 1 MiB are refused
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 10.0

# 2.8.6 timings (seconds)
READY_TIMEOUT = 30.0
READY_SLICE = 5.0
DRAIN_SILENCE = 0.5
RUN_TIMEOUT = 300.0
RUN_SLICE = 30.0

_CSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def new_token() -> str:
    """32 lowercase hex characters, fresh for each probe or run."""
    return secrets.token_hex(16)


def ready_marker(token: str) -> str:
    return f"__TILDE_READY_{token}__"


def begin_marker(token: str) -> str:
    return f"__TILDE_BEGIN_{token}__"


def end_marker(token: str) -> str:
    return f"__TILDE_END_{token}__"


def readiness_probe(token: str) -> str:
    """The first stdin line: dumb terminal, no echo, no wrapping, then the ready marker."""
    return f"export TERM=dumb; stty -echo cols 32767; echo '{ready_marker(token)}'\n"


def wrap_command(cmd: str, token: str) -> str:
    """One ``run``: the command, then its exit status fenced by the two markers.

    The bare ``echo`` puts the begin marker on a line of its own even when the command's
    output does not end with a newline.
    """
    return (f"{cmd}; __ec=$?; echo; echo '{begin_marker(token)}'; echo $__ec; "
            f"echo '{end_marker(token)}'\n")


EXIT_LINE = "exit\n"


# --- frames ------------------------------------------------------------------------------

def encode_stdin(text: str | bytes) -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return bytes([STDIN]) + data


def encode_resize(cols: int, rows: int) -> bytes:
    return bytes([RESIZE]) + json.dumps({"cols": cols, "rows": rows}).encode()


def encode_output(data: bytes) -> bytes:
    """Server side: one output frame (keep it well under 1 MiB, 5.21)."""
    return bytes([OUTPUT]) + data


def encode_exit(exit_code: int) -> bytes:
    """Server side: the exit frame sent when the shell exits (5.21)."""
    return bytes([EXIT]) + json.dumps({"exited": True, "exit_code": exit_code}).encode()


@dataclass(frozen=True)
class Frame:
    """A decoded frame: ``kind`` is one of the type bytes (text frames come as OUTPUT)."""

    kind: int
    payload: bytes

    def exit_code(self) -> int | None:
        """The exit code of an EXIT frame, None if this is not one or it does not parse."""
        return _json_exit_code(self.payload) if self.kind == EXIT else None

    def resize(self) -> tuple[int, int] | None:
        """(cols, rows) of a RESIZE frame, None if this is not one or it does not parse."""
        if self.kind != RESIZE:
            return None
        try:
            body: Any = json.loads(self.payload)
            return int(body["cols"]), int(body["rows"])
        except (ValueError, TypeError, KeyError):
            return None


def decode_frame(message: bytes | bytearray | memoryview | str) -> Frame | None:
    """A received WebSocket message -> Frame; None for an empty binary message.

    Text messages are output (2.8.4). Unknown type bytes are returned as they are; the
    reader decides to ignore them.
    """
    if isinstance(message, str):
        return Frame(OUTPUT, message.encode("utf-8"))
    data = bytes(message)
    if not data:
        return None
    return Frame(data[0], data[1:])


# --- transcript --------------------------------------------------------------------------

def clean_terminal_text(text: str) -> str:
    """Remove ``\\r`` and ANSI CSI escape sequences."""
    return _CSI.sub("", text.replace("\r", ""))


def _marker_line_index(lines: list[str], marker: str, start: int = 0) -> int:
    for i in range(start, len(lines)):
        if lines[i].rstrip().endswith(marker):
            return i
    return -1


class Transcript:
    """Terminal output gathered for one probe or run; feed frames, ask for markers.

    Decoding is incremental (UTF-8, invalid bytes replaced) so that characters split across
    frames survive; cleaning happens on the whole text when asked. Markers named in
    ``watch`` are counted as frames arrive (in the new text plus a tail of the old, so a
    marker split across frames is found), and the transcript is cleaned and split into lines
    only when such a count grows: a long output costs linear time, not quadratic.
    """

    def __init__(self, watch: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self._watch = watch
        self._overlap = max((len(m) for m in watch), default=1) - 1
        self._tail = ""
        self._counts = dict.fromkeys(watch, 0)
        self._answers: dict[str, tuple[int, bool]] = {}

    def feed(self, frame: Frame | None) -> bool:
        """Add an OUTPUT frame; returns False for frames that are not output."""
        if frame is None or frame.kind != OUTPUT:
            return False
        text = self._decoder.decode(frame.payload)
        if not text:
            return True
        self._parts.append(text)
        if self._watch:
            window = self._tail + text
            for marker in self._watch:
                self._counts[marker] += window.count(marker)
            self._tail = window[-self._overlap:] if self._overlap else ""
        return True

    def text(self) -> str:
        return clean_terminal_text("".join(self._parts))

    def lines(self) -> list[str]:
        return self.text().split("\n")

    def has_line_ending_with(self, marker: str) -> bool:
        if marker not in self._counts:  # not watched: look at everything
            return _marker_line_index(self.lines(), marker) >= 0
        count = self._counts[marker]
        if count == 0:
            return False
        seen, answer = self._answers.get(marker, (0, False))
        if seen != count:
            answer = _marker_line_index(self.lines(), marker) >= 0
            self._answers[marker] = (count, answer)
        return answer


@dataclass(frozen=True)
class RunOutcome:
    output: str
    exit_code: int


def run_finished(transcript: Transcript, token: str) -> bool:
    """True once the end marker of this run stands on a line after its begin marker."""
    if not transcript.has_line_ending_with(end_marker(token)):
        return False
    lines = transcript.lines()
    begin = _marker_line_index(lines, begin_marker(token))
    return begin >= 0 and _marker_line_index(lines, end_marker(token), begin + 1) > begin


def parse_run(transcript: Transcript, cmd: str, token: str) -> RunOutcome:
    """Output and exit code of a finished run (see ``run_finished``)."""
    lines = transcript.lines()
    begin = _marker_line_index(lines, begin_marker(token))
    end = _marker_line_index(lines, end_marker(token), begin + 1)
    # Text on the marker line before the marker (a prompt or output without a final
    # newline that the shell glued on) is not part of either.
    status_text = "\n".join(lines[begin + 1:end]).strip()
    try:
        exit_code = int(status_text)
    except ValueError:
        exit_code = -1
    return RunOutcome(clean_run_output(lines[:begin], cmd), exit_code)


def clean_run_output(lines: list[str], cmd: str) -> str:
    """2.8.6 step 4: drop leading blank/echo lines and trailing blank lines, join with LF."""
    start, stop = 0, len(lines)
    command = cmd.strip()
    while start < stop and (not lines[start].strip()
                            or (command and command in lines[start])):
        start += 1
    while stop > start and not lines[stop - 1].strip():
        stop -= 1
    return "\n".join(lines[start:stop])



# --- /exec: one WebSocket per run (tilde-api-changes.md 2.10) -----------------------------
#
# 1. Client -> server: 0x00 launch JSON (first, always), 0x01 the whole stdin in one message,
#    0x02 stdin EOF (sent whenever a stdin argument is given, b"" included). Server ->
#    client: 0x03 stdout, 0x04 stderr, 0x05 exit JSON; text, empty and unknown frames are
#    ignored. The launch JSON uses ``json.dumps``'s default form, as the official client.
# 2. ``merged_argv`` keeps 0.7.2's ``RunResult.stdout``: the command runs with its stderr
#    joined to stdout at the source (``exec 2>&1``), so the two stay in the order they were
#    written; interleaving 0x03 and 0x04 frames after the fact cannot promise that order.
#    What still arrives on 0x04 is what the sandbox itself says (a command it cannot start).
# 3. ``exec_output`` drops the trailing line endings, as 0.7.2's cleaned terminal text has
#    none; everything else is the command's bytes as written (no terminal, nothing to clean).

EXEC_LAUNCH = 0x00
EXEC_STDIN = 0x01
EXEC_STDIN_EOF = 0x02
EXEC_STDOUT = 0x03
EXEC_STDERR = 0x04
EXEC_EXIT = 0x05

EXEC_RUN_TIMEOUT = RUN_TIMEOUT
EXEC_RECV_SLICE = RUN_SLICE

_MERGE_STDERR = "exec 2>&1"


def merged_argv(cmd: str | list[str]) -> list[str]:
    """The argv an ``/exec`` run launches for ``Shell.run(cmd)`` (point 2)."""
    if isinstance(cmd, str):
        return ["sh", "-c", f"{_MERGE_STDERR}\n{cmd}"]
    return ["sh", "-c", f'{_MERGE_STDERR}; exec "$@"', "sh", *cmd]


def encode_launch(argv: list[str], env: dict[str, str] | None = None,
                  cwd: str | None = None) -> bytes:
    launch: dict[str, Any] = {"cmd": list(argv)}
    if env is not None:
        launch["env"] = dict(env)
    if cwd is not None:
        launch["cwd"] = cwd
    return bytes([EXEC_LAUNCH]) + json.dumps(launch).encode("utf-8")


def encode_exec_stdin(data: bytes) -> list[bytes]:
    """The frames that hand ``data`` to the child and close its stdin."""
    frames = [bytes([EXEC_STDIN]) + bytes(data)] if data else []
    return [*frames, bytes([EXEC_STDIN_EOF])]


def decode_exec_frame(message: bytes | bytearray | memoryview | str) -> Frame | None:
    """A received ``/exec`` message; None for what the protocol ignores (text, empty)."""
    if isinstance(message, str):
        return None
    data = bytes(message)
    return Frame(data[0], data[1:]) if data else None


def _json_exit_code(payload: bytes) -> int | None:
    """``exit_code`` of a JSON exit payload (terminal EXIT or ``/exec`` 0x05); None when it
    is missing, null, not an int or not JSON."""
    try:
        body: Any = json.loads(payload.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    code = body.get("exit_code") if isinstance(body, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def exec_exit_code(payload: bytes) -> int:
    """``exit_code`` of a 0x05 frame; -1 when it is missing, null, not an int or not JSON."""
    code = _json_exit_code(payload)
    return -1 if code is None else code


def exec_output(data: bytes) -> bytes:
    """A run's merged output as ``RunResult.stdout`` holds it (point 3)."""
    return data.rstrip(b"\r\n")


def terminal_command(cmd: str | list[str], env: dict[str, str] | None = None,
                     cwd: str | None = None) -> str:
    """``Shell.run``'s 0.7.9 arguments as one line for the terminal shell.

    A list is quoted into a command line. ``env`` and ``cwd`` apply to this run only, as
    over ``/exec``: the command then runs in a subshell that sets them first.
    """
    line = cmd if isinstance(cmd, str) else shlex.join(cmd)
    if not env and cwd is None:
        return line
    setup = []
    if cwd is not None:
        setup.append(f"cd {shlex.quote(cwd)} || exit $?")
    for key, value in (env or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not an environment variable name: {key!r}")
        setup.append(f"export {key}={shlex.quote(value)}")
    return "(" + "; ".join([*setup, line]) + ")"
