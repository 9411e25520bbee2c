"""README "Agents" and "Agent API Keys": create, list, get, update, delete an agent; create,
list, get and revoke its keys (and check that a revoked key is refused at once).

The official 0.7.2 client has no `tilde.organization(...)` and no collection-level
`Agents.update` (spec 5.14); with CLIENT=official those two lines use
`tilde.organizations.get(...)` and `Agent.update`.
"""

from _common import CLIENT, ENDPOINT, ORG_NAME, REPO, check_client, done, printed

import tilde
from tilde.exceptions import AuthenticationError, ForbiddenError, NotFoundError

check_client()

with printed() as out:
    # --- README: Agents -------------------------------------------------------------------
    org = (tilde.organization(ORG_NAME) if CLIENT == "bundled"
           else tilde.organizations.get(ORG_NAME))  # 0.7.2 form

    # Create an agent
    agent = org.agents.create("my-agent", description="CI bot", metadata={"env": "prod"})
    print(agent.name, agent.id)

    # List agents
    for agent in org.agents.list():
        print(agent.name)

    # Get a specific agent
    agent = org.agents.get("my-agent")

    # Update an agent
    if CLIENT == "bundled":
        agent = org.agents.update("my-agent", description="Updated description")
    else:
        agent = org.agents.get("my-agent").update(description="Updated description")
    # --- end of README ----------------------------------------------------------------------

assert out[1:] == ["my-agent"], out
name, agent_id = out[0].split()
assert name == "my-agent" and agent_id == agent.id
assert agent.description == "Updated description"
assert agent.metadata == {"env": "prod"}, agent.metadata
assert agent.inline_policy == "" and agent.created_by_type == "user"
assert org.agents.get("my-agent").description == "Updated description"

# --- README: Delete an agent ------------------------------------------------------------------
org.agents.delete("my-agent")
# --- end of README ------------------------------------------------------------------------------
try:
    org.agents.get("my-agent")
except NotFoundError:
    pass
else:
    raise AssertionError("a deleted agent can still be fetched")

# The keys section works on an agent named "my-agent" again.
org.agents.create("my-agent", description="CI bot")

with printed() as out:
    # --- README: Agent API Keys -----------------------------------------------------------
    agent = org.agents.get("my-agent")

    # Create a key (token is only shown once)
    created = agent.api_keys.create("dev-key")
    print(created.token)  # cak-... full token

    # List keys
    for key in agent.api_keys.list():
        print(key.name, key.token_hint)
    # --- end of README ----------------------------------------------------------------------

token = created.token
assert token.startswith("cak-") and out[0] == token, out
assert out[1:] == [f"dev-key cak-…{token[-4:]}"], out
assert all(k.token == "" for k in agent.api_keys.list()), "a listed key shows its token"

# The key authenticates as the agent, which has no permission yet: 403, not 401.
with tilde.Client(api_key=token, endpoint_url=ENDPOINT) as as_agent:
    try:
        as_agent.repository(REPO).refresh()
    except ForbiddenError:
        pass
    else:
        raise AssertionError("an agent without a policy could read the repository")
    org.agents.get("my-agent").update(
        inline_policy="package tilde.authz\nallow if input.action == \"repo:read\"\n")
    assert as_agent.repository(REPO).refresh().name == REPO.split("/", 1)[1]

    key_id = created.id
    # --- README: Get by ID and revoke a key -----------------------------------------------
    key = agent.api_keys.get(key_id)
    key.revoke()
    # --- end of README ----------------------------------------------------------------------

    # Revocation takes effect on the very next request.
    try:
        as_agent.repository(REPO).refresh()
    except AuthenticationError as e:
        assert e.status_code == 401
    else:
        raise AssertionError("a revoked key still works")
assert agent.api_keys.get(key_id).revoked_at is not None

done("agents")
