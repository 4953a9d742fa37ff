//! Writing what became of a claimed task: its outcome and its event in one transaction,
//! only while this claim still holds the task (its lease); the plan of a dry run; the error
//! of a source that could not be reached (no state change, no attempt charged); and the
//! exponential backoff of a failed task.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::{Value, json};

use crate::config::RemediationConfig;
use crate::db::schema::remediation_tasks;
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::error::Result;
use crate::ledger::{EventKind, append};
use crate::remediation::tasks::{
    TASK_BLOCKED, TASK_CANCELLED, TASK_EXECUTED, TASK_FAILED, TASK_PENDING, Task,
};

/// What carrying out a task came to.
pub(super) enum Outcome {
    Executed(Value),
    Failed(String),
    Blocked(String),
    Cancelled(String),
}

/// The source could not be reached: the task is left as it was, with the error to show.
pub(super) fn release(
    conn: &mut DbConnection,
    task: &Task,
    lease: NaiveDateTime,
    error: &str,
) -> Result<()> {
    diesel::update(
        remediation_tasks::table
            .find(&task.id)
            .filter(remediation_tasks::locked_until.eq(lease)),
    )
    .set((
        remediation_tasks::last_error.eq(Some(error)),
        remediation_tasks::locked_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(())
}

/// A dry run keeps the task as it is and records what it would have done.
pub(super) fn record_plan(
    conn: &mut DbConnection,
    task: &Task,
    lease: NaiveDateTime,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let plan = match outcome {
        Outcome::Executed(action) => action,
        Outcome::Failed(error) => json!({ "kind": "would_fail", "dry_run": true, "error": error }),
        Outcome::Blocked(why) | Outcome::Cancelled(why) => {
            json!({ "kind": "would_block", "dry_run": true, "why": why })
        }
    };
    diesel::update(
        remediation_tasks::table
            .find(&task.id)
            .filter(remediation_tasks::locked_until.eq(lease)),
    )
    .set((
        remediation_tasks::action.eq(Some(plan.to_string())),
        remediation_tasks::planned_at.eq(Some(to_db(now))),
        remediation_tasks::locked_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)?;
    Ok(())
}

/// The wait before the next attempt after `attempts` failures, or none once they reach
/// `max_attempts`.
fn next_attempt(
    remediation: &RemediationConfig,
    attempts: i64,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if attempts >= i64::from(remediation.max_attempts) {
        return None;
    }
    let doubling = 2_i64.saturating_pow(u32::try_from(attempts - 1).unwrap_or(0).min(20));
    let base = i64::try_from(remediation.retry_base_seconds.max(1)).unwrap_or(i64::MAX);
    now.checked_add_signed(Duration::seconds(
        base.saturating_mul(doubling).min(30 * 86_400),
    ))
}

/// Writes a task's outcome and its event together, if this claim still holds the task.
pub(super) fn record(
    conn: &mut DbConnection,
    task: &Task,
    lease: NaiveDateTime,
    remediation: &RemediationConfig,
    outcome: Outcome,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<()> {
    let at = to_db(now);
    let attempts = task.attempts + 1;
    let mode = remediation.mode.as_str();
    write_tx(conn, |conn| {
        let held = remediation_tasks::table
            .find(&task.id)
            .filter(remediation_tasks::locked_until.eq(lease))
            .filter(remediation_tasks::state.eq_any([TASK_PENDING, TASK_FAILED]));
        let released = remediation_tasks::locked_until.eq(None::<NaiveDateTime>);
        let (updated, kind, payload) = match &outcome {
            Outcome::Executed(action) => (
                diesel::update(held)
                    .set((
                        remediation_tasks::state.eq(TASK_EXECUTED),
                        remediation_tasks::mode.eq(mode),
                        remediation_tasks::action.eq(Some(action.to_string())),
                        remediation_tasks::executed_at.eq(Some(at)),
                        remediation_tasks::attempts.eq(attempts),
                        remediation_tasks::last_error.eq(None::<String>),
                        remediation_tasks::next_attempt_at.eq(None::<NaiveDateTime>),
                        released,
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?,
                EventKind::RemediationExecuted,
                json!({ "task": task.id, "item": task.item_id, "mode": mode, "action": action }),
            ),
            Outcome::Failed(error) => {
                let next = next_attempt(remediation, attempts, now);
                (
                    diesel::update(held)
                        .set((
                            remediation_tasks::state.eq(TASK_FAILED),
                            remediation_tasks::mode.eq(mode),
                            remediation_tasks::action.eq(None::<String>),
                            remediation_tasks::attempts.eq(attempts),
                            remediation_tasks::last_error.eq(Some(error.as_str())),
                            remediation_tasks::next_attempt_at.eq(next.map(to_db)),
                            released,
                            remediation_tasks::updated_at.eq(at),
                        ))
                        .execute(conn)?,
                    EventKind::RemediationFailed,
                    json!({
                        "task": task.id,
                        "item": task.item_id,
                        "mode": mode,
                        "attempt": attempts,
                        "error": error,
                        "next_attempt_at": next
                            .map(|n| n.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    }),
                )
            }
            Outcome::Blocked(why) | Outcome::Cancelled(why) => {
                let (state, kind) = match &outcome {
                    Outcome::Blocked(_) => (TASK_BLOCKED, EventKind::RemediationBlocked),
                    _ => (TASK_CANCELLED, EventKind::RemediationCancelled),
                };
                (
                    diesel::update(held)
                        .set((
                            remediation_tasks::state.eq(state),
                            remediation_tasks::mode.eq(mode),
                            remediation_tasks::action.eq(None::<String>),
                            remediation_tasks::last_error.eq(Some(why.as_str())),
                            remediation_tasks::next_attempt_at.eq(None::<NaiveDateTime>),
                            released,
                            remediation_tasks::updated_at.eq(at),
                        ))
                        .execute(conn)?,
                    kind,
                    json!({ "task": task.id, "item": task.item_id, "mode": mode, "why": why }),
                )
            }
        };
        // The lease ran out and another claim took the task over: its outcome stands.
        if updated == 1 {
            append(conn, now, kind, actor, Some(&task.campaign_id), &payload)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_retry_waits_twice_as_long_until_the_attempts_run_out() {
        let remediation = RemediationConfig {
            retry_base_seconds: 60,
            max_attempts: 4,
            ..RemediationConfig::default()
        };
        let now = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let waits: Vec<Option<i64>> = (1..=4)
            .map(|attempts| {
                next_attempt(&remediation, attempts, now).map(|n| (n - now).num_seconds())
            })
            .collect();
        assert_eq!(waits, vec![Some(60), Some(120), Some(240), None]);
        let huge = RemediationConfig {
            retry_base_seconds: u64::MAX,
            max_attempts: 100,
            ..RemediationConfig::default()
        };
        let capped = next_attempt(&huge, 60, now).map(|n| (n - now).num_days());
        assert_eq!(
            capped,
            Some(30),
            "a huge setting waits 30 days at most, never overflows"
        );
    }
}
