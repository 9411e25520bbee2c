"""README "Groups": create, get the detail, add and remove a member.

No official release has `Organizations.groups(org)` nor `add_member` / `remove_member`
(5.14); with CLIENT=official up to 0.7.6 the group comes from `orgs.get(org).groups` and
members change through `group.members.create/delete`. "user-uuid" is a fresh user, made a
member of the organization first (groups hold the organization's principals).

From 0.7.7 (NEW_README) those are the README's own names, and it also renames and deletes the
group and lists a principal's effective groups (after the delete: none).
"""

from _common import (
    API_KEY,
    CLIENT,
    NEW_README,
    ORG_NAME,
    USER_ID,
    USERNAME,
    check_client,
    done,
    printed,
)

import tilde

check_client()
client = tilde.Client(api_key=API_KEY)
client.organizations.get(ORG_NAME).members.create(USERNAME)

if NEW_README:
    org = client.organizations.get(ORG_NAME)
    # --- README (0.7.7+) ------------------------------------------------------------------
    groups = org.groups

    group = groups.create("engineers", description="Engineering team")
    group = groups.get(group.id)                                # includes members + attachments
    group.members.create(subject_type="user", subject_id=USER_ID)
    # --- end of README --------------------------------------------------------------------
    assert (group.name, group.description) == ("engineers", "Engineering team")
    assert list(group.members.list()) != [] and group.attachments == []
    members = list(groups.get(group.id).members.list())
    assert [(m.subject_type, m.subject_id, m.username) for m in members] == [
        ("user", USER_ID, USERNAME)], members
    effective = groups.effective(principal_type="user", principal_id=USER_ID)
    assert [(g.group_id, g.group_name, g.source) for g in effective] == [
        (group.id, "engineers", "direct")], effective
    # --- README (0.7.7+) ------------------------------------------------------------------
    group.members.delete(subject_type="user", subject_id=USER_ID)
    group.update(name="engineering", description="Updated")
    # --- end of README --------------------------------------------------------------------
    assert list(groups.get(group.id).members.list()) == []
    renamed = groups.get(group.id)
    assert (renamed.name, renamed.description) == ("engineering", "Updated"), renamed
    # --- README (0.7.7+) ------------------------------------------------------------------
    group.delete()
    # --- end of README --------------------------------------------------------------------
    assert list(groups.list()) == []
    with printed() as out:
        # --- README (0.7.7+) --------------------------------------------------------------
        # Effective groups for a principal
        for g in groups.effective(principal_type="user", principal_id=USER_ID):
            print(g.group_name, g.source)
        # --- end of README ----------------------------------------------------------------
    assert out == [], out
else:
    with printed():
        # --- README -----------------------------------------------------------------------
        if CLIENT == "bundled":
            groups = client.organizations.groups(ORG_NAME)
        else:
            groups = client.organizations.get(ORG_NAME).groups

        group = groups.create("engineers", description="Engineering team")
        detail = groups.get(group.id)  # includes members and attachments
        # --- end of README ----------------------------------------------------------------

    assert (group.name, group.description) == ("engineers", "Engineering team")
    assert detail.id == group.id and list(detail.members.list()) == [] and detail.attachments == []

    # --- README ---------------------------------------------------------------------------
    if CLIENT == "bundled":
        groups.add_member(group.id, "user", USER_ID)
    else:
        groups.get(group.id).members.create(subject_type="user", subject_id=USER_ID)
    # --- end of README --------------------------------------------------------------------
    members = list(groups.get(group.id).members.list())
    assert [(m.subject_type, m.subject_id, m.username) for m in members] == [
        ("user", USER_ID, USERNAME)], members
    effective = groups.effective("user", USER_ID)
    assert [(g.group_id, g.group_name) for g in effective] == [(group.id, "engineers")], effective

    # --- README ---------------------------------------------------------------------------
    if CLIENT == "bundled":
        groups.remove_member(group.id, "user", USER_ID)
    else:
        groups.get(group.id).members.delete(subject_type="user", subject_id=USER_ID)
    # --- end of README --------------------------------------------------------------------
    assert list(groups.get(group.id).members.list()) == []
    renamed = groups.get(group.id).update(name="platform")
    assert renamed.name == "platform" and [g.name for g in groups.list()] == ["platform"]
    groups.delete(group.id)
    assert list(groups.list()) == []

done("groups")
