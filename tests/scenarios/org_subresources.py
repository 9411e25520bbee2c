# ruff: noqa: B018  (the 0.7.7 README lists the sub-resources as bare expressions)
"""README "Organization Sub-resources": an organization's repositories and members.

No official release has `tilde.organization(...)` nor `member.role` (5.14); with
CLIENT=official up to 0.7.6 the organization comes from `tilde.organizations.get(...)` and
only the username is printed. From 0.7.7 (NEW_README) the README names every org-scoped
sub-resource an `Organization` exposes; each is listed here.
"""

from _common import CLIENT, NEW_README, ORG_NAME, REPO_NAME, check_client, done, printed

import tilde

check_client()

BUILTIN = ["builtin-org-admin", "builtin-org-member", "builtin-org-owner", "builtin-org-reader"]

if NEW_README:
    # --- README (0.7.7+) --------------------------------------------------------------------
    org = tilde.organizations.get(ORG_NAME)
    org.repositories
    org.members
    org.agents
    org.roles
    org.groups
    org.policies
    org.connectors
    # --- end of README ----------------------------------------------------------------------
    # The test harness made the organization (with the admin key) and one repository in it.
    assert [r.name for r in org.repositories.list()] == [REPO_NAME]
    assert [m.username for m in org.members.list()] == ["admin"]
    assert [a.name for a in org.agents.list()] == [] and [r.name for r in org.roles.list()] == []
    assert [g.name for g in org.groups.list()] == []
    assert sorted(p.name for p in org.policies.list() if p.is_builtin) == BUILTIN
    assert [c.name for c in org.connectors.list()] == []
else:
    with printed() as out:
        # --- README -----------------------------------------------------------------------
        org = (tilde.organization(ORG_NAME) if CLIENT == "bundled"
               else tilde.organizations.get(ORG_NAME))  # 0.7.2 form

        for repo in org.repositories.list():
            print(repo.name)

        for member in org.members.list():
            if CLIENT == "bundled":
                print(member.username, member.role)
            else:
                print(member.username)
        # --- end of README ----------------------------------------------------------------

    # The test harness made the organization (with the admin key) and one repository in it.
    assert out == [REPO_NAME, "admin owner" if CLIENT == "bundled" else "admin"], out
    if CLIENT == "bundled":
        assert [g.name for g in org.groups.list()] == []
        builtin = sorted(p.name for p in org.policies.list() if p.is_builtin)
        assert builtin == BUILTIN, builtin
        assert [r.name for r in org.roles.list()] == []

done("org_subresources")
