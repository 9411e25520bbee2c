"""Entity and value classes of the client (spec 3.3-3.9).

Exports grow with the areas implemented: organizations, repositories, sessions, objects,
commits, sandboxes, triggers, secrets, connectors and imports.
"""

from ._credentials import SandboxCredentialsProvider
from ._values import (
    Attachment,
    CommitResult,
    CopyObjectResult,
    EffectiveGroup,
    EffectivePolicy,
    Entry,
    EntryRecord,
    GroupMember,
    ListingEntry,
    ObjectMetadata,
    OutputStream,
    PutObjectResult,
    RunResult,
    SandboxCredentials,
    SandboxTriggerCondition,
    SandboxTriggerConfig,
    SourceMetadata,
    ValidationError,
    ValidationResult,
)
from .resources.agents import Agent, Agents, APIKey, APIKeys
from .resources.commits import Commit, Commits
from .resources.connectors import Connector, Connectors, RepositoryConnectors
from .resources.groups import Group, GroupMembers, Groups
from .resources.imports import ImportJob, Imports
from .resources.members import Member, Members
from .resources.objects import ObjectReader, ReadOnlyObjects, SessionObjects
from .resources.organizations import Organization, Organizations
from .resources.policies import Policies, Policy
from .resources.repositories import Repositories, Repository
from .resources.roles import Role, Roles
from .resources.sandboxes import LogStream, Sandbox, Sandboxes, SandboxStatus
from .resources.secrets import Secret, Secrets
from .resources.sessions import Session
from .resources.shell import Shell
from .resources.triggers import (
    SandboxTrigger,
    SandboxTriggerRun,
    SandboxTriggerRuns,
    SandboxTriggers,
)

__all__ = [
    "APIKey",
    "APIKeys",
    "Agent",
    "Agents",
    "Attachment",
    "Commit",
    "CommitResult",
    "Commits",
    "Connector",
    "Connectors",
    "CopyObjectResult",
    "EffectiveGroup",
    "EffectivePolicy",
    "Entry",
    "EntryRecord",
    "Group",
    "GroupMember",
    "GroupMembers",
    "Groups",
    "ImportJob",
    "Imports",
    "ListingEntry",
    "LogStream",
    "Member",
    "Members",
    "ObjectMetadata",
    "Organization",
    "Organizations",
    "OutputStream",
    "Policies",
    "Policy",
    "PutObjectResult",
    "ReadOnlyObjects",
    "Repositories",
    "Repository",
    "RepositoryConnectors",
    "Role",
    "Roles",
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
    "Secret",
    "Secrets",
    "Session",
    "SessionObjects",
    "Shell",
    "SourceMetadata",
    "ValidationError",
    "ValidationResult",
]

# ObjectReader is reachable here (as in 0.7.2) but not exported.
_ = ObjectReader
