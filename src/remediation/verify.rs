//! Proof that a revocation happened: each carried-out task is checked against the first
//! successful sync of its source that started after the change. Gone: `verified`, with the
//! sync run that proved it. Still there: `still_present` (an alert; checked again at each
//! later sync). A verified access that a later sync shows again within
//! `regrant_window_days`: `regranted` (an alert). A task not carried out yet (IT has not
//! closed it, it failed or is blocked) is verified too once a sync shows the access gone. Each change of state commits with its
//! event, naming the sync run.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::as_of;
use crate::config::Config;
use crate::db::schema::{grant_versions, remediation_tasks, review_items};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::directory::snapshot::{SyncRun, current_sync_run};
use crate::error::Result;
use crate::ledger::{EventBatch, EventKind};
use crate::remediation::tasks::{
    OPEN_STATES, TASK_EXECUTED, TASK_REGRANTED, TASK_STILL_PRESENT, TASK_VERIFIED, Task,
};

/// Tasks checked per transaction.
const VERIFY_BATCH: i64 = 500;
/// The window when a source has no remediation section.
const DEFAULT_REGRANT_DAYS: i64 = 30;

/// What one check did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VerificationReport {
    pub verified: usize,
    pub still_present: usize,
    pub regranted: usize,
}

/// Checks every task that a newer sync of its source can prove or disprove.
pub fn verify_against_syncs(
    conn: &mut DbConnection,
    config: &Config,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<VerificationReport> {
    let sources: Vec<String> = remediation_tasks::table
        .select(remediation_tasks::source)
        .distinct()
        .load(conn)?;
    let mut report = VerificationReport::default();
    for source in sources {
        let Some(run) = current_sync_run(conn, &source)? else {
            continue;
        };
        let window_days = config
            .sources
            .get(&source)
            .and_then(|s| s.remediation())
            .map_or(DEFAULT_REGRANT_DAYS, |r| i64::from(r.regrant_window_days));
        let watched_since = to_db(now - Duration::days(window_days));
        loop {
            let checked = write_tx(conn, |conn| {
                check_batch(conn, &source, &run, watched_since, now, actor, &mut report)
            })?;
            if checked < VERIFY_BATCH as usize {
                break;
            }
        }
    }
    Ok(report)
}

/// Checks up to one batch of the source's tasks against `run`; returns how many it checked.
fn check_batch(
    conn: &mut DbConnection,
    source: &str,
    run: &SyncRun,
    watched_since: NaiveDateTime,
    now: DateTime<Utc>,
    actor: &str,
    report: &mut VerificationReport,
) -> Result<usize> {
    let started = run.started_at;
    let carried_out = remediation_tasks::state
        .eq_any([TASK_EXECUTED, TASK_STILL_PRESENT])
        .and(remediation_tasks::executed_at.lt(started));
    // Still to be carried out, but a sync shows the access gone (IT removed it by hand).
    let open = remediation_tasks::state
        .eq_any(OPEN_STATES)
        .and(remediation_tasks::created_at.lt(started));
    let recently_gone = remediation_tasks::state
        .eq(TASK_VERIFIED)
        .and(remediation_tasks::verified_at.ge(watched_since))
        .and(remediation_tasks::verified_at.lt(started));
    let rows: Vec<(Task, (String, String))> = remediation_tasks::table
        .inner_join(review_items::table)
        .filter(remediation_tasks::source.eq(source))
        .filter(carried_out.or(open).or(recently_gone))
        // A task being carried out right now is checked at the next round.
        .filter(
            remediation_tasks::locked_until
                .is_null()
                .or(remediation_tasks::locked_until.lt(to_db(now))),
        )
        .filter(
            remediation_tasks::checked_sync_run_id
                .is_null()
                .or(remediation_tasks::checked_sync_run_id.ne(&run.id)),
        )
        .order(remediation_tasks::id.asc())
        .limit(VERIFY_BATCH)
        .select((
            Task::as_select(),
            (
                review_items::identity_external_id,
                review_items::entitlement_external_id,
            ),
        ))
        .load(conn)?;
    let at = to_db(now);
    let mut events = EventBatch::default();
    for (task, (identity, entitlement)) in &rows {
        let present: i64 = grant_versions::table
            .filter(grant_versions::source.eq(source))
            .filter(grant_versions::identity_external_id.eq(identity))
            .filter(grant_versions::entitlement_external_id.eq(entitlement))
            .filter(as_of!(grant_versions, run.seq))
            .count()
            .get_result(conn)?;
        let present = present > 0;
        // Only if nobody changed the task since it was read (another instance checking it).
        let row = remediation_tasks::table
            .find(&task.id)
            .filter(remediation_tasks::state.eq(&task.state))
            .filter(
                remediation_tasks::checked_sync_run_id
                    .is_null()
                    .or(remediation_tasks::checked_sync_run_id.ne(&run.id)),
            );
        let proof = json!({
            "task": task.id,
            "item": task.item_id,
            "sync_run": run.id,
            "sync_seq": run.seq,
        });
        let checked = remediation_tasks::checked_sync_run_id.eq(Some(&run.id));
        let state = task.state.as_str();
        let (updated, kind) = match (state, present) {
            (TASK_VERIFIED, true) => (
                diesel::update(row)
                    .set((
                        remediation_tasks::state.eq(TASK_REGRANTED),
                        checked,
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?,
                Some(EventKind::RemediationRegranted),
            ),
            (TASK_EXECUTED, true) => (
                diesel::update(row)
                    .set((
                        remediation_tasks::state.eq(TASK_STILL_PRESENT),
                        checked,
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?,
                Some(EventKind::RemediationStillPresent),
            ),
            (TASK_VERIFIED, false) | (_, true) => {
                (diesel::update(row).set(checked).execute(conn)?, None)
            }
            (_, false) => (
                diesel::update(row)
                    .set((
                        remediation_tasks::state.eq(TASK_VERIFIED),
                        checked,
                        remediation_tasks::verified_at.eq(Some(at)),
                        remediation_tasks::verified_sync_run_id.eq(Some(&run.id)),
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?,
                Some(EventKind::RemediationVerified),
            ),
        };
        let Some(kind) = kind.filter(|_| updated == 1) else {
            continue;
        };
        match kind {
            EventKind::RemediationVerified => report.verified += 1,
            EventKind::RemediationStillPresent => report.still_present += 1,
            _ => report.regranted += 1,
        }
        if kind != EventKind::RemediationVerified {
            tracing::warn!(task = %task.id, sync_run = %run.id, kind = kind.as_str(), "remediation alert");
        }
        events.push(kind, Some(&task.campaign_id), proof);
    }
    events.append_all(conn, now, actor)?;
    Ok(rows.len())
}
