"""README "Organization Sub-resources": an organization's repositories and members.

The official 0.7.2 client has no `tilde.organization(...)` and no `member.role` (5.14); with
CLIENT=official the organization comes from `tilde.organizations.get(...)` and only the
username is printed.
"""

from _common import CLIENT, ORG_NAME, REPO_NAME, check_client, done, printed

import tilde

check_client()

with printed() as out:
    # --- README ---------------------------------------------------------------------------
    org = (tilde.organization(ORG_NAME) if CLIENT == "bundled"
           else tilde.organizations.get(ORG_NAME))  # 0.7.2 form

    for repo in org.repositories.list():
        print(repo.name)

    for member in org.members.list():
        if CLIENT == "bundled":
            print(member.username, member.role)
        else:
            print(member.username)
    # --- end of README ----------------------------------------------------------------------

# The test harness made the organization (with the admin key) and one repository in it.
assert out == [REPO_NAME, "admin owner" if CLIENT == "bundled" else "admin"], out
if CLIENT == "bundled":
    assert [g.name for g in org.groups.list()] == []
    builtin = sorted(p.name for p in org.policies.list() if p.is_builtin)
    assert builtin == ["builtin-org-admin", "builtin-org-member", "builtin-org-owner",
                       "builtin-org-reader"], builtin
    assert [r.name for r in org.roles.list()] == []

done("org_subresources")
