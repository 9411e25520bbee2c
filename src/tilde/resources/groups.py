"""Groups (spec 2.12, 3.7) plus the README's ``add_member`` / ``remove_member`` (5.14)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _wire
from .._values import Attachment, EffectiveGroup, GroupData, GroupMember

if TYPE_CHECKING:
    from .._client import Client

_List = list  # `list` is also a method name in the classes below


class GroupMembers:
    """Members of one group; listing re-reads the group detail (there is no member list)."""

    def __init__(self, client: Client, org: str, group_id: str) -> None:
        self._client = client
        self._org = org
        self._group_id = group_id

    def list(self) -> Iterator[GroupMember]:
        def gen() -> Iterator[GroupMember]:
            body = self._client._call(_wire.get_group(self._org, self._group_id))
            yield from _wire.parse_group(body).members

        return gen()

    def create(self, *, subject_type: str, subject_id: str) -> GroupMember:
        self._client._send(_wire.add_group_member(self._org, self._group_id, subject_type,
                                                  subject_id)).close()
        for m in self.list():
            if (m.subject_type, m.subject_id) == (subject_type, subject_id):
                return m
        return GroupMember(subject_type=subject_type, subject_id=subject_id)

    def delete(self, *, subject_type: str, subject_id: str) -> None:
        self._client._send(_wire.remove_group_member(self._org, self._group_id, subject_type,
                                                     subject_id)).close()


class Group:
    """A group (with the members and attachments of the answer it came from)."""

    def __init__(self, client: Client, org: str, data: GroupData) -> None:
        self._client = client
        self._org = org
        self.id = data.id
        self.name = data.name
        self.description = data.description
        self.organization_id = data.organization_id
        self.created_by_type = data.created_by_type
        self.created_by = data.created_by
        self.created_at: datetime | None = data.created_at
        self._members = list(data.members)
        self._attachments = list(data.attachments)

    @property
    def members(self) -> GroupMembers:
        return GroupMembers(self._client, self._org, self.id)

    @property
    def attachments(self) -> list[Attachment]:
        return list(self._attachments)

    def update(self, *, name: str | None = None, description: str | None = None) -> Group:
        return Group(self._client, self._org, _wire.parse_group(self._client._call(
            _wire.update_group(self._org, self.id, name=name, description=description))))

    def delete(self) -> None:
        self._client._send(_wire.delete_group(self._org, self.id)).close()

    def __repr__(self) -> str:
        return f"Group(name={self.name!r}, id={self.id!r})"


class Groups:
    def __init__(self, client: Client, org: str) -> None:
        self._client = client
        self._org = org

    def _handle(self, d: dict[str, Any]) -> Group:
        return Group(self._client, self._org, _wire.parse_group(d))

    def list(self, *, after: str | None = None) -> Iterator[Group]:
        return self._client._paginate(
            lambda cursor: _wire.list_groups(self._org, after=cursor), self._handle, after)

    def get(self, group_id: str) -> Group:
        """The group with its members and attachments (the detail form)."""
        return self._handle(self._client._call(_wire.get_group(self._org, group_id)))

    def create(self, name: str, *, description: str = "") -> Group:
        return self._handle(self._client._call(
            _wire.create_group(self._org, name, description=description)))

    def delete(self, group_id: str) -> None:
        self._client._send(_wire.delete_group(self._org, group_id)).close()

    def effective(self, principal_type: str, principal_id: str) -> _List[EffectiveGroup]:
        body = self._client._call(_wire.effective_groups(self._org, principal_type,
                                                         principal_id))
        return _wire.parse_results(body, _wire.parse_effective_group)

    # README names (5.14)
    def add_member(self, group_id: str, subject_type: str, subject_id: str) -> None:
        self._client._send(_wire.add_group_member(self._org, group_id, subject_type,
                                                  subject_id)).close()

    def remove_member(self, group_id: str, subject_type: str, subject_id: str) -> None:
        self._client._send(_wire.remove_group_member(self._org, group_id, subject_type,
                                                     subject_id)).close()
