//! The durable job queue: work the scheduler decided on (open a campaign...), stored in the
//! database so that it survives restarts and is done once. A job is enqueued with a dedupe key
//! (a second enqueue of the same key does nothing), claimed under a lease (`FOR UPDATE SKIP
//! LOCKED` on PostgreSQL, so several instances share the queue; SQLite's immediate write lock
//! otherwise), and ends `done`, or `dead` after its attempts with its last error (and an event).
//! A job whose worker died is claimed again once its lease runs out.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::db::schema::jobs;
use crate::db::time::to_db;
use crate::db::{DbConnection, new_id, write_tx};
use crate::error::Result;
use crate::ledger::{EventKind, append};

pub const STATE_PENDING: &str = "pending";
pub const STATE_RUNNING: &str = "running";
pub const STATE_DONE: &str = "done";
pub const STATE_DEAD: &str = "dead";

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF_MINUTES`].
const RETRY_BASE_MINUTES: i64 = 5;
const MAX_BACKOFF_MINUTES: i64 = 60;

#[derive(Debug, Clone, Queryable, Selectable, PartialEq, Eq)]
#[diesel(table_name = jobs)]
pub struct Job {
    pub id: String,
    pub kind: String,
    pub dedupe_key: Option<String>,
    pub payload: String,
    pub state: String,
    pub attempts: i64,
    pub run_at: chrono::NaiveDateTime,
    pub locked_until: Option<chrono::NaiveDateTime>,
    pub last_error: Option<String>,
    pub created_at: chrono::NaiveDateTime,
}

/// Enqueues a job unless one with `dedupe_key` exists (whatever its state); returns whether
/// this call added it.
pub fn enqueue(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    kind: &str,
    dedupe_key: &str,
    payload: &serde_json::Value,
) -> Result<bool> {
    let row = (
        jobs::id.eq(new_id()),
        jobs::kind.eq(kind),
        jobs::dedupe_key.eq(Some(dedupe_key)),
        jobs::payload.eq(payload.to_string()),
        jobs::state.eq(STATE_PENDING),
        jobs::run_at.eq(to_db(now)),
        jobs::created_at.eq(to_db(now)),
    );
    let added = match conn {
        DbConnection::Postgres(pg) => diesel::insert_into(jobs::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(pg)?,
        DbConnection::Sqlite(sqlite) => diesel::insert_into(jobs::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(sqlite)?,
    };
    Ok(added == 1)
}

/// Claims one due job for `lease`: a pending job whose time has come, or a running one whose
/// worker's lease ran out.
pub fn claim_due(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    lease: Duration,
) -> Result<Option<Job>> {
    write_tx(conn, |conn| {
        let now_db = to_db(now);
        let due = jobs::table
            .filter(
                jobs::state
                    .eq(STATE_PENDING)
                    .and(jobs::run_at.le(now_db))
                    .or(jobs::state
                        .eq(STATE_RUNNING)
                        .and(jobs::locked_until.le(now_db))),
            )
            .order(jobs::run_at.asc())
            .limit(1)
            .select(jobs::id);
        let ids: Vec<String> = match conn {
            DbConnection::Postgres(pg) => due.for_update().skip_locked().load(pg)?,
            DbConnection::Sqlite(sqlite) => due.load(sqlite)?,
        };
        let Some(id) = ids.into_iter().next() else {
            return Ok(None);
        };
        diesel::update(jobs::table.find(&id))
            .set((
                jobs::state.eq(STATE_RUNNING),
                jobs::locked_until.eq(Some(to_db(now + lease))),
                jobs::attempts.eq(jobs::attempts + 1),
            ))
            .execute(conn)?;
        Ok(Some(
            jobs::table.find(&id).select(Job::as_select()).first(conn)?,
        ))
    })
}

/// Records that the claim holder finished `job`; false if the claim was lost meanwhile.
pub fn complete(conn: &mut DbConnection, job: &Job) -> Result<bool> {
    let updated = diesel::update(
        jobs::table
            .find(&job.id)
            .filter(jobs::state.eq(STATE_RUNNING))
            .filter(jobs::attempts.eq(job.attempts)),
    )
    .set((
        jobs::state.eq(STATE_DONE),
        jobs::locked_until.eq(None::<chrono::NaiveDateTime>),
        jobs::last_error.eq(None::<String>),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Schedules a retry with backoff, or gives the job up after `max_attempts` (with an event,
/// so that the failure is on the record); false if the claim was lost meanwhile.
pub fn fail(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    job: &Job,
    error: &str,
    max_attempts: u32,
) -> Result<bool> {
    let dead = job.attempts >= i64::from(max_attempts.max(1));
    let exponent = u32::try_from(job.attempts.saturating_sub(1).clamp(0, 10)).unwrap_or(10);
    let backoff = (RETRY_BASE_MINUTES * 2i64.pow(exponent)).min(MAX_BACKOFF_MINUTES);
    write_tx(conn, |conn| {
        let updated = diesel::update(
            jobs::table
                .find(&job.id)
                .filter(jobs::state.eq(STATE_RUNNING))
                .filter(jobs::attempts.eq(job.attempts)),
        )
        .set((
            jobs::state.eq(if dead { STATE_DEAD } else { STATE_PENDING }),
            jobs::run_at.eq(to_db(now + Duration::minutes(backoff))),
            jobs::locked_until.eq(None::<chrono::NaiveDateTime>),
            jobs::last_error.eq(Some(error)),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Ok(false);
        }
        if dead {
            append(
                conn,
                now,
                EventKind::JobGivenUp,
                "scheduler",
                None,
                &json!({
                    "job": job.id,
                    "kind": job.kind,
                    "payload": serde_json::from_str::<serde_json::Value>(&job.payload)
                        .unwrap_or_default(),
                    "attempts": job.attempts,
                    "error": error,
                }),
            )?;
        }
        Ok(true)
    })
}

/// Every job, newest first (for admins and tests).
pub fn all_jobs(conn: &mut DbConnection) -> Result<Vec<Job>> {
    Ok(jobs::table
        .order(jobs::created_at.desc())
        .select(Job::as_select())
        .load(conn)?)
}
