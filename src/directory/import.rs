//! Snapshot import: runs one sync of a source and writes what it returns as a new snapshot.
//!
//! Records stream from the source into batched multi-row inserts (never one round trip per
//! row, never the whole directory in memory). Rows belong to the new sync run and stay
//! invisible until the final transaction marks the run succeeded and moves the source's
//! current-snapshot pointer. On any failure the partial rows are removed and the run is
//! recorded as failed with its error; the previous snapshot stays current.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::clock::Clock;
use crate::config::SourceConfig;
use crate::db::schema::{entitlements, grants, identities, sources, sync_runs};
use crate::db::time::to_db;
use crate::db::{Database, DbConnection, new_id, write_tx};
use crate::directory::snapshot::{STATUS_FAILED, STATUS_RUNNING, STATUS_SUCCEEDED};
use crate::error::{Error, Result};
use crate::evidence::{EventKind, append};
use crate::sources::{
    FetchReport, GroupRecord, PersonRecord, RecordSink, SourceRecord, fetch, normalize_dn,
    server_of,
};

/// Rows per multi-row INSERT; small enough for SQLite's bind-parameter limit.
const BATCH_ROWS: usize = 500;

/// What a successful sync wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub sync_run_id: String,
    pub entries: u64,
    pub identities: i64,
    pub entitlements: i64,
    pub grants: i64,
    pub unresolved_members: i64,
}

#[derive(Insertable)]
#[diesel(table_name = identities)]
struct NewIdentity {
    id: String,
    sync_run_id: String,
    external_id: String,
    dn: String,
    dn_norm: String,
    login: String,
    display_name: String,
    email: Option<String>,
    manager_dn_norm: Option<String>,
    status: String,
}

#[derive(Insertable)]
#[diesel(table_name = entitlements)]
struct NewEntitlement {
    id: String,
    sync_run_id: String,
    external_id: String,
    dn: String,
    dn_norm: String,
    name: String,
    kind: String,
    description: Option<String>,
    privileged: bool,
}

#[derive(Insertable)]
#[diesel(table_name = grants)]
struct NewGrant {
    id: String,
    sync_run_id: String,
    entitlement_id: String,
    member_dn_norm: String,
    first_seen_at: chrono::NaiveDateTime,
}

/// Buffers records and writes them in batches, each batch in its own short write transaction
/// so that a long directory read never holds the database's write lock.
struct SnapshotWriter<'c> {
    conn: &'c mut DbConnection,
    sync_run_id: String,
    synced_at: chrono::NaiveDateTime,
    privileged: Vec<String>,
    identities: Vec<NewIdentity>,
    entitlements: Vec<NewEntitlement>,
    grants: Vec<NewGrant>,
}

impl SnapshotWriter<'_> {
    fn is_privileged(&self, group: &GroupRecord) -> bool {
        let dn = normalize_dn(&group.dn);
        let name = group.name.to_lowercase();
        self.privileged.iter().any(|p| *p == dn || *p == name)
    }

    fn add_person(&mut self, person: PersonRecord) {
        self.identities.push(NewIdentity {
            id: new_id(),
            sync_run_id: self.sync_run_id.clone(),
            external_id: person.external_id,
            dn_norm: normalize_dn(&person.dn),
            dn: person.dn,
            login: person.login,
            display_name: person.display_name,
            email: person.email,
            manager_dn_norm: person.manager_dn.as_deref().map(normalize_dn),
            status: if person.disabled {
                "disabled"
            } else {
                "active"
            }
            .to_string(),
        });
    }

    fn add_group(&mut self, group: GroupRecord) {
        let entitlement_id = new_id();
        let privileged = self.is_privileged(&group);
        // A member written twice (two spellings of one DN) is one membership.
        let mut seen = std::collections::HashSet::with_capacity(group.member_dns.len());
        for member in &group.member_dns {
            let member_dn_norm = normalize_dn(member);
            if !seen.insert(member_dn_norm.clone()) {
                continue;
            }
            self.grants.push(NewGrant {
                id: new_id(),
                sync_run_id: self.sync_run_id.clone(),
                entitlement_id: entitlement_id.clone(),
                member_dn_norm,
                first_seen_at: self.synced_at,
            });
        }
        self.entitlements.push(NewEntitlement {
            id: entitlement_id,
            sync_run_id: self.sync_run_id.clone(),
            external_id: group.external_id,
            dn_norm: normalize_dn(&group.dn),
            dn: group.dn,
            name: group.name,
            kind: "group".to_string(),
            description: group.description,
            privileged,
        });
    }

    fn pending_rows(&self) -> usize {
        self.identities.len() + self.entitlements.len() + self.grants.len()
    }

    /// Writes buffered rows; entitlements go before the grants that reference them.
    fn flush(&mut self) -> Result<()> {
        if self.pending_rows() == 0 {
            return Ok(());
        }
        let identities_batch = std::mem::take(&mut self.identities);
        let entitlements_batch = std::mem::take(&mut self.entitlements);
        let grants_batch = std::mem::take(&mut self.grants);
        write_tx(self.conn, |conn| {
            for chunk in identities_batch.chunks(BATCH_ROWS) {
                crate::insert_rows!(conn, identities::table, chunk)?;
            }
            for chunk in entitlements_batch.chunks(BATCH_ROWS) {
                crate::insert_rows!(conn, entitlements::table, chunk)?;
            }
            for chunk in grants_batch.chunks(BATCH_ROWS) {
                crate::insert_rows!(conn, grants::table, chunk)?;
            }
            Ok(())
        })
    }
}

