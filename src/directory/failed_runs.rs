//! Undoing a sync run that failed, or that a dead process left running: the run is ended
//! first (a process still writing for it stops at its next batch), its versions are removed
//! and the versions it closed reopened, its problems dropped, and the failure recorded as an
//! event, in one transaction; the current run is untouched.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::db::schema::{
    entitlement_versions, grant_versions, identity_versions, membership_versions,
    sync_run_problems, sync_runs,
};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::directory::snapshot::{STATUS_FAILED, STATUS_RUNNING};
use crate::error::Result;
use crate::ledger::{EventKind, append};

/// A running sync that has shown no sign of life for this long belongs to a dead process.
pub(crate) const ABANDONED_AFTER_MINUTES: i64 = 15;

/// Ends runs of `source` that a dead process left `running` (silent for too long): their
/// changes are undone and each is recorded as failed.
pub(crate) fn sweep_abandoned_runs(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    source: &str,
    actor: &str,
) -> Result<()> {
    let cutoff = to_db(at - chrono::Duration::minutes(ABANDONED_AFTER_MINUTES));
    let running: Vec<(String, chrono::NaiveDateTime, Option<chrono::NaiveDateTime>)> =
        sync_runs::table
            .filter(sync_runs::source.eq(source))
            .filter(sync_runs::status.eq(STATUS_RUNNING))
            .select((
                sync_runs::id,
                sync_runs::started_at,
                sync_runs::heartbeat_at,
            ))
            .load(conn)?;
    for (run, started_at, heartbeat_at) in running {
        if heartbeat_at.unwrap_or(started_at) >= cutoff {
            continue;
        }
        tracing::warn!(source, sync_run = %run, "ending a sync run abandoned by a stopped process");
        fail_run(
            conn,
            at,
            source,
            &run,
            "abandoned: the sync stopped without finishing (the process ended)",
            actor,
        )?;
    }
    Ok(())
}

/// Undoes a run's changes (its versions removed, the versions it closed reopened, its problems
/// removed) and records the failure; the current run is untouched.
pub(crate) fn fail_run(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    source: &str,
    sync_run_id: &str,
    message: &str,
    actor: &str,
) -> Result<()> {
    write_tx(conn, |conn| {
        // Ended first: a process still writing for this run finds it ended at its next batch
        // (every batch checks) and stops, so nothing it writes can outlive this undo.
        let ended = diesel::update(
            sync_runs::table
                .find(sync_run_id)
                .filter(sync_runs::status.eq(STATUS_RUNNING)),
        )
        .set((
            sync_runs::finished_at.eq(Some(to_db(at))),
            sync_runs::status.eq(STATUS_FAILED),
            sync_runs::error.eq(Some(message)),
        ))
        .execute(conn)?;
        if ended == 0 {
            // Someone else ended (and undid) it already.
            return Ok(());
        }
        let run: i64 = sync_runs::table
            .find(sync_run_id)
            .select(sync_runs::seq)
            .first(conn)?;
        macro_rules! undo {
            ($table:ident) => {
                diesel::delete(
                    $table::table
                        .filter($table::source.eq(source))
                        .filter($table::valid_from.eq(run)),
                )
                .execute(conn)?;
                diesel::update(
                    $table::table
                        .filter($table::source.eq(source))
                        .filter($table::valid_to.eq(run)),
                )
                .set($table::valid_to.eq(None::<i64>))
                .execute(conn)?;
            };
        }
        undo!(identity_versions);
        undo!(entitlement_versions);
        undo!(membership_versions);
        undo!(grant_versions);
        diesel::delete(
            sync_run_problems::table.filter(sync_run_problems::sync_run_id.eq(sync_run_id)),
        )
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
