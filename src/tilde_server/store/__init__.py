"""The versioned store engine: no HTTP in here (see engine.py for the design)."""

from tilde_server.store.engine import Obj, Page, Principal, Store
from tilde_server.store.errors import (
    BadRequest,
    Conflict,
    DataDirError,
    Forbidden,
    Gone,
    Locked,
    NotFound,
    PreconditionFailed,
    RangeNotSatisfiable,
    StoreError,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "BadRequest",
    "Conflict",
    "DataDirError",
    "Forbidden",
    "Gone",
    "Locked",
    "NotFound",
    "Obj",
    "Page",
    "PreconditionFailed",
    "Principal",
    "RangeNotSatisfiable",
    "Store",
    "StoreError",
    "Unauthorized",
    "Unavailable",
]
