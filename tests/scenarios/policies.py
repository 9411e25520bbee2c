"""README "Policies": validate and create a Rego policy, attach and detach it, and list a
user's effective policies.

The official 0.7.2 client has no `Organizations.policies(org)`, `create(..., rego=)` nor the
collection-level `attach` / `detach` / `effective_policies` (5.14); with CLIENT=official the
same steps use `orgs.get(org).policies`, `create(name, policy_text)`, `Policy.attach/detach`
and `effective(user_id=)`. Placeholders: `rego="..."` is a real allow-all policy, "group-uuid"
a fresh group, "user-uuid" a fresh user (a member of the organization and of that group).
"""

from _common import API_KEY, CLIENT, ORG_NAME, USER_ID, USERNAME, check_client, done, printed

import tilde
from tilde.exceptions import BadRequestError

check_client()
client = tilde.Client(api_key=API_KEY)
setup = client.organizations.get(ORG_NAME)
setup.members.create(USERNAME)
group = setup.groups.create("policy-group")
group.members.create(subject_type="user", subject_id=USER_ID)
GROUP_ID = group.id
ALLOW_ALL = "package tilde.authz\ndefault allow = true\n"

# --- README -------------------------------------------------------------------------------------
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
# --- end of README ------------------------------------------------------------------------------

assert result.valid is True and result.errors == [], result
assert (policy.name, policy.description, policy.is_builtin) == (
    "allow-all", "Allow everything", False)
assert policy.policy_text == ALLOW_ALL
assert policies.get(policy.id).attachment_count == 1
attached = [(a.policy_name, a.principal_type, a.principal_id) for a in policies.attachments()]
assert ("allow-all", "group", GROUP_ID) in attached, attached

with printed() as out:
    # --- README: Effective policies for a user --------------------------------------------
    if CLIENT == "bundled":
        for ep in policies.effective_policies(USER_ID):
            print(ep.policy_name, ep.source)
    else:
        for ep in policies.effective(user_id=USER_ID):
            print(ep.policy_name, ep.source)
    # --- end of README ----------------------------------------------------------------------
assert sorted(out) == ["allow-all group", "builtin-org-member role"], out

# --- README -------------------------------------------------------------------------------------
if CLIENT == "bundled":
    policies.detach(policy.id, "group", GROUP_ID)
else:
    policies.get(policy.id).detach(principal_type="group", principal_id=GROUP_ID)
# --- end of README ------------------------------------------------------------------------------
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