impl RecordSink for SnapshotWriter<'_> {
    fn accept(&mut self, record: SourceRecord) -> Result<()> {
        match record {
            SourceRecord::Person(person) => self.add_person(person),
            SourceRecord::Group(group) => self.add_group(group),
        }
        if self.pending_rows() >= BATCH_ROWS * 4 {
            self.flush()?;
        }
        Ok(())
    }
}

/// Syncs one source: records the run, imports the snapshot, and makes it current on success.
/// Blocking; run it on a blocking thread.
pub fn sync_source(
    db: &Database,
    clock: &dyn Clock,
    name: &str,
    config: &SourceConfig,
    actor: &str,
) -> Result<SyncOutcome> {
    let mut conn = db.conn()?;
    let started_at = clock.now();
    sweep_abandoned_runs(&mut conn, started_at, name, actor)?;
    let sync_run_id = begin_run(&mut conn, started_at, name, config, actor)?;
    tracing::info!(source = name, sync_run = %sync_run_id, "sync started");

    let imported = import_snapshot(&mut conn, &sync_run_id, started_at, config)
        .and_then(|report| finish_run(&mut conn, clock.now(), name, &sync_run_id, &report, actor));
    match imported {
        Ok(outcome) => {
            tracing::info!(
                source = name,
                sync_run = %sync_run_id,
                identities = outcome.identities,
                entitlements = outcome.entitlements,
                grants = outcome.grants,
                "sync succeeded"
            );
            Ok(outcome)
        }
        Err(err) => {
            let message = match &err {
                Error::Source { message, .. } => message.clone(),
                other => other.to_string(),
            };
            tracing::warn!(source = name, sync_run = %sync_run_id, error = %message, "sync failed");
            // The sync's own error is what the caller must see, even if recording it fails.
            if let Err(record_error) =
                fail_run(&mut conn, clock.now(), &sync_run_id, &message, actor)
            {
                tracing::error!(sync_run = %sync_run_id, error = %record_error, "cannot record the failed sync");
            }
            Err(Error::source(name, message))
        }
    }
}

fn begin_run(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    name: &str,
    config: &SourceConfig,
    actor: &str,
) -> Result<String> {
    let kind = match config {
        SourceConfig::Ldap(_) => "ldap",
        SourceConfig::Ldif(_) => "ldif",
    };
    let sync_run_id = new_id();
    let server = server_of(config);
    write_tx(conn, |conn| {
        let source_row = (
            sources::name.eq(name),
            sources::kind.eq(kind),
            sources::updated_at.eq(to_db(at)),
        );
        // Two first syncs of the same source may race; the row just has to exist.
        match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(sources::table)
                .values(source_row)
                .on_conflict_do_nothing()
                .execute(pg)?,
            DbConnection::Sqlite(sqlite) => diesel::insert_into(sources::table)
                .values(source_row)
                .on_conflict_do_nothing()
                .execute(sqlite)?,
        };
        diesel::insert_into(sync_runs::table)
            .values((
                sync_runs::id.eq(&sync_run_id),
                sync_runs::source.eq(name),
                sync_runs::server.eq(&server),
                sync_runs::searches.eq("[]"),
                sync_runs::started_at.eq(to_db(at)),
                sync_runs::status.eq(STATUS_RUNNING),
            ))
            .execute(conn)?;
        append(
            conn,
            at,
            EventKind::SyncStarted,
            actor,
            Some(&sync_run_id),
            &json!({ "source": name, "sync_run": sync_run_id, "server": server }),
        )?;
        Ok(())
    })?;
    Ok(sync_run_id)
}

