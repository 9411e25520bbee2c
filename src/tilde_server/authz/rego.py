"""Rego policies through the real engine (regopy, the Python binding of rego-cpp).

Subtleties:
1. Untrusted text is compiled in a *child process* first (`validate`): rego-cpp 1.5.2 crashes
   the process (SIGSEGV) on some invalid modules (two `default` rules for one name, seen in
   testing) and prints its error report on the process's stdout. A policy reaches the server
   process only after the child compiled it, built a bundle and evaluated it once.
2. Errors come back with a byte offset into the module; line and column (1-based) are computed
   from it here, the way the engine's own report shows them (`policy.rego:3:11`).
3. A policy must declare `package tilde.authz`; its decision is read from
   `data.tilde.authz.allow` and `data.tilde.authz.deny` (either may be absent: absent is
   false). `deny` may be a boolean or a non-empty set/array of reasons.
4. A principal's effective policies are compiled together into one interpreter (each moved
   to its own package, `_renamed`) and decided by one query. Compiled sets are cached by the
   sha256 of their texts, so an updated policy is a new cache entry at once (no restart) and
   identical built-in texts of many organizations share entries. An Interpreter is not
   thread-safe: each cache entry has its own lock.
5. Never call `regopy.set_default_log_level` in the server process: a second call anywhere
   aborts the process (a C++ exception). Only the validation child sets it.
6. Evaluation cost: one evaluation of a policy set is about 0.5-0.8 ms, most of it regopy
   building the input through ctypes (benchmarks/authz_bench.py). Rego policies are pure
   functions of their input, so decisions are memoized by (policy text hashes, input
   document): a repeated question costs a JSON dump and a dict lookup. Policies that call
   time, random, uuid, http or network built-ins are never memoized.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

PACKAGE = "tilde.authz"
QUERY = "x = data.tilde.authz"
MODULE_NAME = "policy.rego"
MAX_POLICY_BYTES = 64 * 1024
CACHE_SIZE = 512
DECISION_CACHE_SIZE = 65536
# Built-ins whose result does not depend on the input alone: decisions of policies that use
# them are never memoized.
_IMPURE = re.compile(r"\b(time\.|rand\.|uuid\.|http\.send|opa\.runtime|net\.lookup)")
_VALIDATE_TIMEOUT = 20.0

_ERROR_RE = re.compile(r"\(error \d+:[^|]*\|(\d+)\|(\d+)")
_MSG_RE = re.compile(r"\(errormsg (\d+):")
_PACKAGE_RE = re.compile(r"^\s*package\s+([A-Za-z0-9_.\"\[\]]+)", re.MULTILINE)


@dataclass(frozen=True)
class RegoIssue:
    line: int
    column: int
    message: str


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a UTF-8 byte offset into `text`."""
    raw = text.encode("utf-8")[:offset]
    line = raw.count(b"\n") + 1
    col = len(raw) - (raw.rfind(b"\n") + 1) + 1
    return line, col


def parse_engine_error(text: str, err: str) -> list[RegoIssue]:
    """Turn rego-cpp's error sequence (an S-expression) into issues with positions."""
    issues = []
    for m in _ERROR_RE.finditer(err):
        line, col = line_col(text, int(m.group(1)))
        msg_m = _MSG_RE.search(err, m.end())
        message = "invalid policy"
        if msg_m:
            n = int(msg_m.group(1))
            start = msg_m.end()
            message = err[start:start + n]
        issues.append(RegoIssue(line, col, message))
    return issues or [RegoIssue(1, 1, err.strip().splitlines()[0] if err.strip() else
                                "invalid policy")]


# The child process: compile, build, evaluate once; report JSON on the last stdout line.
_CHILD = r"""
import json, sys
text = sys.stdin.read()
out = {"ok": False, "errors": []}
try:
    import regopy
    regopy.set_default_log_level("None")
    it = regopy.Interpreter()
    it.add_module("policy.rego", text)
    it.set_input({"principal": {"type": "user", "id": "", "name": "", "roles": [],
                  "groups": []}, "action": "org:read", "organization": "", "repository": None,
                  "path": None})
    q = it.query("x = data.tilde.authz")
    if not q.ok():
        out["errors"].append({"offset": None, "message": str(q)})
    else:
        b = it.build("x = data.tilde.authz")
        r = it.query_bundle(b)
        if not r.ok():
            out["errors"].append({"offset": None, "message": str(r)})
        else:
            out["ok"] = True
except regopy.RegoError as e:
    out["engine"] = str(e)
except Exception as e:
    out["errors"].append({"offset": None, "message": f"{type(e).__name__}: {e}"})
sys.stdout.write("\n@@RESULT@@" + json.dumps(out) + "\n")
"""

_REPORT_POS = re.compile(r"^-- policy\.rego:(\d+):(\d+)\s*$")


def _report_issues(stdout: str) -> list[RegoIssue]:
    """Issues from the engine's printed report ("Errors:\\n<msg>\\n-- policy.rego:L:C")."""
    lines = stdout.splitlines()
    issues = []
    for i, ln in enumerate(lines):
        m = _REPORT_POS.match(ln)
        if m and i > 0 and lines[i - 1].strip():
            issues.append(RegoIssue(int(m.group(1)), int(m.group(2)), lines[i - 1].strip()))
    return issues


