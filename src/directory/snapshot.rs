//! Reading snapshots: the sync-run record (the population's provenance) and which run is
//! current for a source.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConnection;
use crate::db::schema::{sources, sync_runs};
use crate::error::{Error, Result};

/// One sync run: where a population came from, with which query, and how it ended.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = sync_runs)]
pub struct SyncRun {
    pub id: String,
    pub source: String,
    pub server: String,
    pub searches: String,
    pub started_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub pages: i64,
    pub entries: i64,
    pub identities: i64,
    pub entitlements: i64,
    pub grants: i64,
    pub unresolved_members: i64,
    pub raw_sha256: Option<String>,
    pub status: String,
    pub error: Option<String>,
}

pub const STATUS_RUNNING: &str = "running";
pub const STATUS_SUCCEEDED: &str = "succeeded";
pub const STATUS_FAILED: &str = "failed";

pub fn sync_run(conn: &mut DbConnection, id: &str) -> Result<SyncRun> {
    sync_runs::table
        .find(id)
        .select(SyncRun::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("sync run {id} not found")))
}

/// The run whose snapshot is current for `source`, if it ever synced successfully.
pub fn current_sync_run(conn: &mut DbConnection, source: &str) -> Result<Option<SyncRun>> {
    let current: Option<Option<String>> = sources::table
        .find(source)
        .select(sources::current_sync_run_id)
        .first(conn)
        .optional()?;
    match current.flatten() {
        Some(id) => Ok(Some(sync_run(conn, &id)?)),
        None => Ok(None),
    }
}

/// Every run of a source, newest first.
pub fn sync_runs_of(conn: &mut DbConnection, source: &str) -> Result<Vec<SyncRun>> {
    Ok(sync_runs::table
        .filter(sync_runs::source.eq(source))
        .order(sync_runs::started_at.desc())
        .select(SyncRun::as_select())
        .load(conn)?)
}
