"""Every error the client raises, as one tree (spec 3.10)::

    TildeError
    ├── ConfigurationError          no API key, bad settings
    ├── TransportError              network failure, presigned upload refused (cause chained)
    ├── SerializationError          a response that should be JSON is not
    ├── SandboxError
    │   └── CommandError            (sandboxes arrive in a later issue; declared for the tree)
    └── APIError                    any non-2xx API answer; carries status, message, code,
        │                           request id, method, url and the raw body (cut to 500)
        ├── BadRequestError          400
        ├── AuthenticationError      401
        ├── ForbiddenError           403
        ├── NotFoundError            404
        ├── ConflictError            409
        ├── GoneError                410
        ├── PreconditionFailedError  412
        ├── LockedError              423
        └── ServerError              >= 500 (501 included; ``status_code`` tells them apart)

The status -> class table lives here (``exception_class_for_status``) and nowhere else;
``tilde._wire.error_for_response`` uses it to build the exception from a response, and
``api_error_for_status`` (0.7.2's public helper, same signature) builds one from parts.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CommandError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "LockedError",
    "NotFoundError",
    "PreconditionFailedError",
    "SandboxError",
    "SerializationError",
    "ServerError",
    "TildeError",
    "TransportError",
    "api_error_for_status",
    "exception_class_for_status",
]


class TildeError(Exception):
    """Base of every exception the client raises on purpose."""


class ConfigurationError(TildeError):
    """The client is not set up to make the request (for example: no API key)."""


class TransportError(TildeError):
    """The request never got a usable HTTP answer (DNS, refused, timeout, upload refused)."""

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class SerializationError(TildeError):
    """A response that must be JSON could not be decoded."""


class SandboxError(TildeError):
    """Sandbox failures (the sandbox API itself is not part of this client yet)."""


class CommandError(SandboxError):
    """A sandboxed command failed; ``command`` is the command line as one string."""

    def __init__(self, message: str, *, result: Any, command: str | list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.result = result
        self.command = " ".join(command) if isinstance(command, list) else command


class APIError(TildeError):
    """The API answered with a non-2xx status.

    ``str(err)`` is ``"<METHOD> <url> -> <status>: <message>"`` (spec 1.5), or
    ``"<status>: <message>"`` for errors made up on the client side (no method).
    """

    def __init__(
        self,
        status_code: int,
        *,
        message: str = "",
        code: str = "",
        request_id: str = "",
        method: str = "",
        url: str = "",
        response_text: str = "",
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.code = code
        self.request_id = request_id
        self.method = method
        self.url = url
        self.response_text = response_text[:500]  # as 0.7.2 keeps it
        super().__init__(self._text())

    def _text(self) -> str:
        if self.method:
            return f"{self.method} {self.url} -> {self.status_code}: {self.message}"
        return f"{self.status_code}: {self.message}"

    def __str__(self) -> str:
        return self._text()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status_code}, message={self.message!r})"

    def __reduce__(self) -> Any:
        # Keyword-only constructor: pickle through a helper so errors cross process pools.
        return (_rebuild_api_error, (type(self), self.status_code, self.__dict__.copy()))


def _rebuild_api_error(cls: type[APIError], status_code: int, state: dict[str, Any]) -> APIError:
    err = cls(status_code)
    err.__dict__.update(state)
    return err


class BadRequestError(APIError):
    """400: the request was invalid."""


class AuthenticationError(APIError):
    """401: missing or invalid token."""


class ForbiddenError(APIError):
    """403: a policy denies the call."""


class NotFoundError(APIError):
    """404: unknown organization, repository, session, object or commit."""


class ConflictError(APIError):
    """409: the change conflicts with the current state."""


class GoneError(APIError):
    """410: the entity existed but is gone."""


class PreconditionFailedError(APIError):
    """412: a precondition no longer holds."""


class LockedError(APIError):
    """423: the entity is locked (disabled)."""


class ServerError(APIError):
    """Any status >= 500, 501 included."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    412: PreconditionFailedError,
    423: LockedError,
}


def exception_class_for_status(status_code: int) -> type[APIError]:
    """The one status -> exception table of spec 1.5; other non-2xx give plain APIError."""
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, APIError)


def api_error_for_status(
    status_code: int,
    *,
    message: str = "",
    code: str = "",
    request_id: str = "",
    method: str = "",
    url: str = "",
    response_text: str = "",
) -> APIError:
    """The exception for ``status_code`` built from its parts: 0.7.2's public helper, which
    user code calls to raise or compare the client's own errors."""
    return exception_class_for_status(status_code)(
        status_code, message=message, code=code, request_id=request_id, method=method,
        url=url, response_text=response_text)
