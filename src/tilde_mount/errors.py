"""The one table from client exceptions to errno, and `FsError`.

Every layer below the FUSE adapter raises either a `tilde.exceptions` error (built by
`tilde._wire.error_for_response` or the remote's transport wrapper) or `FsError`.
`errno_for` turns the former into the latter in exactly one place; `fuse_ops` turns
`FsError` into `pyfuse3.FUSEError`. Anything else reaching the adapter is a bug: it is
logged with its traceback and answered with EIO.

Subtleties:
1. 409 means EEXIST only when the operation creates something (callers pass
   ``creating=True``); any other 409 is EBUSY. A conflicting *commit* never goes through
   this table: the control plane gets the `ConflictError` itself.
2. A transient failure (transport error, 5xx, 429) reaches this table only after the
   remote's retries are exhausted, so it is EIO. 501 (not implemented) is ENOTSUP.
"""

from __future__ import annotations

import errno as _errno

from tilde import exceptions as exc


class FsError(Exception):
    """A POSIX error for one filesystem operation; ``errno`` is what the kernel gets."""

    def __init__(self, errno: int, message: str = "") -> None:
        super().__init__(errno, message or _errno.errorcode.get(errno, str(errno)))
        self.errno = errno

    def __repr__(self) -> str:
        return f"FsError({_errno.errorcode.get(self.errno, self.errno)})"


#: status code -> errno for API errors (the table of mount-semantics.md "Failure").
_STATUS_ERRNO: dict[int, int] = {
    400: _errno.EINVAL,
    401: _errno.EACCES,
    403: _errno.EACCES,
    404: _errno.ENOENT,
    409: _errno.EBUSY,
    410: _errno.ENOENT,
    412: _errno.ESTALE,
    413: _errno.EFBIG,
    423: _errno.EACCES,
    429: _errno.EIO,
}


def errno_for(error: BaseException, *, creating: bool = False) -> int:
    """The errno an application should see for ``error``."""
    if isinstance(error, FsError):
        return error.errno
    if isinstance(error, exc.APIError):
        if error.status_code == 409 and creating:
            return _errno.EEXIST
        if error.status_code == 501:
            return _errno.ENOTSUP
        return _STATUS_ERRNO.get(error.status_code, _errno.EIO)
    if isinstance(error, exc.ConfigurationError):
        return _errno.EACCES
    if isinstance(error, exc.TildeError):  # transport (after retries), serialization, ...
        return _errno.EIO
    if isinstance(error, OSError) and error.errno:  # local staging / cache disk
        return error.errno
    return _errno.EIO


def to_fs_error(error: BaseException, *, creating: bool = False) -> FsError:
    """``FsError`` for ``error`` (chain it with ``raise ... from error``)."""
    if isinstance(error, FsError):
        return error
    return FsError(errno_for(error, creating=creating), str(error))


def is_transient(error: BaseException) -> bool:
    """Worth retrying: transport failures, timeouts, 5xx (but 501) and 429."""
    if isinstance(error, exc.TransportError):
        return True
    if isinstance(error, exc.APIError):
        return error.status_code == 429 or (error.status_code >= 500 and error.status_code != 501)
    return False


def root_cause(error: BaseException) -> BaseException:
    """The meaningful exception inside trio's exception groups: the first tilde error,
    else the first leaf (a nursery of parallel requests wraps what one of them raised)."""
    if not isinstance(error, BaseExceptionGroup):
        return error
    leaves: list[BaseException] = []
    stack: list[BaseException] = [error]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = list(e.exceptions)
        else:
            leaves.append(e)
    for leaf in leaves:
        if isinstance(leaf, exc.TildeError):
            return leaf
    return leaves[0] if leaves else error
