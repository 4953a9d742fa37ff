-- The whole spine, created up front so that later stages fill tables instead of reshaping them.
-- Types are kept portable between SQLite and PostgreSQL: TEXT ids (UUIDs), TIMESTAMP in UTC,
-- JSON as TEXT, enums as TEXT.

CREATE TABLE sources (
    name TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    -- The sync run whose snapshot is current; replaced only when a sync succeeds.
    current_sync_run_id TEXT,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE sync_runs (
    id TEXT PRIMARY KEY NOT NULL,
    source TEXT NOT NULL REFERENCES sources(name),
    server TEXT NOT NULL,
    searches TEXT NOT NULL,
    started_at TIMESTAMP NOT NULL,
    finished_at TIMESTAMP,
    pages BIGINT NOT NULL DEFAULT 0,
    entries BIGINT NOT NULL DEFAULT 0,
    identities BIGINT NOT NULL DEFAULT 0,
    entitlements BIGINT NOT NULL DEFAULT 0,
    grants BIGINT NOT NULL DEFAULT 0,
    unresolved_members BIGINT NOT NULL DEFAULT 0,
    raw_sha256 TEXT,
    status TEXT NOT NULL,
    error TEXT
);
CREATE INDEX sync_runs_source ON sync_runs (source, started_at);

CREATE TABLE identities (
    id TEXT PRIMARY KEY NOT NULL,
    sync_run_id TEXT NOT NULL REFERENCES sync_runs(id),
    external_id TEXT NOT NULL,
    dn TEXT NOT NULL,
    dn_norm TEXT NOT NULL,
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    email TEXT,
    manager_dn_norm TEXT,
    status TEXT NOT NULL,
    last_login_at TIMESTAMP,
    UNIQUE (sync_run_id, external_id)
);
CREATE INDEX identities_dn ON identities (sync_run_id, dn_norm);

CREATE TABLE entitlements (
    id TEXT PRIMARY KEY NOT NULL,
    sync_run_id TEXT NOT NULL REFERENCES sync_runs(id),
    external_id TEXT NOT NULL,
    dn TEXT NOT NULL,
    dn_norm TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT,
    privileged BOOLEAN NOT NULL,
    owner_external_id TEXT,
    UNIQUE (sync_run_id, external_id)
);
CREATE INDEX entitlements_dn ON entitlements (sync_run_id, dn_norm);

CREATE TABLE grants (
    id TEXT PRIMARY KEY NOT NULL,
    sync_run_id TEXT NOT NULL REFERENCES sync_runs(id),
    entitlement_id TEXT NOT NULL REFERENCES entitlements(id),
    member_dn_norm TEXT NOT NULL,
    -- NULL when the member is not a person of the same snapshot (nested group, out of scope).
    identity_id TEXT REFERENCES identities(id),
    via TEXT,
    first_seen_at TIMESTAMP NOT NULL
);
CREATE INDEX grants_run_identity ON grants (sync_run_id, identity_id);
CREATE INDEX grants_entitlement ON grants (entitlement_id);

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY NOT NULL,
    definition TEXT NOT NULL,
    title TEXT NOT NULL,
    source TEXT NOT NULL REFERENCES sources(name),
    sync_run_id TEXT NOT NULL REFERENCES sync_runs(id),
    scope TEXT NOT NULL,
    period_start TIMESTAMP NOT NULL,
    opened_at TIMESTAMP NOT NULL,
    due_at TIMESTAMP NOT NULL,
    closed_at TIMESTAMP,
    state TEXT NOT NULL,
    UNIQUE (definition, period_start)
);

CREATE TABLE reviewers (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    identity_external_id TEXT,
    login TEXT,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    UNIQUE (campaign_id, email)
);

CREATE TABLE review_items (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    reviewer_id TEXT NOT NULL REFERENCES reviewers(id),
    routing TEXT NOT NULL,
    identity_external_id TEXT NOT NULL,
    identity_login TEXT NOT NULL,
    identity_name TEXT NOT NULL,
    identity_email TEXT,
    identity_status TEXT NOT NULL,
    entitlement_external_id TEXT NOT NULL,
    entitlement_name TEXT NOT NULL,
    entitlement_dn TEXT NOT NULL,
    privileged BOOLEAN NOT NULL,
    via TEXT,
    granted_since TIMESTAMP NOT NULL,
    stage BIGINT NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    decided_at TIMESTAMP,
    UNIQUE (campaign_id, identity_external_id, entitlement_external_id)
);
CREATE INDEX review_items_reviewer ON review_items (reviewer_id);

CREATE TABLE decisions (
    id TEXT PRIMARY KEY NOT NULL,
    item_id TEXT NOT NULL REFERENCES review_items(id),
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    reviewer_id TEXT NOT NULL REFERENCES reviewers(id),
    outcome TEXT NOT NULL,
    comment TEXT,
    decided_at TIMESTAMP NOT NULL,
    auth_method TEXT NOT NULL,
    auth_context TEXT NOT NULL
);
CREATE INDEX decisions_campaign ON decisions (campaign_id, decided_at);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    dedupe_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    campaign_id TEXT REFERENCES campaigns(id),
    reviewer_id TEXT REFERENCES reviewers(id),
    recipient TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    last_error TEXT,
    message_id TEXT,
    created_at TIMESTAMP NOT NULL,
    sent_at TIMESTAMP
);
CREATE INDEX outbox_due ON outbox (state, next_attempt_at);

CREATE TABLE link_tokens (
    jti_hash TEXT PRIMARY KEY NOT NULL,
    purpose TEXT NOT NULL,
    reviewer_id TEXT NOT NULL REFERENCES reviewers(id),
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    issued_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

-- Append-only evidence log: rows are inserted, never updated or deleted.
CREATE TABLE events (
    seq BIGINT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    subject TEXT,
    payload TEXT NOT NULL,
    leaf_hash TEXT NOT NULL
);

CREATE TABLE checkpoints (
    size BIGINT PRIMARY KEY NOT NULL,
    root_hash TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE remediation_tasks (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    item_id TEXT NOT NULL REFERENCES review_items(id),
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    verified_at TIMESTAMP
);

CREATE TABLE jobs (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    run_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE staff_users (
    id TEXT PRIMARY KEY NOT NULL,
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    disabled_at TIMESTAMP,
    UNIQUE (issuer, subject)
);

CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY NOT NULL,
    staff_user_id TEXT NOT NULL REFERENCES staff_users(id),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    staff_user_id TEXT NOT NULL REFERENCES staff_users(id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP
);

-- The evidence log is append-only: the database itself refuses changes to written events.
CREATE FUNCTION events_are_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();
