//! The job that turns approvals given until a date into revocations once the date comes. The
//! scheduler plans one whenever approvals are due, named after the latest due end date, so a
//! run covers everything due at that point and a later date plans a new one.

use chrono::{DateTime, Utc};

use crate::db::{DbConnection, write_tx};
use crate::decisions::expiry::{expire_due, latest_due};
use crate::error::Result;
use crate::jobs::queue;

pub const KIND_EXPIRE_APPROVALS: &str = "expire_approvals";

/// Enqueues an expiry run when approvals have reached their end date; returns how many jobs
/// it added (0 or 1).
pub fn plan(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<usize> {
    let Some(latest) = latest_due(conn, now)? else {
        return Ok(0);
    };
    let key = format!(
        "{KIND_EXPIRE_APPROVALS}:{}",
        latest
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
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
