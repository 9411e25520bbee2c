"""The sans-I/O core of the Tilde wire protocol (spec sections 1 and 2).

Shared by the synchronous client (``tilde._client``) and the async FUSE daemon, so nothing
here performs or assumes I/O: builders return a :class:`WireRequest`, parsers take JSON that
was already decoded, or plain header mappings.

Subtleties worth knowing before editing:

1. Path parameters (org, repo, ids) go into ``WireRequest.path`` as given; the HTTP library
   escapes what a path cannot hold (1.1). Object keys never go into paths: they travel as
   the ``path`` / ``source_path`` / ``destination_path`` query parameters.
2. ``None`` means "not sent" everywhere; ``amount`` is always sent on paginated endpoints.
3. ``WireRequest.json is None`` means no body at all (bodiless POSTs go out with
   ``Content-Length: 0``). Revert is the one place that sends ``{}``.
4. URLs the client PUTs to (stage ``upload_url``, multipart part ``Location``) are joined to
   the base URL by appending when relative (:func:`resolve_upload_url`); object GET
   redirects follow normal URL rules instead, which the HTTP library does by itself.
5. ``ref`` on list/get/head reads at a commit: the client sends it for ``Commit.objects``,
   the daemon for a mount at a commit. It is never combined with ``session_id``.
6. Error bodies: JSON object -> fields (missing ones ""); anything else -> message is the
   first 200 characters of the text. ``response_text`` keeps 500 characters.

The package mirrors ``tilde.resources``: one module per noun (``objects``, ``uploads``,
``sessions``, ``commits``, ``sandboxes``, ``identity`` ...) plus ``common`` (requests, query
building, pages, errors). Everything is re-exported here, so callers write ``_wire.name``.
"""

from __future__ import annotations

