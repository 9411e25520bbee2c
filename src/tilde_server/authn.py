"""Who sends a request: the chain of bearer-key authenticators, built in app.py.

Keys say what they are by their prefix (sandbox tokens `tst-`, agent and role keys, user
keys), so the chain is a list of (prefix, authenticator) tried in order, then the default
(Identity.authenticate: users, agents, roles). A subsystem that issues its own kind of key
adds an entry when it is wired in (the sandbox manager adds its tokens) instead of
replacing another object's method. Every authenticator raises Unauthorized for a key it
does not know; none of them logs a key.
"""

from __future__ import annotations

from collections.abc import Callable

from tilde_server.store import Principal

Authenticator = Callable[[str], Principal]


class Authenticators:
    """Bearer key -> Principal (blocking: call it from a worker thread)."""

    def __init__(self, default: Authenticator) -> None:
        self._default = default
        self._by_prefix: list[tuple[str, Authenticator]] = []

    def add(self, prefix: str, authenticator: Authenticator) -> None:
        """Keys starting with `prefix` go to `authenticator` (first match wins)."""
        if not prefix:
            raise ValueError("an authenticator needs a non-empty key prefix")
        self._by_prefix.append((prefix, authenticator))

    def authenticate(self, key: str) -> Principal:
        for prefix, authenticator in self._by_prefix:
            if key.startswith(prefix):
                return authenticator(key)
        return self._default(key)
