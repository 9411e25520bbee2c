"""Import jobs of a repository (spec 2.16, 3.8), plus the README names ``start`` and
``status`` (5.14).

An import runs on the server in the background; a job is polled with ``refresh()`` (or
``Imports.get`` / ``status``) until its ``status`` is ``completed`` or ``failed``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .. import _wire
from .._values import ImportJobData

if TYPE_CHECKING:
    from .._client import Client


class ImportJob:
    """One import job; every field of 2.16 under the same name."""

    def __init__(self, client: Client, org: str, repo: str, data: ImportJobData) -> None:
        self._client = client
        self._org = org
        self._repo = repo
        self._set(data)

    def _set(self, d: ImportJobData) -> None:
        self.id = d.id
        self.status = d.status
        self.repository_id = d.repository_id
        self.connector_id = d.connector_id
        self.source_prefix = d.source_prefix
        self.destination_path = d.destination_path
        self.commit_message = d.commit_message
        self.objects_imported: int | None = d.objects_imported
        self.commit_id = d.commit_id
        self.error = d.error
        self.source_repository_id = d.source_repository_id
        self.source_organization = d.source_organization
        self.source_repository = d.source_repository
        self.created_by_type = d.created_by_type
        self.created_by = d.created_by
        self.created_at: datetime | None = d.created_at
        self.updated_at: datetime | None = d.updated_at

    def refresh(self) -> ImportJob:
        """Fetch the job's current state; returns self, updated."""
        body = self._client._call(_wire.get_import(self._org, self._repo, self.id))
        self._set(_wire.parse_import_job(body))
        return self

    def __repr__(self) -> str:
        return (f"ImportJob(id={self.id!r}, status={self.status!r}, "
                f"objects_imported={self.objects_imported!r})")


class Imports:
    """Imports into one repository."""

    def __init__(self, client: Client, org: str, repo: str) -> None:
        self._client = client
        self._org = org
        self._repo = repo

    def get(self, job_id: str) -> ImportJob:
        body = self._client._call(_wire.get_import(self._org, self._repo, job_id))
        return ImportJob(self._client, self._org, self._repo, _wire.parse_import_job(body))

    def _started(self, body: object) -> ImportJob:
        """The 0.7.2 flow: read ``job_id`` from the 202 and fetch the job at once."""
        return self.get(_wire.parse_job_id(body))

    def create_from_connector(self, connector_id: str, destination_path: str, *,
                              source_prefix: str | None = None,
                              commit_message: str | None = None) -> ImportJob:
        return self._started(self._client._call(_wire.start_import_from_connector(
            self._org, self._repo, connector_id, destination_path,
            source_prefix=source_prefix, commit_message=commit_message)))

    def create_from_repository(self, repo_path: str, destination_path: str, *,
                               source_prefix: str | None = None,
                               commit_message: str | None = None) -> ImportJob:
        """Import another repository's objects; ``repo_path`` is ``org/repo``."""
        src_org, src_repo = _wire.split_repo_path(repo_path)
        return self._started(self._client._call(_wire.start_import_from_repository(
            self._org, self._repo, src_org, src_repo, destination_path,
            source_prefix=source_prefix, commit_message=commit_message)))

    # --- README names (5.14) -----------------------------------------------------------
    def start(self, *, connector_id: str, destination_path: str,
              source_path: str | None = None, commit_message: str | None = None) -> str:
        """Start an import from a connector; returns the job id (poll it with ``status``).

        ``source_path`` narrows the import: a prefix inside the connector's source, relative
        (``"data/"``) or as a full URI (``"s3://bucket/data/"``).
        """
        body = self._client._call(_wire.start_import_from_connector(
            self._org, self._repo, connector_id, destination_path,
            source_prefix=source_path, commit_message=commit_message))
        return _wire.parse_job_id(body)

    def status(self, job: str | ImportJob) -> ImportJob:
        """The job's current state (``job`` is a job id or an ``ImportJob``)."""
        return self.get(job.id if isinstance(job, ImportJob) else job)
