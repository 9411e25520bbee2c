"""README "Organizations": create, list, members (with the README's member names).

The official 0.7.2 client has no `Organizations.members(org)`, `Members.add(user_id=, role=)`
nor `member.role` (spec 5.14); with CLIENT=official the same steps run through
`orgs.get(name).members` and `create(username)`. Placeholders: "key" is the test key,
"my-org" a fresh organization name, "user-uuid" the id of a fresh user.
"""

from _common import API_KEY, CLIENT, ORG_NAME, USER_ID, USERNAME, check_client, done, printed

import tilde

check_client()
MY_ORG = f"{ORG_NAME}-readme"

with printed() as out:
    # --- README -----------------------------------------------------------------------
    orgs = tilde.Client(api_key=API_KEY).organizations

    # Create
    org = orgs.create(MY_ORG, "My Organization")

    # List
    for org in orgs.list():
        print(org.name)
    # --- end of README ------------------------------------------------------------------
assert MY_ORG in out, out
assert orgs.get(MY_ORG).display_name == "My Organization"

with printed() as out:
    if CLIENT == "bundled":
        # --- README: members ----------------------------------------------------------
        for member in orgs.members(MY_ORG).list():
            print(member.username, member.role)

        orgs.members(MY_ORG).add(user_id=USER_ID, role="member")
        # --- end of README --------------------------------------------------------------
    else:
        for member in orgs.get(MY_ORG).members.list():
            print(member.username)

        orgs.get(MY_ORG).members.create(USERNAME)

# The creator (the test key's user, "admin") is the organization's owner.
assert out == (["admin owner"] if CLIENT == "bundled" else ["admin"]), out
members = {m.user_id: m for m in orgs.get(MY_ORG).members.list()}
assert USER_ID in members and members[USER_ID].username == USERNAME, members
assert members[USER_ID].organization_id == orgs.get(MY_ORG).id
if CLIENT == "bundled":
    assert members[USER_ID].role == "member"
    assert orgs.members(MY_ORG).get(USERNAME).user_id == USER_ID

# Members can be removed again; the organization can be deleted.
orgs.get(MY_ORG).members.delete(USER_ID)
assert USER_ID not in {m.user_id for m in orgs.get(MY_ORG).members.list()}
orgs.delete(MY_ORG)
assert MY_ORG not in [o.name for o in orgs.list()]

done("organizations")
