"""What user code touches of the official client's public helpers and value classes, pinned
against the official tilde-sdk 0.7.2 source (and 0.7.9 where it differs).

The pinned values were read from the 0.7.2 wheel (``tilde/_value_types.py``,
``tilde/exceptions.py``, ``tilde/resources/sessions.py``) and the 0.7.9 wheel
(``resources/repositories.py``). When tests/test_official_sdk.py has built
``.venv-official-0.7.2``, the same probe script also runs there and both answers must agree.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
import warnings
from typing import Any

import httpx
import pytest

import tilde
import tilde.models as models
from tilde import exceptions

# class -> fields in order: a bare name has no default, a pair is (name, repr of the default);
# "factory:" marks a default_factory. The 0.7.2 value types, all of which 0.7.9 keeps
# (0.7.9 drops Entry.address/address_type and gives RunResult a stderr).
FIELDS: dict[str, tuple[Any, ...]] = {
    "Attachment": (("policy_id", "''"), ("policy_name", "''"), ("is_builtin", "False"),
                   ("principal_type", "''"), ("principal_id", "''"), ("principal_name", "''"),
                   ("attached_by_type", "''"), ("attached_by", "''"), ("attached_at", "None")),
    "CommitResult": ("status", ("commit_id", "None"), ("web_url", "None")),
    "CopyObjectResult": (("source_path", "''"), ("destination_path", "''")),
    "EffectiveGroup": (("group_id", "''"), ("group_name", "''"), ("description", "''"),
                       ("source", "''"), ("source_name", "''")),
    "EffectivePolicy": (("policy_id", "''"), ("policy_name", "''"), ("is_builtin", "False"),
                        ("source", "''"), ("source_name", "''")),
    "Entry": (("address", "''"), ("last_modified", "None"), ("size", "None"), ("e_tag", "''"),
              ("metadata", "factory:{}"), ("address_type", "None"), ("content_type", "''"),
              ("source_metadata", "None")),
    "EntryRecord": (("path", "''"), ("entry", "None")),
    "GroupMember": (("subject_type", "''"), ("subject_id", "''"), ("display_name", "''"),
                    ("username", "''"), ("added_at", "None")),
    "ListingEntry": ("path", "type", ("entry", "None"), ("status", "None")),
    "ObjectMetadata": (("etag", "None"), ("content_type", "None"), ("content_length", "None"),
                       ("reproducible", "None")),
    "PutObjectResult": (("path", "''"), ("etag", "''")),
    "RunResult": ("stdout", "exit_code"),
    "SandboxCredentials": ("access_token", "expires_at", ("principal_type", "None"),
                           ("principal_id", "None"), ("principal_name", "None"),
                           ("organization_id", "None"), ("api_url", "None")),
    "SandboxTriggerCondition": (("type", "''"), ("prefix", "''"), ("path", "''"),
                                ("diff_type", "''")),
    "SandboxTriggerConfig": ("image", ("command", "factory:[]"), ("mountpoint", "''"),
                             ("path_prefix", "''"), ("timeout_seconds", "None"),
                             ("env_vars", "factory:{}")),
    "SourceMetadata": (("connector_id", "''"), ("connector_type", "''"), ("source_path", "''"),
                       ("version_id", "''"), ("source_etag", "''"), ("import_time", "None"),
                       ("import_job_id", "''")),
    "ValidationError": (("line", "0"), ("column", "0"), ("message", "''")),
    "ValidationResult": (("valid", "False"), ("errors", "factory:[]")),
}
WITHOUT_FROM_DICT = {"CommitResult", "ObjectMetadata", "RunResult", "SandboxCredentials"}


def _shape(cls: type) -> tuple[Any, ...]:
    out: list[Any] = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out.append((f.name, repr(f.default)))
        elif f.default_factory is not dataclasses.MISSING:
            out.append((f.name, f"factory:{f.default_factory()!r}"))
        else:
            out.append(f.name)
    return tuple(out)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_value_class_fields_and_from_dict(name: str) -> None:
    cls = getattr(models, name)
    shape = _shape(cls)
    if name == "RunResult":  # 0.7.9's stderr, as a keyword with a default (see _values)
        assert shape == (*FIELDS[name], ("stderr", "factory:OutputStream(0 bytes)"))
    else:
        assert shape == FIELDS[name]
    assert hasattr(cls, "from_dict") == (name not in WITHOUT_FROM_DICT)


def test_from_dict_as_0_7_2_reads_payloads() -> None:
    entry = models.Entry.from_dict({
        "address": "s3://b/k", "last_modified": "2024-01-02T03:04:05Z", "size": 3,
        "e_tag": "e", "metadata": {"k": "v"}, "address_type": 1, "content_type": "text/csv",
        "source_metadata": {"connector_id": "c1", "import_time": "2024-01-02T03:04:05Z"}})
    assert (entry.address, entry.size, entry.e_tag, entry.metadata, entry.address_type,
            entry.content_type) == ("s3://b/k", 3, "e", {"k": "v"}, 1, "text/csv")
    assert entry.last_modified is not None and entry.last_modified.year == 2024
    assert entry.source_metadata is not None and entry.source_metadata.connector_id == "c1"
    assert models.Entry.from_dict({}) == models.Entry()
    listing = models.ListingEntry.from_dict({"path": "p/", "type": "common_prefix"})
    assert listing == models.ListingEntry(path="p/", type="common_prefix")
    assert models.ListingEntry.from_dict({}) == models.ListingEntry(path="", type="")
    assert models.EntryRecord.from_dict({"path": "x", "entry": {"size": 1}}).entry == \
        models.Entry(size=1)
    assert models.PutObjectResult.from_dict({"path": "a", "etag": '"e"'}) == \
        models.PutObjectResult(path="a", etag='"e"')
    assert models.CopyObjectResult.from_dict({"source_path": "a"}).destination_path == ""
    result = models.ValidationResult.from_dict(
        {"valid": False, "errors": [{"line": 2, "column": 5, "message": "rego_parse_error"}]})
    assert result == models.ValidationResult(
        valid=False, errors=[models.ValidationError(line=2, column=5, message="rego_parse_error")])
    assert models.ValidationError.from_dict({}) == models.ValidationError()
    cfg = models.SandboxTriggerConfig.from_dict({"image": "ubuntu", "command": ["ls"]})
    assert cfg == models.SandboxTriggerConfig(image="ubuntu", command=["ls"])
    assert models.SandboxTriggerCondition.from_dict({"type": "prefix", "prefix": "in/"}) == \
        models.SandboxTriggerCondition(type="prefix", prefix="in/")
    assert models.Attachment.from_dict({"policy_id": "p", "is_builtin": True}).is_builtin
    assert models.GroupMember.from_dict({"subject_type": "user"}).subject_type == "user"
    assert models.EffectivePolicy.from_dict({"source": "group"}).source == "group"
    assert models.EffectiveGroup.from_dict({"group_name": "g"}).group_name == "g"
    assert models.SourceMetadata.from_dict({"version_id": "v"}).version_id == "v"


def test_keyword_construction_and_repr() -> None:
    assert repr(models.CommitResult(status="committed", commit_id="c1")) == \
        "CommitResult(status='committed', commit_id='c1')"
    assert repr(models.ObjectMetadata(etag='"e"')) == "ObjectMetadata(etag='\"e\"')"
    out = models.OutputStream(b"hi")
    assert repr(models.RunResult(stdout=out, exit_code=0)) == \
        "RunResult(stdout=OutputStream(2 bytes), exit_code=0)"


# --- tilde.exceptions.api_error_for_status ----------------------------------------------------

def test_api_error_for_status_signature() -> None:
    assert str(inspect.signature(exceptions.api_error_for_status)) == (
        "(status_code: 'int', *, message: 'str' = '', code: 'str' = '', request_id: 'str' = '', "
        "method: 'str' = '', url: 'str' = '', response_text: 'str' = '') -> 'APIError'")
    assert "api_error_for_status" in exceptions.__all__


@pytest.mark.parametrize(("status", "cls"), [
    (400, "BadRequestError"), (401, "AuthenticationError"), (403, "ForbiddenError"),
    (404, "NotFoundError"), (409, "ConflictError"), (410, "GoneError"),
    (412, "PreconditionFailedError"), (423, "LockedError"), (500, "ServerError"),
    (501, "ServerError"), (599, "ServerError"), (302, "APIError"), (422, "APIError"),
    (429, "APIError")])
def test_api_error_for_status_table(status: int, cls: str) -> None:
    err = exceptions.api_error_for_status(status, message="m", code="c", request_id="r",
                                          method="GET", url="http://h/x",
                                          response_text="t" * 600)
    assert type(err) is getattr(exceptions, cls)
    assert str(err) == f"GET http://h/x -> {status}: m"  # 0.7.2: no [code=...] suffix
    assert (err.status_code, err.message, err.code, err.request_id, err.method, err.url) == (
        status, "m", "c", "r", "GET", "http://h/x")
    assert err.response_text == "t" * 500
    assert str(exceptions.api_error_for_status(status)) == f"{status}: "


# --- approval warnings ------------------------------------------------------------------------

R = "/api/v1/organizations/o/repositories/r"


def _client(handler: Any) -> tilde.Client:
    return tilde.Client(endpoint_url="http://tilde.test", api_key="k",
                        httpx_client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_commit_202_warns_with_the_0_7_2_text() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "POST" and req.url.path == f"{R}/sessions/s1":
            return httpx.Response(202, json={"web_url": "https://review/s1"})
        return httpx.Response(404)

    session = _client(handler).repository("o/r").attach("s1")
    with pytest.warns(UserWarning) as caught:
        assert session.commit("m", block_for_approval=False) is None
    assert [str(w.message) for w in caught] == [
        "Approval required - review and approve at: https://review/s1"]


@pytest.mark.parametrize(("state", "reason"), [("awaiting_approval", "awaiting_approval"),
                                               ("done", "awaiting_approval")])
def test_execute_approval_warns_with_the_0_7_9_text(state: str, reason: str) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "POST" and req.url.path == f"{R}/sandboxes":
            return httpx.Response(201, json={"sandbox_id": "sb"})
        if req.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": state, "status_reason": reason,
                                             "exit_code": 0, "web_url": "https://review/sb"})
        if req.url.path.endswith("/logs/stdout"):
            return httpx.Response(200, content=b"ran\n")
        return httpx.Response(404)

    with pytest.warns(UserWarning) as caught:
        result = _client(handler).repository("o/r").execute("true")
    assert result.exit_code == 0 and result.stdout.text() == "ran\n"
    assert [str(w.message) for w in caught] == [
        "Approval required - review and approve at: https://review/sb"]


def test_execute_without_approval_does_not_warn() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "POST":
            return httpx.Response(201, json={"sandbox_id": "sb"})
        if req.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "done", "status_reason": "committed",
                                             "exit_code": 0})
        return httpx.Response(200, content=b"")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _client(handler).repository("o/r").execute("true").exit_code == 0


# --- the official wheel itself, where its venv exists -----------------------------------------

PROBE = r'''
import dataclasses, json
import tilde.models as m
from tilde.exceptions import api_error_for_status
out = {"fields": {}, "from_dict": {}, "errors": []}
for name in sorted(m.__all__):
    cls = getattr(m, name)
    if dataclasses.is_dataclass(cls):
        out["fields"][name] = [f.name for f in dataclasses.fields(cls)]
samples = {
    "Entry": {"address": "a", "last_modified": "2024-01-02T03:04:05Z", "size": 3,
              "metadata": {"k": "v"}, "source_metadata": {"connector_id": "c"}},
    "ListingEntry": {"path": "p", "type": "object", "entry": {"size": 1}, "status": "added"},
    "EntryRecord": {"path": "p"}, "PutObjectResult": {"path": "p", "etag": "e"},
    "CopyObjectResult": {"source_path": "a", "destination_path": "b"},
    "GroupMember": {"subject_type": "user", "added_at": "2024-01-02T03:04:05+00:00"},
    "EffectiveGroup": {"group_id": "g"}, "Attachment": {"policy_id": "p", "is_builtin": True},
    "EffectivePolicy": {"policy_name": "n"}, "ValidationError": {"line": 1},
    "ValidationResult": {"valid": True, "errors": [{"message": "x"}]},
    "SandboxTriggerCondition": {"type": "path", "path": "a"},
    "SandboxTriggerConfig": {"image": "i", "env_vars": {"A": "1"}},
    "SourceMetadata": {"source_etag": "s"},
}
for name, d in samples.items():
    out["from_dict"][name] = repr(getattr(m, name).from_dict(d))
for status in (400, 401, 403, 404, 409, 410, 412, 418, 423, 500, 503):
    e = api_error_for_status(status, message="m", code="c", method="GET", url="u",
                             response_text="x" * 700)
    out["errors"].append([type(e).__name__, str(e), len(e.response_text)])
print(json.dumps(out, sort_keys=True))
'''


def _probe(python: str) -> Any:
    proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=60,
                          cwd="/")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def official_072() -> str:
    """The official 0.7.2's interpreter, its venv built here if tests/test_official_sdk.py
    has not built it yet (never a skip: a venv that cannot be built fails the test)."""
    import test_official_sdk as sdk  # tests/ is on sys.path (tests/conftest.py)

    problem = sdk.ensure("0.7.2")
    if problem:
        pytest.fail(f"could not build the official 0.7.2 virtualenv: {problem}")
    return str(sdk.venv_python("0.7.2"))


def test_same_answers_as_the_installed_official_0_7_2(official_072: str) -> None:
    theirs = _probe(official_072)
    ours = _probe(sys.executable)
    ours["fields"]["RunResult"].remove("stderr")  # 0.7.9's addition
    assert ours == theirs
