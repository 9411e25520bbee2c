"""Identity: members (2.2), agents and keys (2.10), roles (2.11), groups (2.12),
policies (2.13)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._values import (
    AgentData,
    APIKeyData,
    Attachment,
    EffectiveGroup,
    EffectivePolicy,
    GroupData,
    GroupMember,
    MemberData,
    PolicyData,
    RoleData,
    ValidationError,
    ValidationResult,
)
from .common import DEFAULT_PAGE_SIZE, WireRequest, _amount, _params, _s, parse_timestamp

# --- identity: members (2.2), agents and keys (2.10), roles (2.11), groups (2.12),
#     policies (2.13) ------------------------------------------------------------------------

def current_user() -> WireRequest:
    """``GET /auth/me`` (today's service; not in 0.7.2): the key's principal and its
    organizations, ``{user: {id, username, source, ...}, organizations: [{name, ...}]}``."""
    return WireRequest("GET", "/auth/me")


def _o(org: str) -> str:
    return f"/organizations/{org}"


def list_members(org: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/members")


def add_member(org: str, username: str | None = None, *, user_id: str | None = None,
               role: str | None = None) -> WireRequest:
    """0.7.2 sends ``{username}``; the README's ``add(user_id=, role=)`` sends those keys."""
    body = {k: v for k, v in (("username", username), ("user_id", user_id), ("role", role))
            if v is not None}
    return WireRequest("POST", f"{_o(org)}/members", json=body)


def remove_member(org: str, user_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/members/{user_id}")


def _principals(kind: str) -> str:
    if kind not in ("agents", "roles"):
        raise ValueError(f"kind must be 'agents' or 'roles', not {kind!r}")
    return kind


def list_principals(org: str, kind: str, *, after: str | None = None,
                    amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_principal(org: str, kind: str, name: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}/{name}")


def delete_principal(org: str, kind: str, name: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/{_principals(kind)}/{name}")


def create_agent(org: str, name: str, *, description: str = "",
                 metadata: Mapping[str, str] | None = None) -> WireRequest:
    body: dict[str, Any] = {"name": name, "description": description}
    if metadata:
        body["metadata"] = dict(metadata)
    return WireRequest("POST", f"{_o(org)}/agents", json=body)


def update_agent(org: str, name: str, *, description: str | None = None,
                 metadata: Mapping[str, str] | None = None,
                 inline_policy: str | None = None) -> WireRequest:
    body: dict[str, Any] = {}
    if description is not None:
        body["description"] = description
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if inline_policy is not None:
        body["inline_policy"] = inline_policy
    return WireRequest("PUT", f"{_o(org)}/agents/{name}", json=body)


def create_role(org: str, name: str, *, description: str = "") -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/roles", json={"name": name,
                                                         "description": description})


def list_api_keys(org: str, kind: str, name: str, *, after: str | None = None,
                  amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_api_key(org: str, kind: str, name: str, key_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys/{key_id}")


def create_api_key(org: str, kind: str, name: str, key_name: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys",
                       json={"name": key_name})


def revoke_api_key(org: str, kind: str, name: str, key_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/{_principals(kind)}/{name}/auth/keys/{key_id}")


def list_groups(org: str, *, after: str | None = None,
                amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/groups",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_group(org: str, group_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/groups/{group_id}")


def create_group(org: str, name: str, *, description: str = "") -> WireRequest:
    body = {"name": name}
    if description:
        body["description"] = description
    return WireRequest("POST", f"{_o(org)}/groups", json=body)


def update_group(org: str, group_id: str, *, name: str | None = None,
                 description: str | None = None) -> WireRequest:
    body = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
    return WireRequest("PUT", f"{_o(org)}/groups/{group_id}", json=body)


def delete_group(org: str, group_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/groups/{group_id}")


def add_group_member(org: str, group_id: str, subject_type: str,
                     subject_id: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/groups/{group_id}/members",
                       json={"subject_type": subject_type, "subject_id": subject_id})


def remove_group_member(org: str, group_id: str, subject_type: str,
                        subject_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/groups/{group_id}/members",
                       _params(("subject_type", subject_type), ("subject_id", subject_id)))


def effective_groups(org: str, principal_type: str, principal_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/effective-groups",
                       _params(("principal_type", principal_type),
                               ("principal_id", principal_id)))


def list_policies(org: str, *, after: str | None = None,
                  amount: int | None = DEFAULT_PAGE_SIZE) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/policies",
                       _params(("amount", _amount(amount)), ("after", after)))


def get_policy(org: str, policy_id: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/policies/{policy_id}")


def create_policy(org: str, name: str, policy_text: str, *, description: str = "") -> WireRequest:
    body = {"name": name, "policy_text": policy_text}
    if description:
        body["description"] = description
    return WireRequest("POST", f"{_o(org)}/policies", json=body)


def update_policy(org: str, policy_id: str, *, name: str | None = None,
                  description: str | None = None,
                  policy_text: str | None = None) -> WireRequest:
    body = {k: v for k, v in (("name", name), ("description", description),
                              ("policy_text", policy_text)) if v is not None}
    return WireRequest("PUT", f"{_o(org)}/policies/{policy_id}", json=body)


def delete_policy(org: str, policy_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/policies/{policy_id}")


def validate_policy(org: str, policy_text: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/policies:validate", json={"policy_text": policy_text})


def generate_policy(org: str, prompt: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/policies:generate", json={"prompt": prompt})


def attach_policy(org: str, policy_id: str, principal_type: str,
                  principal_id: str) -> WireRequest:
    return WireRequest("POST", f"{_o(org)}/policies/{policy_id}/attachments",
                       json={"principal_type": principal_type, "principal_id": principal_id})


def detach_policy(org: str, policy_id: str, principal_type: str,
                  principal_id: str) -> WireRequest:
    return WireRequest("DELETE", f"{_o(org)}/policies/{policy_id}/attachments",
                       _params(("principal_type", principal_type),
                               ("principal_id", principal_id)))


def list_attachments(org: str) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/attachments")


def effective_policies(org: str, *, principal_type: str | None = None,
                       principal_id: str | None = None,
                       user_id: str | None = None) -> WireRequest:
    return WireRequest("GET", f"{_o(org)}/effective-policies",
                       _params(("user_id", user_id), ("principal_type", principal_type),
                               ("principal_id", principal_id)))


def parse_member(d: Mapping[str, Any]) -> MemberData:
    return MemberData(
        user_id=_s(d, "user_id"), username=d.get("username") or "",
        full_name=d.get("full_name") or "", email=d.get("email") or "",
        organization_id=_s(d, "organization_id"), joined_at=parse_timestamp(d.get("joined_at")),
        role=d.get("role") or "")


def parse_agent(d: Mapping[str, Any]) -> AgentData:
    return AgentData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        metadata=tuple((d.get("metadata") or {}).items()),
        inline_policy=_s(d, "inline_policy"),
        inline_policy_updated_at=parse_timestamp(d.get("inline_policy_updated_at")),
        organization_id=_s(d, "organization_id"), created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_by_name=_s(d, "created_by_name"),
        created_at=parse_timestamp(d.get("created_at")),
        last_used_at=parse_timestamp(d.get("last_used_at")))


def parse_api_key(d: Mapping[str, Any]) -> APIKeyData:
    return APIKeyData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        token_hint=_s(d, "token_hint"), token=d.get("token") or "",
        created_at=parse_timestamp(d.get("created_at")),
        last_used_at=parse_timestamp(d.get("last_used_at")),
        revoked_at=parse_timestamp(d.get("revoked_at")))


def parse_role(d: Mapping[str, Any]) -> RoleData:
    return RoleData(
        id=_s(d, "id"), name=_s(d, "name"), description=_s(d, "description"),
        organization_id=_s(d, "organization_id"), created_by_type=_s(d, "created_by_type"),
        created_by=_s(d, "created_by"), created_by_name=_s(d, "created_by_name"),
        created_at=parse_timestamp(d.get("created_at")),
        last_used_at=parse_timestamp(d.get("last_used_at")))


def parse_group_member(d: Mapping[str, Any]) -> GroupMember:
    return GroupMember(subject_type=_s(d, "subject_type"), subject_id=_s(d, "subject_id"),
                       display_name=_s(d, "display_name"), username=_s(d, "username"),
                       added_at=parse_timestamp(d.get("added_at")))


def parse_attachment(d: Mapping[str, Any]) -> Attachment:
    return Attachment(
        policy_id=_s(d, "policy_id"), policy_name=_s(d, "policy_name"),
        is_builtin=bool(d.get("is_builtin", False)), principal_type=_s(d, "principal_type"),
        principal_id=_s(d, "principal_id"), principal_name=_s(d, "principal_name"),
        attached_by_type=_s(d, "attached_by_type"), attached_by=_s(d, "attached_by"),
        attached_at=parse_timestamp(d.get("attached_at")))


def parse_group(body: Mapping[str, Any]) -> GroupData:
    """Flat, wrapped or detail form (2.12): group fields from ``group`` when present,
    ``members`` and ``attachments`` always from the top level."""
    g = body.get("group") if isinstance(body.get("group"), Mapping) else body
    assert isinstance(g, Mapping)
    return GroupData(
        id=_s(g, "id"), name=_s(g, "name"), description=_s(g, "description"),
        organization_id=_s(g, "organization_id"), created_by_type=_s(g, "created_by_type"),
        created_by=_s(g, "created_by"), created_at=parse_timestamp(g.get("created_at")),
        members=tuple(parse_group_member(m) for m in body.get("members") or []),
        attachments=tuple(parse_attachment(a) for a in body.get("attachments") or []))


def parse_effective_group(d: Mapping[str, Any]) -> EffectiveGroup:
    return EffectiveGroup(group_id=_s(d, "group_id"), group_name=_s(d, "group_name"),
                          description=_s(d, "description"), source=_s(d, "source"),
                          source_name=_s(d, "source_name"))


def parse_policy(body: Mapping[str, Any]) -> PolicyData:
    """Flat or wrapped form (2.13); ``attachments`` from the top level."""
    p = body.get("policy") if isinstance(body.get("policy"), Mapping) else body
    assert isinstance(p, Mapping)
    return PolicyData(
        id=_s(p, "id"), name=_s(p, "name"), description=_s(p, "description"),
        policy_text=_s(p, "policy_text"), is_builtin=bool(p.get("is_builtin", False)),
        organization_id=_s(p, "organization_id"), created_by_type=_s(p, "created_by_type"),
        created_by=_s(p, "created_by"), created_at=parse_timestamp(p.get("created_at")),
        updated_at=parse_timestamp(p.get("updated_at")),
        attachment_count=int(p.get("attachment_count") or 0),
        attachments=tuple(parse_attachment(a) for a in body.get("attachments") or []))


def parse_effective_policy(d: Mapping[str, Any]) -> EffectivePolicy:
    return EffectivePolicy(policy_id=_s(d, "policy_id"), policy_name=_s(d, "policy_name"),
                           is_builtin=bool(d.get("is_builtin", False)), source=_s(d, "source"),
                           source_name=_s(d, "source_name"))


def parse_validation_result(body: Any) -> ValidationResult:
    body = body or {}
    return ValidationResult(valid=bool(body.get("valid", False)), errors=[
        ValidationError(line=int(e.get("line") or 0), column=int(e.get("column") or 0),
                        message=e.get("message") or "") for e in body.get("errors") or []])


def parse_policy_text(body: Any) -> str:
    """``policies:generate`` -> its text, through str() as 0.7.2 does."""
    return str((body or {}).get("policy_text"))
