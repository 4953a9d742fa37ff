DROP TABLE sync_run_problems;
DROP TABLE grant_versions;
DROP TABLE membership_versions;
DROP TABLE entitlement_versions;
DROP TABLE identity_versions;
DROP INDEX sync_runs_seq;
DROP INDEX sync_runs_one_running;
ALTER TABLE sync_runs DROP COLUMN derivation;
ALTER TABLE sync_runs DROP COLUMN problems_from;
ALTER TABLE sync_runs DROP COLUMN diff;
ALTER TABLE sync_runs DROP COLUMN heartbeat_at;
ALTER TABLE sync_runs DROP COLUMN cycles;
ALTER TABLE sync_runs DROP COLUMN memberships;
ALTER TABLE sync_runs DROP COLUMN page_size;
ALTER TABLE sync_runs DROP COLUMN bind_identity;
ALTER TABLE sync_runs DROP COLUMN seq;
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
