"""Built-in policies of the organization roles, written in Rego like any other policy.

Every organization gets one read-only copy of each (`is_builtin: true`); a member's role
attaches its policy implicitly (EffectivePolicy source `role`). They grant by the action's
level suffix (actions.py), so actions added later are covered without editing them:

    owner   everything
    admin   everything except `*:owner` actions (deleting the organization)
    member  `*:read` and `*:write` actions
    reader  `*:read` actions
"""

from __future__ import annotations

ROLES = ("owner", "admin", "member", "reader")

BUILTIN_POLICIES: dict[str, tuple[str, str]] = {
    "owner": ("builtin-org-owner", """package tilde.authz

# Organization owners may do everything in their organization.
default allow := false
allow := true
"""),
    "admin": ("builtin-org-admin", """package tilde.authz

# Organization admins may do everything except owner-level actions (deleting the organization).
default allow := false
allow := true if not endswith(input.action, ":owner")
"""),
    "member": ("builtin-org-member", """package tilde.authz

# Members read and write data: every *:read and *:write action.
default allow := false
allow := true if endswith(input.action, ":read")
allow := true if endswith(input.action, ":write")
"""),
    "reader": ("builtin-org-reader", """package tilde.authz

# Readers may only read: every *:read action.
default allow := false
allow := true if endswith(input.action, ":read")
"""),
}

DESCRIPTIONS = {
    "owner": "Built-in policy of the organization role 'owner': every action.",
    "admin": "Built-in policy of the organization role 'admin': every action but deleting "
             "the organization.",
    "member": "Built-in policy of the organization role 'member': read and write data.",
    "reader": "Built-in policy of the organization role 'reader': read only.",
}
