"""README "Agents" and "Agent API Keys": create, list, get, update, delete an agent; create,
list, get and revoke its keys (and check that a revoked key is refused at once).

No official release has `tilde.organization(...)` nor a collection-level `Agents.update`
(spec 5.14); with CLIENT=official up to 0.7.6 those two lines use `tilde.organizations.get(...)`
and `Agent.update`.

From 0.7.7 (NEW_README) the section is "Roles and Agents" plus "API keys" and the "Secrets"
section: a role, an agent updated twice (metadata, then an inline policy), a key of each, and
repository and agent secrets. The README's inline policy is in the hosted service's policy
language; this server's is Rego (docs/authorization.md), so the placeholder is the same
permission ("list repositories, read objects") written in Rego. Keys are `cak-...` here for
agents and roles alike (the README says `tak-` and `trk-`).
"""

from _common import (
    CLIENT,
    ENDPOINT,
    NEW_README,
    ORG_NAME,
    REPO,
    check_client,
    done,
    printed,
)

import tilde
from tilde.exceptions import AuthenticationError, ForbiddenError, NotFoundError

check_client()

if NEW_README:
    READ_ONLY = ('package tilde.authz\nimport rego.v1\n\n'
                 'allow if input.action in {"org:read", "repo:read", "object:read"}\n')
    org = tilde.organizations.get(ORG_NAME)
    with printed() as out:
        # --- README (0.7.7+): Roles and Agents --------------------------------------------
        # Roles
        role = org.roles.create("ci-deployer", description="CI/CD pipeline")
        for role in org.roles.list():
            print(role.name)

        # Agents
        agent = org.agents.create(
            "data-pipeline",
            description="Nightly pipeline",
            metadata={"env": "prod"},
        )
        agent.update(metadata={"env": "staging"})
        agent.update(inline_policy=READ_ONLY)
        # --- end of README ----------------------------------------------------------------
    assert out == ["ci-deployer"], out
    assert org.roles.get("ci-deployer").description == "CI/CD pipeline"
    stored = org.agents.get("data-pipeline")
    assert (stored.description, stored.metadata) == ("Nightly pipeline", {"env": "staging"})
    assert stored.inline_policy == READ_ONLY and stored.id == agent.id

    with printed() as out:
        # --- README (0.7.7+): API keys ----------------------------------------------------
        agent = org.agents.get("data-pipeline")

        # Create a key (the full token is only shown once)
        created = agent.api_keys.create("pipeline-key")
        print(created.token)              # tak-...

        for key in agent.api_keys.list():
            print(key.name, key.token_hint)
        # --- end of README ----------------------------------------------------------------
    token = created.token
    assert token.startswith("cak-") and out == [token, f"pipeline-key cak-…{token[-4:]}"], out
    # The inline policy lets the agent read the repository, and nothing else.
    with tilde.Client(api_key=token, endpoint_url=ENDPOINT) as as_agent:
        assert as_agent.repository(REPO).refresh().name == REPO.split("/", 1)[1]
        try:
            as_agent.organizations.get(ORG_NAME).agents.create("not-allowed")
        except ForbiddenError:
            pass
        else:
            raise AssertionError("a read-only agent created an agent")
        key_id = created.id
        # --- README (0.7.7+) --------------------------------------------------------------
        key = agent.api_keys.get(key_id)
        key.revoke()
        # --- end of README ----------------------------------------------------------------
        try:
            as_agent.repository(REPO).refresh()
        except AuthenticationError as e:
            assert e.status_code == 401
        else:
            raise AssertionError("a revoked key still works")
    # "The same api_keys collection exists on Role instances."
    role_key = org.roles.get("ci-deployer").api_keys.create("deploy-key")
    assert role_key.token.startswith("cak-") and role_key.name == "deploy-key"
    assert [k.name for k in org.roles.get("ci-deployer").api_keys.list()] == ["deploy-key"]

    repo = tilde.repository(REPO)
    with printed() as out:
        # --- README (0.7.7+): Secrets -----------------------------------------------------
        # Repository-scoped
        repo.secrets.create("API_KEY", "sk-abc123...")
        secret = repo.secrets.get("API_KEY")
        print(secret.value)
        repo.secrets.delete("API_KEY")

        # Agent-scoped (override repo secrets with the same key)
        agent = org.agents.get("data-pipeline")
        agent.secrets.create("OPENAI_KEY", "sk-abc123...")
        # --- end of README ----------------------------------------------------------------
    assert out == ["sk-abc123..."], out
    assert [x.name for x in repo.secrets.list()] == []
    assert [x.name for x in agent.secrets.list()] == ["OPENAI_KEY"]
    assert agent.secrets.get("OPENAI_KEY").value == "sk-abc123..."
else:
    with printed() as out:
        # --- README: Agents ---------------------------------------------------------------
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
        # --- end of README ----------------------------------------------------------------

    assert out[1:] == ["my-agent"], out
    name, agent_id = out[0].split()
    assert name == "my-agent" and agent_id == agent.id
    assert agent.description == "Updated description"
    assert agent.metadata == {"env": "prod"}, agent.metadata
    assert agent.inline_policy == "" and agent.created_by_type == "user"
    assert org.agents.get("my-agent").description == "Updated description"

    # --- README: Delete an agent ----------------------------------------------------------
    org.agents.delete("my-agent")
    # --- end of README --------------------------------------------------------------------
    try:
        org.agents.get("my-agent")
    except NotFoundError:
        pass
    else:
        raise AssertionError("a deleted agent can still be fetched")

    # The keys section works on an agent named "my-agent" again.
    org.agents.create("my-agent", description="CI bot")

    with printed() as out:
        # --- README: Agent API Keys -------------------------------------------------------
        agent = org.agents.get("my-agent")

        # Create a key (token is only shown once)
        created = agent.api_keys.create("dev-key")
        print(created.token)  # cak-... full token

        # List keys
        for key in agent.api_keys.list():
            print(key.name, key.token_hint)
        # --- end of README ----------------------------------------------------------------

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
        # --- README: Get by ID and revoke a key -------------------------------------------
        key = agent.api_keys.get(key_id)
        key.revoke()
        # --- end of README ----------------------------------------------------------------

        # Revocation takes effect on the very next request.
        try:
            as_agent.repository(REPO).refresh()
        except AuthenticationError as e:
            assert e.status_code == 401
        else:
            raise AssertionError("a revoked key still works")
    assert agent.api_keys.get(key_id).revoked_at is not None

done("agents")
