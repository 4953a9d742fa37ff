-- The directory as a versioned graph instead of one full copy per sync run. Each row of the
-- *_versions tables is one version of one thing (a person, a group, a direct membership, an
-- effective access), valid from the sync run (per-source `seq`) that first saw it as it is, up
-- to but not including the run that saw it change or vanish (`valid_to`, NULL while current).
-- "The directory as of run R" is: valid_from <= R AND (valid_to IS NULL OR valid_to > R).
-- An unchanged sync writes nothing here. The old per-run copies are dropped: sync again after
-- upgrading (campaigns keep their frozen items).

UPDATE sync_runs SET status = 'failed', error = 'abandoned: ended by an upgrade',
    finished_at = started_at WHERE status = 'running';
UPDATE sources SET current_sync_run_id = NULL;
DROP TABLE grants;
DROP TABLE entitlements;
DROP TABLE identities;

ALTER TABLE sync_runs ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN bind_identity TEXT;
ALTER TABLE sync_runs ADD COLUMN page_size BIGINT;
ALTER TABLE sync_runs ADD COLUMN memberships BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sync_runs ADD COLUMN cycles BIGINT NOT NULL DEFAULT 0;
-- Touched by a running sync as it goes; a run silent for long belongs to a dead process.
ALTER TABLE sync_runs ADD COLUMN heartbeat_at TIMESTAMP;
-- JSON: joiners, leavers, movers, groups and accesses added/removed/changed.
ALTER TABLE sync_runs ADD COLUMN diff TEXT NOT NULL DEFAULT '{}';
-- An unchanged run has the problems of an earlier run: it names that run instead of copying.
ALTER TABLE sync_runs ADD COLUMN problems_from TEXT;
-- How the run's accesses were derived (expansion rules and limits); an unchanged directory
-- reuses the previous run's accesses only when this matches.
ALTER TABLE sync_runs ADD COLUMN derivation TEXT NOT NULL DEFAULT '';
-- One run at a time per source; run numbers are unique per source.
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs (source) WHERE status = 'running';
CREATE UNIQUE INDEX sync_runs_seq ON sync_runs (source, seq) WHERE seq > 0;

CREATE TABLE identity_versions (
    id INTEGER PRIMARY KEY NOT NULL,
    source TEXT NOT NULL REFERENCES sources(name),
    external_id TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT,
    content_sha256 TEXT NOT NULL,
    dn TEXT NOT NULL,
    dn_norm TEXT NOT NULL,
    login TEXT NOT NULL,
    display_name TEXT NOT NULL,
    email TEXT,
    manager_dn_norm TEXT,
    status TEXT NOT NULL,
    -- person | service
    account_kind TEXT NOT NULL,
    -- Groups the entry names itself (memberOf), normalised DNs as a JSON array.
    member_of TEXT NOT NULL,
    gid_number TEXT,
    -- An observation, not part of the version: updated in place when it changes.
    last_login_at TIMESTAMP
);
CREATE INDEX identity_versions_key ON identity_versions (source, external_id);
CREATE INDEX identity_versions_dn ON identity_versions (source, dn_norm);
-- What is current (read at the start of every sync) and what a run wrote (undone on failure).
CREATE INDEX identity_versions_open ON identity_versions (source, valid_to);

CREATE TABLE entitlement_versions (
    id INTEGER PRIMARY KEY NOT NULL,
    source TEXT NOT NULL REFERENCES sources(name),
    external_id TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT,
    content_sha256 TEXT NOT NULL,
    dn TEXT NOT NULL,
    dn_norm TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    description TEXT,
    privileged BOOLEAN NOT NULL,
    owner_dn_norm TEXT,
    gid_number TEXT,
    direct_members BIGINT NOT NULL
);
CREATE INDEX entitlement_versions_key ON entitlement_versions (source, external_id);
CREATE INDEX entitlement_versions_open ON entitlement_versions (source, valid_to);

-- Direct memberships as the directory states them: a member DN (person or group) or, for
-- posixGroup, a login.
CREATE TABLE membership_versions (
    id INTEGER PRIMARY KEY NOT NULL,
    source TEXT NOT NULL REFERENCES sources(name),
    group_external_id TEXT NOT NULL,
    member_kind TEXT NOT NULL,
    member_ref TEXT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT
);
CREATE INDEX membership_versions_group
    ON membership_versions (source, group_external_id, valid_to);

-- Effective access derived from the direct memberships of a run: a person's access to a
-- group, directly or through a chain of nested groups (`via`: "eng <- sre").
CREATE TABLE grant_versions (
    id INTEGER PRIMARY KEY NOT NULL,
    source TEXT NOT NULL REFERENCES sources(name),
    identity_external_id TEXT NOT NULL,
    entitlement_external_id TEXT NOT NULL,
    via TEXT,
    valid_from BIGINT NOT NULL,
    valid_to BIGINT,
    -- When this access (by any path) was first seen without interruption.
    first_seen_at TIMESTAMP NOT NULL
);
CREATE INDEX grant_versions_entitlement ON grant_versions (source, entitlement_external_id);
CREATE INDEX grant_versions_open ON grant_versions (source, valid_to, id);

-- What a sync run could not place, so that nobody has to guess: members that resolve to no
-- synced person or group, nesting cycles, chains deeper than the limit.
CREATE TABLE sync_run_problems (
    id INTEGER PRIMARY KEY NOT NULL,
    sync_run_id TEXT NOT NULL REFERENCES sync_runs(id),
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX sync_run_problems_run ON sync_run_problems (sync_run_id);
