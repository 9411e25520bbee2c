"""Repositories (spec 2.3, 3.3) plus the README's ``timeline()`` and ``objects`` (5.14)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import RepositoryData
from .commits import Commit, Commits
from .objects import ReadOnlyObjects
from .sessions import Session

if TYPE_CHECKING:
    from .._values import RunResult
    from .sandboxes import Sandboxes
    from .shell import Shell
    from .triggers import SandboxTriggers

if TYPE_CHECKING:
    from .._client import Client
    from .connectors import RepositoryConnectors
    from .imports import Imports
    from .secrets import Secrets


class Repository:
    """A repository handle. Creating one sends nothing; the first metadata read sends
    ``GET {R}`` once (handles from list/create/update are already loaded)."""

    def __init__(self, client: Client, org: str, name: str,
                 data: RepositoryData | None = None) -> None:
        self._client = client
        self._org = org
        self.name = name
        self._data = data

    def _loaded(self) -> RepositoryData:
        if self._data is None:
            self.refresh()
        assert self._data is not None
        return self._data

    @property
    def org(self) -> str:
        return self._org

    @property
    def id(self) -> str:
        return self._loaded().id

    @property
    def organization_id(self) -> str:
        return self._loaded().organization_id

    @property
    def description(self) -> str:
        return self._loaded().description

    @property
    def visibility(self) -> str:
        return self._loaded().visibility

    @property
    def session_max_duration_days(self) -> int | None:
        return self._loaded().session_max_duration_days

    @property
    def retention_days(self) -> int | None:
        return self._loaded().retention_days

    @property
    def created_by_type(self) -> str:
        return self._loaded().created_by_type

    @property
    def created_by(self) -> str:
        return self._loaded().created_by

    @property
    def created_at(self) -> datetime | None:
        return self._loaded().created_at

    def refresh(self) -> Repository:
        """Re-read the metadata from the server; returns self."""
        self._data = _wire.parse_repository(
            self._client._call(_wire.get_repository(self._org, self.name)))
        return self

    def update(self, *, description: str | None = None, visibility: str | None = None,
               session_max_duration_days: int | None = None,
               retention_days: int | None = None) -> Repository:
        """Change only the fields given; returns self, refreshed from the answer."""
        body = self._client._call(_wire.update_repository(
            self._org, self.name, description=description, visibility=visibility,
            session_max_duration_days=session_max_duration_days,
            retention_days=retention_days))
        self._data = _wire.parse_repository(body)
        return self

    def delete(self) -> None:
        self._client._send(_wire.delete_repository(self._org, self.name)).close()

    def session(self) -> Session:
        """Open a new session (transaction) on the server."""
        body = self._client._call(_wire.create_session(self._org, self.name))
        return Session(self._client, self._org, self.name, _wire.parse_session_id(body))

    def attach(self, session_id: str) -> Session:
        """Resume an existing session by id; sends no request."""
        if not session_id:
            raise ValueError("session_id must not be empty")
        return Session(self._client, self._org, self.name, session_id)

    @property
    def commits(self) -> Commits:
        return Commits(self._client, self._org, self.name)

    def timeline(self, *, ref: str | None = None, after: str | None = None,
                 amount: int | None = None) -> Iterator[Commit]:
        """Commit history, newest first (README name for ``commits.list``)."""
        return self.commits.list(ref=ref, after=after, amount=amount)

    @property
    def objects(self) -> ReadOnlyObjects:
        """Read-only view of the latest committed state (README name)."""
        return ReadOnlyObjects(self._client, self._org, self.name)

    # --- sandboxes (2.8, 2.9) ---------------------------------------------------------

    @property
    def connectors(self) -> RepositoryConnectors:
        """Connectors attached to this repository (spec 2.15)."""
        from .connectors import RepositoryConnectors

        return RepositoryConnectors(self._client, self._org, self.name)

    @property
    def imports(self) -> Imports:
        """Import jobs into this repository (spec 2.16)."""
        from .imports import Imports

        return Imports(self._client, self._org, self.name)

    @property
    def secrets(self) -> Secrets:
        """Repository secrets (spec 2.14); sandboxes get them as environment variables."""
        from .secrets import Secrets

        return Secrets(self._client, _wire.repository_secrets_path(self._org, self.name))

    @property
    def sandboxes(self) -> Sandboxes:
        from .sandboxes import Sandboxes

        return Sandboxes(self._client, self._org, self.name)

    @property
    def sandbox_triggers(self) -> SandboxTriggers:
        from .triggers import SandboxTriggers

        return SandboxTriggers(self._client, self._org, self.name)

    def execute(self, command: str | list[str], *, image: str | None = None,
                env: dict[str, str] | None = None, timeout: int | None = None,
                check: bool = True, mountpoint: str | None = None,
                path_prefix: str | None = None) -> RunResult:
        """Run one command in a new sandbox and wait for it; a clean exit commits its changes.

        A string runs through ``sh -c``. ``check=True`` raises ``CommandError`` on a non-zero
        exit (nothing is committed then).
        """
        from .sandboxes import execute

        return execute(self._client, self._org, self.name, command, image=image, env=env,
                       timeout=timeout, check=check, mountpoint=mountpoint,
                       path_prefix=path_prefix)

    def shell(self, *, image: str | None = None, env: dict[str, str] | None = None,
              cmd: list[str] | None = None, timeout: int | None = None,
              name: str | None = None, mountpoint: str | None = None,
              path_prefix: str | None = None) -> Shell:
        """Create the shell's sandbox now; use the result as ``with ... as sh``.

        A service sandbox driven over ``/exec`` when the server has it, else 0.7.2's
        interactive shell (``tilde.resources.shell``, point 1). ``cmd`` names the terminal's
        shell and so asks for the interactive one. ``name`` is accepted and ignored, as in
        0.7.2.
        """
        from .shell import _ShellSpec, open_shell

        del name
        return open_shell(self._client, _ShellSpec(
            org=self._org, repo=self.name,
            image=self._client.default_sandbox_image if image is None else image, env=env,
            cmd=cmd, mountpoint=mountpoint, path_prefix=path_prefix, timeout=timeout))

    def __repr__(self) -> str:
        return f"Repository({self._org}/{self.name})"


class Repositories:
    """The repositories of one organization."""

    def __init__(self, client: Client, org: str) -> None:
        self._client = client
        self._org = org

    def _handle(self, d: dict[str, Any]) -> Repository:
        data = _wire.parse_repository(d)
        return Repository(self._client, self._org, data.name, data)

    def list(self, *, after: str | None = None) -> Iterator[Repository]:
        return self._client._paginate(
            lambda cursor: _wire.list_repositories(self._org, after=cursor), self._handle, after)

    def get(self, name: str) -> Repository:
        """Handle by name; sends no request."""
        if not name:
            raise ValueError("repository name must not be empty")
        return Repository(self._client, self._org, name)

    def create(self, name: str, *, description: str = "", visibility: str = "private",
               session_max_duration_days: int | None = None,
               retention_days: int | None = None) -> Repository:
        return self._handle(self._client._call(_wire.create_repository(
            self._org, name, description=description, visibility=visibility,
            session_max_duration_days=session_max_duration_days,
            retention_days=retention_days)))

    def delete(self, name: str) -> None:
        self._client._send(_wire.delete_repository(self._org, name)).close()
