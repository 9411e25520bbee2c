"""Pins the public face: what ``import tilde`` and ``tilde.models`` export."""

import tilde
import tilde.client
import tilde.exceptions
import tilde.models


def test_tilde_all_is_explicit_and_sorted() -> None:
    assert tilde.__all__ == sorted(tilde.__all__)
    assert tilde.__all__ == [
        "APIError", "AuthenticationError", "BadRequestError", "Client", "CommandError",
        "ConfigurationError", "ConflictError", "ForbiddenError", "GoneError", "LockedError",
        "NotFoundError", "PreconditionFailedError", "SandboxError", "SerializationError",
        "ServerError", "TildeError", "TransportError", "__version__", "configure",
        "organization", "organizations", "repository",
    ]


def test_every_exported_name_resolves() -> None:
    for module in (tilde, tilde.models, tilde.exceptions, tilde.client):
        for name in module.__all__:
            assert getattr(module, name) is not None, (module.__name__, name)


def test_models_all() -> None:
    """Exactly the 0.7.2 list of spec 3.1 (the whole surface is now implemented)."""
    assert tilde.models.__all__ == sorted(tilde.models.__all__)
    assert tilde.models.__all__ == [
        "APIKey", "APIKeys", "Agent", "Agents", "Attachment", "Commit", "CommitResult",
        "Commits", "Connector", "Connectors", "CopyObjectResult", "EffectiveGroup",
        "EffectivePolicy", "Entry", "EntryRecord", "Group", "GroupMember", "GroupMembers",
        "Groups", "ImportJob", "Imports", "ListingEntry", "LogStream", "Member", "Members",
        "ObjectMetadata", "Organization", "Organizations", "OutputStream", "Policies", "Policy",
        "PutObjectResult", "ReadOnlyObjects", "Repositories", "Repository",
        "RepositoryConnectors", "Role", "Roles", "RunResult", "Sandbox", "SandboxCredentials",
        "SandboxCredentialsProvider", "SandboxStatus", "SandboxTrigger",
        "SandboxTriggerCondition", "SandboxTriggerConfig", "SandboxTriggerRun",
        "SandboxTriggerRuns", "SandboxTriggers", "Sandboxes", "Secret", "Secrets", "Session",
        "SessionObjects", "Shell", "SourceMetadata", "ValidationError", "ValidationResult",
    ]


def test_version_and_client_module() -> None:
    assert tilde.__version__ == "0.7.2"
    assert tilde.client.Client is tilde.Client
    assert "organizations" in dir(tilde)