fn import_snapshot(
    conn: &mut DbConnection,
    sync_run_id: &str,
    started_at: DateTime<Utc>,
    config: &SourceConfig,
) -> Result<FetchReport> {
    let mut writer = SnapshotWriter {
        conn,
        sync_run_id: sync_run_id.to_string(),
        synced_at: to_db(started_at),
        privileged: config
            .privileged_groups()
            .iter()
            .map(|p| normalize_dn(p))
            .collect(),
        identities: Vec::new(),
        entitlements: Vec::new(),
        grants: Vec::new(),
    };
    let report = fetch(config, &mut writer)?;
    writer.flush()?;
    Ok(report)
}

/// Only run ids this module generated are ever inlined into SQL; re-checked here anyway.
fn quoted_id(id: &str) -> Result<String> {
    uuid::Uuid::parse_str(id)
        .map(|u| format!("'{u}'"))
        .map_err(|_| Error::Internal("sync run id is not a UUID".into()))
}

/// Links grants to the people of the same snapshot and carries "first seen" forward from the
/// previous snapshot, then counts, records the run and moves the current pointer.
fn finish_run(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    name: &str,
    sync_run_id: &str,
    report: &FetchReport,
    actor: &str,
) -> Result<SyncOutcome> {
    let run = quoted_id(sync_run_id)?;
    write_tx(conn, |conn| {
        let previous: Option<Option<String>> = sources::table
            .find(name)
            .select(sources::current_sync_run_id)
            .first(conn)
            .optional()?;
        diesel::sql_query(format!(
            "UPDATE grants SET identity_id = (SELECT i.id FROM identities i \
             WHERE i.sync_run_id = grants.sync_run_id AND i.dn_norm = grants.member_dn_norm LIMIT 1) \
             WHERE sync_run_id = {run}"
        ))
        .execute(conn)?;
        if let Some(prev) = previous.clone().flatten() {
            let prev = quoted_id(&prev)?;
            diesel::sql_query(format!(
                "UPDATE grants SET first_seen_at = COALESCE((SELECT MIN(pg.first_seen_at) FROM grants pg \
                 WHERE pg.sync_run_id = {prev} \
                 AND pg.identity_id = (SELECT pi.id FROM identities pi WHERE pi.sync_run_id = {prev} \
                   AND pi.external_id = (SELECT ci.external_id FROM identities ci WHERE ci.id = grants.identity_id)) \
                 AND pg.entitlement_id = (SELECT pe.id FROM entitlements pe WHERE pe.sync_run_id = {prev} \
                   AND pe.external_id = (SELECT ce.external_id FROM entitlements ce WHERE ce.id = grants.entitlement_id))), \
                 first_seen_at) WHERE sync_run_id = {run} AND identity_id IS NOT NULL"
            ))
            .execute(conn)?;
        }
        let identity_count: i64 = identities::table
            .filter(identities::sync_run_id.eq(sync_run_id))
            .count()
            .get_result(conn)?;
        let entitlement_count: i64 = entitlements::table
            .filter(entitlements::sync_run_id.eq(sync_run_id))
            .count()
            .get_result(conn)?;
        let grant_count: i64 = grants::table
            .filter(grants::sync_run_id.eq(sync_run_id))
            .filter(grants::identity_id.is_not_null())
            .count()
            .get_result(conn)?;
        let unresolved: i64 = grants::table
            .filter(grants::sync_run_id.eq(sync_run_id))
            .filter(grants::identity_id.is_null())
            .count()
            .get_result(conn)?;
        let searches = serde_json::to_string(&report.searches)?;
        let marked = diesel::update(
            sync_runs::table
                .find(sync_run_id)
                .filter(sync_runs::status.eq(STATUS_RUNNING)),
        )
        .set((
            sync_runs::searches.eq(&searches),
            sync_runs::finished_at.eq(Some(to_db(at))),
            sync_runs::pages.eq(report.pages() as i64),
            sync_runs::entries.eq(report.entries() as i64),
            sync_runs::identities.eq(identity_count),
            sync_runs::entitlements.eq(entitlement_count),
            sync_runs::grants.eq(grant_count),
            sync_runs::unresolved_members.eq(unresolved),
            sync_runs::raw_sha256.eq(Some(&report.raw_sha256)),
            sync_runs::status.eq(STATUS_SUCCEEDED),
        ))
        .execute(conn)?;
        if marked == 0 {
            return Err(Error::Conflict(
                "the sync run was ended by someone else while it was importing".into(),
            ));
        }
        diesel::update(sources::table.find(name))
            .set((
                sources::current_sync_run_id.eq(Some(sync_run_id)),
                sources::updated_at.eq(to_db(at)),
            ))
            .execute(conn)?;
        append(
            conn,
            at,
            EventKind::SyncSucceeded,
            actor,
            Some(sync_run_id),
            &json!({
                "source": name,
                "sync_run": sync_run_id,
                "previous_sync_run": previous.clone().flatten(),
                "server": report.server,
                "searches": report.searches,
                "entries": report.entries(),
                "identities": identity_count,
                "entitlements": entitlement_count,
                "grants": grant_count,
                "unresolved_members": unresolved,
                "raw_sha256": report.raw_sha256,
            }),
        )?;
        Ok(SyncOutcome {
            sync_run_id: sync_run_id.to_string(),
            entries: report.entries(),
            identities: identity_count,
            entitlements: entitlement_count,
            grants: grant_count,
            unresolved_members: unresolved,
        })
    })
}

