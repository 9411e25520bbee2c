"""Policies in Rego (spec 2.13, 3.7) plus the README's collection-level ``attach`` /
``detach`` / ``effective_policies`` and ``create(..., rego=)`` (5.14)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import Attachment, EffectivePolicy, PolicyData, ValidationResult

if TYPE_CHECKING:
    from .._client import Client

_List = list  # `list` is also a method name in the classes below


class Policy:
    def __init__(self, client: Client, org: str, data: PolicyData) -> None:
        self._client = client
        self._org = org
        self.id = data.id
        self.name = data.name
        self.description = data.description
        self.policy_text = data.policy_text
        self.is_builtin = data.is_builtin
        self.organization_id = data.organization_id
        self.created_by_type = data.created_by_type
        self.created_by = data.created_by
        self.created_at: datetime | None = data.created_at
        self.updated_at: datetime | None = data.updated_at
        self.attachment_count = data.attachment_count
        self._attachments = list(data.attachments)

    @property
    def attachments(self) -> list[Attachment]:
        return list(self._attachments)

    def update(self, *, name: str | None = None, description: str | None = None,
               policy_text: str | None = None) -> Policy:
        return Policy(self._client, self._org, _wire.parse_policy(self._client._call(
            _wire.update_policy(self._org, self.id, name=name, description=description,
                                policy_text=policy_text))))

    def delete(self) -> None:
        self._client._send(_wire.delete_policy(self._org, self.id)).close()

    def attach(self, *, principal_type: str, principal_id: str) -> None:
        self._client._send(_wire.attach_policy(self._org, self.id, principal_type,
                                               principal_id)).close()

    def detach(self, *, principal_type: str, principal_id: str) -> None:
        self._client._send(_wire.detach_policy(self._org, self.id, principal_type,
                                               principal_id)).close()

    def __repr__(self) -> str:
        return f"Policy(name={self.name!r}, id={self.id!r})"


class Policies:
    def __init__(self, client: Client, org: str) -> None:
        self._client = client
        self._org = org

    def _handle(self, d: dict[str, Any]) -> Policy:
        return Policy(self._client, self._org, _wire.parse_policy(d))

    def list(self, *, after: str | None = None) -> Iterator[Policy]:
        return self._client._paginate(
            lambda cursor: _wire.list_policies(self._org, after=cursor), self._handle, after)

    def get(self, policy_id: str) -> Policy:
        return self._handle(self._client._call(_wire.get_policy(self._org, policy_id)))

    def create(self, name: str, policy_text: str | None = None, *, description: str = "",
               rego: str | None = None) -> Policy:
        """``rego=`` is the README's name for ``policy_text`` (5.14)."""
        text = policy_text if policy_text is not None else rego
        if text is None:
            raise TypeError("create() needs policy_text (or rego=)")
        return self._handle(self._client._call(
            _wire.create_policy(self._org, name, text, description=description)))

    def delete(self, policy_id: str) -> None:
        self._client._send(_wire.delete_policy(self._org, policy_id)).close()

    def validate(self, policy_text: str) -> ValidationResult:
        return _wire.parse_validation_result(
            self._client._call(_wire.validate_policy(self._org, policy_text)))

    def generate(self, prompt: str) -> str:
        return _wire.parse_policy_text(self._client._call(_wire.generate_policy(self._org,
                                                                                prompt)))

    def attachments(self) -> _List[Attachment]:
        body = self._client._call(_wire.list_attachments(self._org))
        return _wire.parse_results(body, _wire.parse_attachment)

    def effective(self, *, principal_type: str | None = None, principal_id: str | None = None,
                  user_id: str | None = None) -> _List[EffectivePolicy]:
        body = self._client._call(_wire.effective_policies(
            self._org, principal_type=principal_type, principal_id=principal_id,
            user_id=user_id))
        return _wire.parse_results(body, _wire.parse_effective_policy)

    # README names (5.14)
    def attach(self, policy_id: str, principal_type: str, principal_id: str) -> None:
        self._client._send(_wire.attach_policy(self._org, policy_id, principal_type,
                                               principal_id)).close()

    def detach(self, policy_id: str, principal_type: str, principal_id: str) -> None:
        self._client._send(_wire.detach_policy(self._org, policy_id, principal_type,
                                               principal_id)).close()

    def effective_policies(self, user_id: str) -> _List[EffectivePolicy]:
        return self.effective(user_id=user_id)
