"""Entity and value classes of the client (spec 3.3-3.9).

Only the areas implemented so far are exported: organizations, repositories, sessions,
objects and commits. Sandboxes, identity, secrets and connectors come later.
"""

from ._credentials import SandboxCredentialsProvider
from ._values import (
    CommitResult,
    CopyObjectResult,
    Entry,
    EntryRecord,
    ListingEntry,
    ObjectMetadata,
    OutputStream,
    PutObjectResult,
    RunResult,
    SandboxCredentials,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SourceMetadata,
)
from .resources.commits import Commit, Commits
from .resources.objects import ObjectReader, ReadOnlyObjects, SessionObjects
from .resources.organizations import Organization, Organizations
from .resources.repositories import Repositories, Repository
from .resources.sandboxes import LogStream, Sandbox, Sandboxes, SandboxStatus
from .resources.sessions import Session
from .resources.shell import Shell
from .resources.triggers import (
    SandboxTrigger,
    SandboxTriggerRun,
    SandboxTriggerRuns,
    SandboxTriggers,
)

__all__ = [
    "Commit",
    "CommitResult",
    "Commits",
    "CopyObjectResult",
    "Entry",
    "EntryRecord",
    "ListingEntry",
    "LogStream",
    "ObjectMetadata",
    "Organization",
    "Organizations",
    "OutputStream",
    "PutObjectResult",
    "ReadOnlyObjects",
    "Repositories",
    "Repository",
    "RunResult",
    "Sandbox",
    "SandboxCredentials",
    "SandboxCredentialsProvider",
    "SandboxStatus",
    "SandboxTrigger",
    "SandboxTriggerCondition",
    "SandboxTriggerConfig",
    "SandboxTriggerRun",
    "SandboxTriggerRuns",
    "SandboxTriggers",
    "Sandboxes",
    "Session",
    "SessionObjects",
    "Shell",
    "SourceMetadata",
]

# ObjectReader is reachable here (as in 0.7.2) but not exported.
_ = ObjectReader
