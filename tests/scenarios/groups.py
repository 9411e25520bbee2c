"""README "Groups": create, get the detail, add and remove a member.

The official 0.7.2 client has no `Organizations.groups(org)` nor `add_member` /
`remove_member` (5.14); with CLIENT=official the group comes from `orgs.get(org).groups` and
members change through `group.members.create/delete`. "user-uuid" is a fresh user, made a
member of the organization first (groups hold the organization's principals).
"""

from _common import API_KEY, CLIENT, ORG_NAME, USER_ID, USERNAME, check_client, done, printed

import tilde

check_client()
client = tilde.Client(api_key=API_KEY)
client.organizations.get(ORG_NAME).members.create(USERNAME)

with printed():
    # --- README ---------------------------------------------------------------------------
    if CLIENT == "bundled":
        groups = client.organizations.groups(ORG_NAME)
    else:
        groups = client.organizations.get(ORG_NAME).groups

    group = groups.create("engineers", description="Engineering team")
    detail = groups.get(group.id)  # includes members and attachments
    # --- end of README ----------------------------------------------------------------------

assert (group.name, group.description) == ("engineers", "Engineering team")
assert detail.id == group.id and list(detail.members.list()) == [] and detail.attachments == []

# --- README -----------------------------------------------------------------------------------
if CLIENT == "bundled":
    groups.add_member(group.id, "user", USER_ID)
else:
    groups.get(group.id).members.create(subject_type="user", subject_id=USER_ID)
# --- end of README ------------------------------------------------------------------------------
members = list(groups.get(group.id).members.list())
assert [(m.subject_type, m.subject_id, m.username) for m in members] == [
    ("user", USER_ID, USERNAME)], members
effective = groups.effective("user", USER_ID)
assert [(g.group_id, g.group_name) for g in effective] == [(group.id, "engineers")], effective

# --- README -----------------------------------------------------------------------------------
if CLIENT == "bundled":
    groups.remove_member(group.id, "user", USER_ID)
else:
    groups.get(group.id).members.delete(subject_type="user", subject_id=USER_ID)
# --- end of README ------------------------------------------------------------------------------
assert list(groups.get(group.id).members.list()) == []
renamed = groups.get(group.id).update(name="platform")
assert renamed.name == "platform" and [g.name for g in groups.list()] == ["platform"]
groups.delete(group.id)
assert list(groups.list()) == []

done("groups")