from .commits import (
    diff as diff,
)
from .commits import (
    get_commit as get_commit,
)
from .commits import (
    log as log,
)
from .commits import (
    parse_commit as parse_commit,
)
from .commits import (
    revert_commit as revert_commit,
)
from .common import (
    API_PREFIX as API_PREFIX,
)
from .common import (
    DEFAULT_ENDPOINT as DEFAULT_ENDPOINT,
)
from .common import (
    DEFAULT_PAGE_SIZE as DEFAULT_PAGE_SIZE,
)
from .common import (
    SDK_VERSION as SDK_VERSION,
)
from .common import (
    USER_AGENT as USER_AGENT,
)
from .common import (
    Page as Page,
)
from .common import (
    WireRequest as WireRequest,
)
from .common import (
    _amount as _amount,
)
from .common import (
    _header as _header,
)
from .common import (
    _params as _params,
)
from .common import (
    _r as _r,
)
from .common import (
    _s as _s,
)
from .common import (
    _str_field as _str_field,
)
from .common import (
    base_url as base_url,
)
from .common import (
    error_body as error_body,
)
from .common import (
    error_for_response as error_for_response,
)
from .common import (
    parse_page as parse_page,
)
from .common import (
    parse_results as parse_results,
)
from .common import (
    parse_timestamp as parse_timestamp,
)
from .common import (
    resolve_upload_url as resolve_upload_url,
)
from .common import (
    split_repo_path as split_repo_path,
)
from .connectors import (
    _import_options as _import_options,
)
from .connectors import (
    attach_connector as attach_connector,
)
from .connectors import (
    create_connector as create_connector,
)
from .connectors import (
    delete_connector as delete_connector,
)
from .connectors import (
    detach_connector as detach_connector,
)
from .connectors import (
    get_connector as get_connector,
)
from .connectors import (
    get_import as get_import,
)
from .connectors import (
    list_connectors as list_connectors,
)
from .connectors import (
    list_repository_connectors as list_repository_connectors,
)
from .connectors import (
    parse_connector as parse_connector,
)
from .connectors import (
    parse_import_job as parse_import_job,
)
from .connectors import (
    parse_job_id as parse_job_id,
)
from .connectors import (
    start_import_from_connector as start_import_from_connector,
)
from .connectors import (
    start_import_from_repository as start_import_from_repository,
)
from .identity import (
    _o as _o,
)
from .identity import (
    _principals as _principals,
)
from .identity import (
    add_group_member as add_group_member,
)
from .identity import (
    add_member as add_member,
)
from .identity import (
    attach_policy as attach_policy,
)
from .identity import (
    create_agent as create_agent,
)
from .identity import (
    create_api_key as create_api_key,
)
from .identity import (
    create_group as create_group,
)
from .identity import (
    create_policy as create_policy,
)
from .identity import (
    create_role as create_role,
)
from .identity import (
    delete_group as delete_group,
)
from .identity import (
    delete_policy as delete_policy,
)
from .identity import (
    delete_principal as delete_principal,
)
from .identity import (
    detach_policy as detach_policy,
)
from .identity import (
    effective_groups as effective_groups,
)
from .identity import (
    effective_policies as effective_policies,
)
from .identity import (
    generate_policy as generate_policy,
)
from .identity import (
    get_api_key as get_api_key,
)
from .identity import (
    get_group as get_group,
)
from .identity import (
    get_policy as get_policy,
)
from .identity import (
    get_principal as get_principal,
)
from .identity import (
    list_api_keys as list_api_keys,
)
from .identity import (
    list_attachments as list_attachments,
)
from .identity import (
    list_groups as list_groups,
)
from .identity import (
    list_members as list_members,
)
from .identity import (
    list_policies as list_policies,
)
from .identity import (
    list_principals as list_principals,
)
from .identity import (
    parse_agent as parse_agent,
)
from .identity import (
    parse_api_key as parse_api_key,
)
from .identity import (
    parse_attachment as parse_attachment,
)
from .identity import (
    parse_effective_group as parse_effective_group,
)
from .identity import (
    parse_effective_policy as parse_effective_policy,
)
from .identity import (
    parse_group as parse_group,
)
from .identity import (
    parse_group_member as parse_group_member,
)
from .identity import (
    parse_member as parse_member,
)
from .identity import (
    parse_policy as parse_policy,
)
from .identity import (
    parse_policy_text as parse_policy_text,
)
from .identity import (
    parse_role as parse_role,
)
from .identity import (
    parse_validation_result as parse_validation_result,
)
from .identity import (
    remove_group_member as remove_group_member,
)
from .identity import (
    remove_member as remove_member,
)
from .identity import (
    revoke_api_key as revoke_api_key,
)
from .identity import (
    update_agent as update_agent,
)
from .identity import (
    update_group as update_group,
)
from .identity import (
    update_policy as update_policy,
)
from .identity import (
    validate_policy as validate_policy,
)
from .objects import (
    _check_ref as _check_ref,
)
from .objects import (
    content_range as content_range,
)
from .objects import (
    copy_object as copy_object,
)
from .objects import (
    delete_object as delete_object,
)
from .objects import (
    delete_objects as delete_objects,
)
from .objects import (
    get_object as get_object,
)
from .objects import (
    head_object as head_object,
)
from .objects import (
    list_changes as list_changes,
)
from .objects import (
    list_objects as list_objects,
)
from .objects import (
    object_size_from as object_size_from,
)
from .objects import (
    parse_copy_result as parse_copy_result,
)
from .objects import (
    parse_deleted_count as parse_deleted_count,
)
from .objects import (
    parse_entry as parse_entry,
)
from .objects import (
    parse_entry_record as parse_entry_record,
)
from .objects import (
    parse_listing_entry as parse_listing_entry,
)
from .objects import (
    parse_object_metadata as parse_object_metadata,
)
from .objects import (
    parse_reproducible as parse_reproducible,
)
from .objects import (
    parse_source_metadata as parse_source_metadata,
)
from .objects import (
    range_header as range_header,
)
from .organizations import (
    create_organization as create_organization,
)
from .organizations import (
    delete_organization as delete_organization,
)
from .organizations import (
    get_organization as get_organization,
)
from .organizations import (
    list_organizations as list_organizations,
)
from .organizations import (
    parse_organization as parse_organization,
)
from .repositories import (
    UPDATABLE_REPOSITORY_FIELDS as UPDATABLE_REPOSITORY_FIELDS,
)
from .repositories import (
    create_repository as create_repository,
)
from .repositories import (
    delete_repository as delete_repository,
)
from .repositories import (
    get_repository as get_repository,
)
from .repositories import (
    list_repositories as list_repositories,
)
from .repositories import (
    parse_repository as parse_repository,
)
from .repositories import (
    update_repository as update_repository,
)
from .sandboxes import (
    CREDENTIALS_REFRESH_MARGIN_SECONDS as CREDENTIALS_REFRESH_MARGIN_SECONDS,
)
from .sandboxes import (
    SANDBOX_ACTIVE_STATES as SANDBOX_ACTIVE_STATES,
)
from .sandboxes import (
    SANDBOX_FAILED_STATES as SANDBOX_FAILED_STATES,
)
from .sandboxes import (
    SANDBOX_POLL_INTERVAL as SANDBOX_POLL_INTERVAL,
)
from .sandboxes import (
    SANDBOX_POLL_TIMEOUT as SANDBOX_POLL_TIMEOUT,
)
from .sandboxes import (
    SANDBOX_TERMINAL_STATES as SANDBOX_TERMINAL_STATES,
)
from .sandboxes import (
    _s_ as _s_,
)
from .sandboxes import (
    _t as _t,
)
from .sandboxes import (
    cancel_sandbox as cancel_sandbox,
)
from .sandboxes import (
    command_argv as command_argv,
)
from .sandboxes import (
    create_sandbox as create_sandbox,
)
from .sandboxes import (
    create_trigger as create_trigger,
)
from .sandboxes import (
    delete_trigger as delete_trigger,
)
from .sandboxes import (
    finish_sandbox as finish_sandbox,
)
from .sandboxes import (
    get_trigger as get_trigger,
)
from .sandboxes import (
    list_sandboxes as list_sandboxes,
)
from .sandboxes import (
    list_trigger_runs as list_trigger_runs,
)
from .sandboxes import (
    list_triggers as list_triggers,
)
from .sandboxes import (
    parse_sandbox_credentials as parse_sandbox_credentials,
)
from .sandboxes import (
    parse_sandbox_id as parse_sandbox_id,
)
from .sandboxes import (
    parse_sandbox_list_item as parse_sandbox_list_item,
)
from .sandboxes import (
    parse_sandbox_status as parse_sandbox_status,
)
from .sandboxes import (
    parse_trigger as parse_trigger,
)
from .sandboxes import (
    parse_trigger_condition as parse_trigger_condition,
)
from .sandboxes import (
    parse_trigger_config as parse_trigger_config,
)
from .sandboxes import (
    parse_trigger_run as parse_trigger_run,
)
from .sandboxes import (
    sandbox_awaits_approval as sandbox_awaits_approval,
)
from .sandboxes import (
    sandbox_committed as sandbox_committed,
)
from .sandboxes import (
    sandbox_ended as sandbox_ended,
)
from .sandboxes import (
    sandbox_ended_well as sandbox_ended_well,
)
from .sandboxes import (
    sandbox_exec_path as sandbox_exec_path,
)
from .sandboxes import (
    sandbox_network_log as sandbox_network_log,
)
from .sandboxes import (
    sandbox_status as sandbox_status,
)
from .sandboxes import (
    sandbox_stdout_log as sandbox_stdout_log,
)
from .sandboxes import (
    sandbox_terminal_path as sandbox_terminal_path,
)
from .sandboxes import (
    sandbox_without_changes as sandbox_without_changes,
)
from .sandboxes import (
    sandbox_without_exit_code as sandbox_without_exit_code,
)
from .sandboxes import (
    toggle_trigger as toggle_trigger,
)
from .sandboxes import (
    update_trigger as update_trigger,
)
from .sandboxes import (
    websocket_url as websocket_url,
)
from .secrets import (
    agent_secrets_path as agent_secrets_path,
)
from .secrets import (
    delete_secret as delete_secret,
)
from .secrets import (
    get_secret as get_secret,
)
from .secrets import (
    list_secrets as list_secrets,
)
from .secrets import (
    parse_secret as parse_secret,
)
from .secrets import (
    parse_secret_value as parse_secret_value,
)
from .secrets import (
    put_secret as put_secret,
)
from .secrets import (
    repository_secrets_path as repository_secrets_path,
)
from .sessions import (
    APPROVAL_POLL_INTERVAL as APPROVAL_POLL_INTERVAL,
)
from .sessions import (
    approval_poll as approval_poll,
)
from .sessions import (
    commit_session as commit_session,
)
from .sessions import (
    create_session as create_session,
)
from .sessions import (
    parse_commit_id as parse_commit_id,
)
from .sessions import (
    parse_session_id as parse_session_id,
)
from .sessions import (
    parse_web_url as parse_web_url,
)
from .sessions import (
    rollback_session as rollback_session,
)
from .uploads import (
    BATCH_UPLOAD_CONTENT_TYPE as BATCH_UPLOAD_CONTENT_TYPE,
)
from .uploads import (
    BATCH_UPLOAD_MAX_BYTES as BATCH_UPLOAD_MAX_BYTES,
)
from .uploads import (
    BATCH_UPLOAD_MAX_OBJECTS as BATCH_UPLOAD_MAX_OBJECTS,
)
from .uploads import (
    MULTIPART_PART_SIZE as MULTIPART_PART_SIZE,
)
from .uploads import (
    PART_REDIRECT_STATUSES as PART_REDIRECT_STATUSES,
)
from .uploads import (
    SINGLE_UPLOAD_LIMIT as SINGLE_UPLOAD_LIMIT,
)
from .uploads import (
    UPLOAD_CONTENT_TYPE as UPLOAD_CONTENT_TYPE,
)
from .uploads import (
    abort_multipart as abort_multipart,
)
from .uploads import (
    complete_multipart as complete_multipart,
)
from .uploads import (
    encode_batch as encode_batch,
)
from .uploads import (
    finalize_object as finalize_object,
)
from .uploads import (
    initiate_multipart as initiate_multipart,
)
from .uploads import (
    multipart_part_url as multipart_part_url,
)
from .uploads import (
    parse_batch_etags as parse_batch_etags,
)
from .uploads import (
    parse_multipart_upload as parse_multipart_upload,
)
from .uploads import (
    parse_put_result as parse_put_result,
)
from .uploads import (
    parse_staged_upload as parse_staged_upload,
)
from .uploads import (
    part_location as part_location,
)
from .uploads import (
    stage_object as stage_object,
)
from .uploads import (
    upload_batch as upload_batch,
)
