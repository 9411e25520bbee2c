"""The exception tree of spec 3.10 and the string form of 1.5."""

import pickle

import pytest

from tilde import exceptions as exc


def test_tree() -> None:
    for cls in (exc.ConfigurationError, exc.TransportError, exc.SerializationError,
                exc.SandboxError, exc.APIError):
        assert issubclass(cls, exc.TildeError)
    assert issubclass(exc.CommandError, exc.SandboxError)
    for cls in (exc.BadRequestError, exc.AuthenticationError, exc.ForbiddenError,
                exc.NotFoundError, exc.ConflictError, exc.GoneError,
                exc.PreconditionFailedError, exc.LockedError, exc.ServerError):
        assert issubclass(cls, exc.APIError)


@pytest.mark.parametrize(("status", "cls"), [
    (400, exc.BadRequestError), (401, exc.AuthenticationError), (403, exc.ForbiddenError),
    (404, exc.NotFoundError), (409, exc.ConflictError), (410, exc.GoneError),
    (412, exc.PreconditionFailedError), (423, exc.LockedError), (500, exc.ServerError),
    (501, exc.ServerError), (503, exc.ServerError), (302, exc.APIError),
    (405, exc.APIError), (422, exc.APIError), (429, exc.APIError),
])
def test_status_table(status: int, cls: type) -> None:
    assert exc.exception_class_for_status(status) is cls


def test_string_forms() -> None:
    err = exc.NotFoundError(404, message="no such repo", method="GET",
                            url="http://h/api/v1/organizations/o")
    assert str(err) == "GET http://h/api/v1/organizations/o -> 404: no such repo"
    assert str(exc.APIError(404, message="gone")) == "404: gone"
    assert err.code == "" and err.request_id == "" and err.response_text == ""


def test_attributes_and_pickle() -> None:
    err = exc.ConflictError(409, message="m", code="c", request_id="r", method="POST",
                            url="u", response_text="t")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is exc.ConflictError
    assert (back.status_code, back.message, back.code, back.request_id, back.method,
            back.url, back.response_text) == (409, "m", "c", "r", "POST", "u", "t")


def test_transport_and_command_errors() -> None:
    cause = OSError("refused")
    err = exc.TransportError("boom", cause)
    assert err.cause is cause and err.__cause__ is cause and str(err) == "boom"
    cmd = exc.CommandError("failed", result=None, command=["ls", "-l"])
    assert cmd.command == "ls -l"