/// A run still `running` this long after it started belongs to a process that died.
const ABANDONED_AFTER_HOURS: i64 = 6;

/// Ends runs of `source` that a dead process left `running`: their partial rows go, and each
/// is recorded as failed, so debris never accumulates and the history tells what happened.
fn sweep_abandoned_runs(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    source: &str,
    actor: &str,
) -> Result<()> {
    let cutoff = to_db(at - chrono::Duration::hours(ABANDONED_AFTER_HOURS));
    let abandoned: Vec<String> = sync_runs::table
        .filter(sync_runs::source.eq(source))
        .filter(sync_runs::status.eq(STATUS_RUNNING))
        .filter(sync_runs::started_at.lt(cutoff))
        .select(sync_runs::id)
        .load(conn)?;
    for run in abandoned {
        tracing::warn!(source, sync_run = %run, "ending a sync run abandoned by a stopped process");
        fail_run(
            conn,
            at,
            &run,
            "abandoned: the sync stopped without finishing (the process ended)",
            actor,
        )?;
    }
    Ok(())
}

/// Removes the partial rows of a failed run and records the failure; the current pointer is
/// untouched.
fn fail_run(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    sync_run_id: &str,
    message: &str,
    actor: &str,
) -> Result<()> {
    write_tx(conn, |conn| {
        diesel::delete(grants::table.filter(grants::sync_run_id.eq(sync_run_id))).execute(conn)?;
        diesel::delete(entitlements::table.filter(entitlements::sync_run_id.eq(sync_run_id)))
            .execute(conn)?;
        diesel::delete(identities::table.filter(identities::sync_run_id.eq(sync_run_id)))
            .execute(conn)?;
        diesel::update(sync_runs::table.find(sync_run_id))
            .set((
                sync_runs::finished_at.eq(Some(to_db(at))),
                sync_runs::status.eq(STATUS_FAILED),
                sync_runs::error.eq(Some(message)),
            ))
            .execute(conn)?;
        append(
            conn,
            at,
            EventKind::SyncFailed,
            actor,
            Some(sync_run_id),
            &json!({ "sync_run": sync_run_id, "error": message }),
        )?;
        Ok(())
    })
}
