"""README "Policies": validate and create a Rego policy, attach and detach it, and list a
user's effective policies.

No official release has `Organizations.policies(org)`, `create(..., rego=)` nor the
collection-level `attach` / `detach` / `effective_policies` (5.14); with CLIENT=official up to
0.7.6 the same steps use `orgs.get(org).policies`, `create(name, policy_text)`,
`Policy.attach/detach` and `effective(user_id=)`. Placeholders: `rego="..."` is a real
allow-all policy, "group-uuid" a fresh group, "user-uuid" a fresh user (a member of the
organization and of that group).

From 0.7.7 (NEW_README) those are the README's names (`org.policies`, `create(name=,
policy_text=)`, `policy.attach(...)`, `effective(principal_type=, principal_id=)`), with
`generate`. Its policy texts are in the hosted service's language; this server's is Rego
(docs/authorization.md): validating the README's "GetObject()" honestly says invalid, the
policy created is the same permission written in Rego, and `generate` is 501 here (no
language model), which the client raises as ServerError.
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
from tilde.exceptions import BadRequestError, ServerError

check_client()
client = tilde.Client(api_key=API_KEY)
setup = client.organizations.get(ORG_NAME)
setup.members.create(USERNAME)
group = setup.groups.create("policy-group")
group.members.create(subject_type="user", subject_id=USER_ID)
GROUP_ID = group.id
ALLOW_ALL = "package tilde.authz\ndefault allow = true\n"

if NEW_README:
    READ_ONLY = ('package tilde.authz\nimport rego.v1\n\n'
                 'allow if input.action in {"org:read", "repo:read", "object:read"}\n')
    org = client.organizations.get(ORG_NAME)
    with printed() as out:
        # --- README (0.7.7+) --------------------------------------------------------------
        policies = org.policies

        # Validate before creating
        result = policies.validate("GetObject()")
        print(result.valid, result.errors)

        policy = policies.create(
            name="read-only",
            policy_text=READ_ONLY,
            description="Read-only access",
        )
        # --- end of README ----------------------------------------------------------------
    assert result.valid is False and len(result.errors) == 1, result
    assert out == [f"False {result.errors}"], out
    assert policies.validate(READ_ONLY).valid
    assert (policy.name, policy.description, policy.policy_text) == (
        "read-only", "Read-only access", READ_ONLY)
    try:
        # --- README (0.7.7+) --------------------------------------------------------------
        # Generate from natural language
        text = policies.generate("Allow read-only access to all repositories")
        # --- end of README ----------------------------------------------------------------
    except ServerError as e:
        assert e.status_code == 501, e
    else:
        raise AssertionError(f"this server has no policy generator, yet it answered {text!r}")

    # --- README (0.7.7+) ------------------------------------------------------------------
    # Attach / detach
    policy.attach(principal_type="group", principal_id=GROUP_ID)
    # --- end of README --------------------------------------------------------------------
    assert policies.get(policy.id).attachment_count == 1
    attached = [(ep.policy_name, ep.source, ep.source_name)
                for ep in policies.effective(principal_type="user", principal_id=USER_ID)]
    assert sorted(attached) == [("builtin-org-member", "role", "member"),
                                ("read-only", "group", "policy-group")], attached
    # --- README (0.7.7+) ------------------------------------------------------------------
    policy.detach(principal_type="group", principal_id=GROUP_ID)
    # --- end of README --------------------------------------------------------------------
    with printed() as out:
        # --- README (0.7.7+) --------------------------------------------------------------
        # Effective policies for a principal
        for ep in policies.effective(principal_type="user", principal_id=USER_ID):
            print(ep.policy_name, ep.source)
        # --- end of README ----------------------------------------------------------------
    assert out == ["builtin-org-member role"], out
    assert policies.get(policy.id).attachment_count == 0
else:
    # --- README ---------------------------------------------------------------------------
    if CLIENT == "bundled":
        policies = client.organizations.policies(ORG_NAME)
    else:
        policies = client.organizations.get(ORG_NAME).policies

    # Create and validate
    result = policies.validate("package tilde.authz\ndefault allow = true")
    if CLIENT == "bundled":
        policy = policies.create("allow-all", rego=ALLOW_ALL, description="Allow everything")
    else:
        policy = policies.create("allow-all", ALLOW_ALL, description="Allow everything")

    # Attach/detach
    if CLIENT == "bundled":
        policies.attach(policy.id, "group", GROUP_ID)
    else:
        policies.get(policy.id).attach(principal_type="group", principal_id=GROUP_ID)
    # --- end of README --------------------------------------------------------------------

    assert result.valid is True and result.errors == [], result
    assert (policy.name, policy.description, policy.is_builtin) == (
        "allow-all", "Allow everything", False)
    assert policy.policy_text == ALLOW_ALL
    assert policies.get(policy.id).attachment_count == 1
    attached = [(a.policy_name, a.principal_type, a.principal_id) for a in policies.attachments()]
    assert ("allow-all", "group", GROUP_ID) in attached, attached

    with printed() as out:
        # --- README: Effective policies for a user ----------------------------------------
        if CLIENT == "bundled":
            for ep in policies.effective_policies(USER_ID):
                print(ep.policy_name, ep.source)
        else:
            for ep in policies.effective(user_id=USER_ID):
                print(ep.policy_name, ep.source)
        # --- end of README ----------------------------------------------------------------
    assert sorted(out) == ["allow-all group", "builtin-org-member role"], out

    # --- README ---------------------------------------------------------------------------
    if CLIENT == "bundled":
        policies.detach(policy.id, "group", GROUP_ID)
    else:
        policies.get(policy.id).detach(principal_type="group", principal_id=GROUP_ID)
    # --- end of README --------------------------------------------------------------------
    names = [ep.policy_name for ep in policies.effective(user_id=USER_ID)]
    assert names == ["builtin-org-member"], names

    # An invalid policy: the engine's line and column, and nothing is created.
    bad = policies.validate("package tilde.authz\nallow if {\n  input.a ==\n}\n")
    assert not bad.valid and [(e.line, e.column) for e in bad.errors] == [(3, 11)], bad
    before = sorted(p.id for p in policies.list())
    try:
        policies.create("broken", "package tilde.authz\nallow if {")
    except BadRequestError as e:
        assert e.status_code == 400 and "invalid policy" in e.message, e
    else:
        raise AssertionError("an invalid policy was accepted")
    assert sorted(p.id for p in policies.list()) == before

done("policies")
