//! The job that turns approvals given until a date into revocations once the date comes. The
//! scheduler plans one whenever approvals are due and no such job is waiting or running; a
//! run expires everything due when it runs, and one that failed for good is followed by a
//! new one at the next tick.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::jobs;
use crate::db::{DbConnection, write_tx};
use crate::decisions::expiry::{expire_due, latest_due};
use crate::error::Result;
use crate::jobs::queue;

pub const KIND_EXPIRE_APPROVALS: &str = "expire_approvals";

/// Enqueues an expiry run when approvals have reached their end date; returns how many jobs
/// it added (0 or 1).
pub fn plan(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<usize> {
    if latest_due(conn, now)?.is_none() {
        return Ok(0);
    }
    let waiting: i64 = jobs::table
        .filter(jobs::kind.eq(KIND_EXPIRE_APPROVALS))
        .filter(jobs::state.eq_any([queue::STATE_PENDING, queue::STATE_RUNNING]))
        .count()
        .get_result(conn)?;
    if waiting > 0 {
        return Ok(0);
    }
    let key = format!(
        "{KIND_EXPIRE_APPROVALS}:{}",
        now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    let added = write_tx(conn, |conn| {
        queue::enqueue(
            conn,
            now,
            KIND_EXPIRE_APPROVALS,
            &key,
            &serde_json::json!({}),
        )
    })?;
    Ok(usize::from(added))
}

/// Expires every approval due at `now`.
pub fn run(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<()> {
    let expired = expire_due(conn, now, "scheduler")?;
    tracing::info!(
        items = expired,
        "approvals given until a date expired into revocations"
    );
    Ok(())
}