def validate(text: str) -> list[RegoIssue]:
    """All problems of a policy text (empty list: valid). Runs the engine in a child process."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        return [RegoIssue(1, 1, f"policy is larger than {MAX_POLICY_BYTES} bytes")]
    if not text.strip():
        return [RegoIssue(1, 1, "policy is empty")]
    try:
        proc = subprocess.run([sys.executable, "-I", "-c", _CHILD], input=text,
                              capture_output=True, text=True, timeout=_VALIDATE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return [RegoIssue(1, 1, "the Rego engine took too long on this policy")]
    head, sep, tail = proc.stdout.rpartition("\n@@RESULT@@")
    if proc.returncode != 0 or not sep:
        found = _report_issues(proc.stdout)
        return found or [RegoIssue(1, 1, "the Rego engine rejected this policy "
                                   f"(exit status {proc.returncode})")]
    result: dict[str, Any] = json.loads(tail.strip())
    if "engine" in result:
        return parse_engine_error(text, result["engine"])
    if not result["ok"]:
        found = _report_issues(head)
        if found:
            return found
        report = head.split("Errors:", 1)[1].strip().splitlines() if "Errors:" in head else []
        if report:
            return [RegoIssue(1, 1, report[0].strip())]
        return [RegoIssue(1, 1, "the policy could not be evaluated (an unknown function, or "
                          "an error while evaluating it)")]
    pkg = _PACKAGE_RE.search(text)
    if pkg is None or pkg.group(1) != PACKAGE:
        line = text[:pkg.start(1)].count("\n") + 1 if pkg else 1
        return [RegoIssue(line, 1, f"a policy must declare 'package {PACKAGE}'")]
    return []


@dataclass(frozen=True)
class Decision:
    allow: bool
    deny: bool


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (list, dict, str)):
        return len(value) > 0
    return False


_PKG_LINE = re.compile(r"^(\s*)package\s+tilde\.authz\b", re.MULTILINE)


def _renamed(text: str, i: int) -> str:
    """A validated policy moved to its own package `tilde.p<i>`, so that several policies
    (each `package tilde.authz`, each possibly with its own `default` rules) can live in one
    interpreter and be decided by one query."""
    text = _PKG_LINE.sub(lambda m: f"{m.group(1)}package tilde.p{i}", text, count=1)
    return text.replace("data.tilde.authz", f"data.tilde.p{i}")


class _Compiled:
    """Policy texts compiled into one interpreter and one bundle (guarded by its lock):
    one `set_input` and one query decide all of them, which is where the time goes."""

    def __init__(self, texts: tuple[str, ...]) -> None:
        import regopy

        self.lock = threading.Lock()
        self.n = len(texts)
        self.interp = regopy.Interpreter()
        for i, text in enumerate(texts):
            self.interp.add_module(f"policy{i}.rego", _renamed(text, i))
        self.bundle = self.interp.build("x = data.tilde")

    def evaluate(self, input_doc: dict[str, Any]) -> list[Decision]:
        with self.lock:
            # set_input (a dict, built as nodes) is several times faster than
            # set_input_term (JSON text, which rego-cpp parses as a Rego term): measured.
            self.interp.set_input(input_doc)
            out = self.interp.query_bundle(self.bundle)
            ok = out.ok()
            doc = json.loads(str(out)).get("bindings", {}).get("x") if ok else None
        if not isinstance(doc, dict):
            return [Decision(False, False)] * self.n
        decisions = []
        for i in range(self.n):
            d = doc.get(f"p{i}")
            if not isinstance(d, dict):
                decisions.append(Decision(False, False))
            else:
                decisions.append(Decision(d.get("allow") is True, _truthy(d.get("deny"))))
        return decisions


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class PolicyCache:
    """Compiled policy sets by the hashes of their texts (LRU), and memoized decisions.
    Changing a policy's text changes the key: the next request compiles the new text."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, ...], _Compiled] = OrderedDict()
        self._decisions: OrderedDict[tuple[tuple[str, ...], str], list[Decision]] = \
            OrderedDict()
        self.compiles = 0

    def get(self, texts: tuple[str, ...]) -> _Compiled:
        key = tuple(_hash(t) for t in texts)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
        compiled = _Compiled(texts)  # texts here were validated in a child process first
        with self._lock:
            self.compiles += 1
            self._entries[key] = compiled
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return compiled

    def evaluate_all(self, texts: list[str], input_doc: dict[str, Any]) -> list[Decision]:
        """The decision of each policy on one input; memoized (see the module docstring, 6.)
        unless a policy may not be a pure function of its input."""
        if not texts:
            return []
        group = tuple(texts)
        if any(_IMPURE.search(t) for t in group):
            return self.get(group).evaluate(input_doc)
        key = (tuple(_hash(t) for t in group),
               json.dumps(input_doc, sort_keys=True, separators=(",", ":")))
        with self._lock:
            hit = self._decisions.get(key)
            if hit is not None:
                self._decisions.move_to_end(key)
                return hit
        decisions = self.get(group).evaluate(input_doc)
        with self._lock:
            self._decisions[key] = decisions
            while len(self._decisions) > DECISION_CACHE_SIZE:
                self._decisions.popitem(last=False)
        return decisions

    def evaluate(self, text: str, input_doc: dict[str, Any]) -> Decision:
        return self.evaluate_all([text], input_doc)[0]
