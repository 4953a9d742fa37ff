//! Proof that a revocation happened: each carried-out task is checked against the first
//! successful sync of its source that started after the change. Gone: `verified`, with the
//! sync run that proved it. Still there: `still_present` (an alert; checked again at each
//! later sync). A verified access that a later sync shows again within
//! `regrant_window_days`: `regranted` (an alert). A manual task IT has not closed yet is
//! verified too once a sync shows the access gone. Each change of state commits with its
//! event, naming the sync run.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::as_of;
use crate::config::{Config, RemediationMode};
use crate::db::schema::{grant_versions, remediation_tasks, review_items};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::directory::snapshot::{SyncRun, current_sync_run};
use crate::error::Result;
use crate::ledger::{EventBatch, EventKind};
use crate::remediation::tasks::{
    TASK_EXECUTED, TASK_PENDING, TASK_REGRANTED, TASK_STILL_PRESENT, TASK_VERIFIED, Task,
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
    let manual_open = remediation_tasks::state
        .eq(TASK_PENDING)
        .and(remediation_tasks::mode.eq(RemediationMode::Manual.as_str()))
        .and(remediation_tasks::created_at.lt(started));
    let recently_gone = remediation_tasks::state
        .eq(TASK_VERIFIED)
        .and(remediation_tasks::verified_at.ge(watched_since))
        .and(remediation_tasks::verified_at.lt(started));
    let rows: Vec<(Task, (String, String))> = remediation_tasks::table
        .inner_join(review_items::table)
        .filter(remediation_tasks::source.eq(source))
        .filter(carried_out.or(manual_open).or(recently_gone))
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
        let row = remediation_tasks::table.find(&task.id);
        let proof = json!({
            "task": task.id,
            "item": task.item_id,
            "sync_run": run.id,
            "sync_seq": run.seq,
        });
        let change = match (task.state.as_str(), present) {
            (TASK_VERIFIED, true) => Some((TASK_REGRANTED, EventKind::RemediationRegranted)),
            (TASK_VERIFIED, false) | (TASK_STILL_PRESENT, true) | (TASK_PENDING, true) => None,
            (TASK_EXECUTED, true) => Some((TASK_STILL_PRESENT, EventKind::RemediationStillPresent)),
            (_, false) => Some((TASK_VERIFIED, EventKind::RemediationVerified)),
            _ => None,
        };
        match change {
            None => {
                diesel::update(row)
                    .set(remediation_tasks::checked_sync_run_id.eq(Some(&run.id)))
                    .execute(conn)?;
            }
            Some((state, kind)) => {
                diesel::update(row)
                    .set((
                        remediation_tasks::state.eq(state),
                        remediation_tasks::checked_sync_run_id.eq(Some(&run.id)),
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                if state == TASK_VERIFIED {
                    diesel::update(row)
                        .set((
                            remediation_tasks::verified_at.eq(Some(at)),
                            remediation_tasks::verified_sync_run_id.eq(Some(&run.id)),
                        ))
                        .execute(conn)?;
                    report.verified += 1;
                } else if state == TASK_STILL_PRESENT {
                    report.still_present += 1;
                } else {
                    report.regranted += 1;
                }
                if state != TASK_VERIFIED {
                    tracing::warn!(task = %task.id, state, sync_run = %run.id, "remediation alert");
                }
                events.push(kind, Some(&task.campaign_id), proof);
            }
        }
    }
    events.append_all(conn, now, actor)?;
    Ok(rows.len())
}
