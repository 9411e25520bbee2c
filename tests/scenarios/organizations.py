"""README "Organizations": create, list, members (with the README's member names).

No official release has `Organizations.members(org)`, `Members.add(user_id=, role=)` nor
`member.role` (spec 5.14); with CLIENT=official up to 0.7.6 the same steps run through
`orgs.get(name).members` and `create(username)`. Placeholders: "key" is the test key,
"my-org" a fresh organization name, "user-uuid" the id of a fresh user.

From 0.7.7 (NEW_README) the README uses the module-level `tilde.organizations` (create with
`display_name=`, list, get, delete) and then the members of an organization, printing
`m.username, m.email` (this server keeps no e-mail addresses: always ""), adding one by
username ("alice") and removing one by user id.
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
MY_ORG = f"{ORG_NAME}-readme"

if NEW_README:
    with printed() as out:
        # --- README (0.7.7+) --------------------------------------------------------------
        import tilde

        # Create, list, get, delete at the module level
        org = tilde.organizations.create(MY_ORG, display_name="My Org")
        for o in tilde.organizations.list():
            print(o.name, o.display_name)
        org = tilde.organizations.get(MY_ORG)
        tilde.organizations.delete(MY_ORG)
        # --- end of README ----------------------------------------------------------------
    assert f"{MY_ORG} My Org" in out, out
    assert (org.name, org.display_name) == (MY_ORG, "My Org"), org
    assert MY_ORG not in [o.name for o in tilde.organizations.list()]

    # "Members", on the organization the harness made (the README's `org`).
    org = tilde.organizations.get(ORG_NAME)
    with printed() as out:
        # --- README (0.7.7+): Members -----------------------------------------------------
        for m in org.members.list():
            print(m.username, m.email)

        org.members.create(USERNAME)          # add by username
        # --- end of README ----------------------------------------------------------------
    assert out == ["admin "], out
    members = {m.user_id: m for m in org.members.list()}
    assert USER_ID in members and members[USER_ID].username == USERNAME, members
    assert members[USER_ID].organization_id == org.id
    # --- README (0.7.7+) ------------------------------------------------------------------
    org.members.delete(USER_ID)      # remove by user_id
    # --- end of README --------------------------------------------------------------------
    assert [m.username for m in org.members.list()] == ["admin"]
else:
    with printed() as out:
        # --- README -------------------------------------------------------------------
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
