"""Entity and value classes of the client (spec 3.3-3.9).

Only the areas implemented so far are exported: organizations, repositories, sessions,
objects and commits. Sandboxes, identity, secrets and connectors come later.
"""

from ._values import (
    CommitResult,
    CopyObjectResult,
    Entry,
    EntryRecord,
    ListingEntry,
    ObjectMetadata,
    PutObjectResult,
    SourceMetadata,
)
from .resources.commits import Commit, Commits
from .resources.objects import ObjectReader, ReadOnlyObjects, SessionObjects
from .resources.organizations import Organization, Organizations
from .resources.repositories import Repositories, Repository
from .resources.sessions import Session

__all__ = [
    "Commit",
    "CommitResult",
    "Commits",
    "CopyObjectResult",
    "Entry",
    "EntryRecord",
    "ListingEntry",
    "ObjectMetadata",
    "Organization",
    "Organizations",
    "PutObjectResult",
    "ReadOnlyObjects",
    "Repositories",
    "Repository",
    "Session",
    "SessionObjects",
    "SourceMetadata",
]

# ObjectReader is reachable here (as in 0.7.2) but not exported.
_ = ObjectReader
