"""Public home of :class:`Client` (``from tilde.client import Client``)."""

from ._client import Client

__all__ = ["Client"]
