"""Domain errors of the store. The HTTP layer maps each class to a status in one table
(tilde_server.app.STATUS_FOR_ERROR); nothing in the store knows about HTTP."""

from __future__ import annotations

from typing import Any


class StoreError(Exception):
    """Base class. `code` is the machine-readable error code sent to clients."""

    code = "error"

    def __init__(self, message: str, code: str | None = None, *,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        # Extra JSON fields of the error body (a refused rebase's `conflicts`).
        self.details: dict[str, Any] = details or {}


class BadRequest(StoreError):
    code = "bad_request"


class Unauthorized(StoreError):
    code = "unauthorized"


class Forbidden(StoreError):
    code = "forbidden"


class NotFound(StoreError):
    code = "not_found"


class Conflict(StoreError):
    code = "conflict"


class Gone(StoreError):
    """The entity existed and was deleted (a deleted connector, spec 5.17)."""

    code = "gone"


class PreconditionFailed(StoreError):
    code = "precondition_failed"


class Locked(StoreError):
    """The entity exists but may not be used now (a disabled connector, spec 5.17)."""

    code = "locked"


class Unavailable(StoreError):
    """A capability this server was started without (e.g. sandboxes when bubblewrap is off)."""

    code = "unavailable"


class RangeNotSatisfiable(StoreError):
    """The byte range lies outside the object; `size` feeds `Content-Range: bytes */size`."""

    code = "range_not_satisfiable"

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size


class DataDirError(Exception):
    """The data directory cannot be used (foreign, newer format). CLI prints one line."""
