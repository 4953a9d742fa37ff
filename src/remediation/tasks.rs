//! Remediation tasks: one per revoked review item, made from the state of the items (a
//! reviewer's revoke once the campaign closes, or at once when the source says
//! `when = "immediately"`; the no-response policy's revoke at close; an approval whose end
//! date came). Making them is a sweep that any instance may run at any time: the UNIQUE index
//! on the item makes each task exactly once, and each batch commits with its
//! `remediation.tasks_created` events. Also here: listing tasks, IT closing a manual task with
//! its ticket, and an admin asking for a task to be tried again.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::{exists, not};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::campaigns::model::{ITEM_NO_RESPONSE, ITEM_REVOKED, STATE_CLOSED, STATE_OPEN};
use crate::config::{Config, RemediationMode, RemediationWhen};
use crate::db::schema::{campaigns, remediation_tasks, review_items};
use crate::db::time::to_db;
use crate::db::{DbConnection, new_id, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind, append};
use crate::notify::outbox::enqueue_remediation_notice;

pub const KIND_REVOKE: &str = "revoke";

/// Waiting to be carried out (or, for a manual task, for IT).
pub const TASK_PENDING: &str = "pending";
/// Carried out; waiting for a sync to prove it.
pub const TASK_EXECUTED: &str = "executed";
/// A sync after the change no longer shows the access.
pub const TASK_VERIFIED: &str = "verified";
/// Alert: a sync after the change still shows the access.
pub const TASK_STILL_PRESENT: &str = "still_present";
/// Alert: the access came back within the configured window after it was proved gone.
pub const TASK_REGRANTED: &str = "regranted";
/// The change failed; retried with backoff up to `max_attempts`.
pub const TASK_FAILED: &str = "failed";
/// Not carried out: the group is protected, or attest cannot make this change.
pub const TASK_BLOCKED: &str = "blocked";
/// Not carried out: the access is no longer revoked (the decision changed, or a later review
/// approved it).
pub const TASK_CANCELLED: &str = "cancelled";

pub const TASK_STATES: [&str; 8] = [
    TASK_PENDING,
    TASK_EXECUTED,
    TASK_VERIFIED,
    TASK_STILL_PRESENT,
    TASK_REGRANTED,
    TASK_FAILED,
    TASK_BLOCKED,
    TASK_CANCELLED,
];

/// States in which a task is still to be carried out.
pub const OPEN_STATES: [&str; 3] = [TASK_PENDING, TASK_FAILED, TASK_BLOCKED];

/// Why the access is revoked.
pub const REASON_DECISION: &str = "decision";
pub const REASON_NO_RESPONSE: &str = "no_response";
pub const REASON_EXPIRED: &str = "expired";

/// Tasks made per transaction.
const CREATE_BATCH: i64 = 500;

/// One task as stored.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = remediation_tasks)]
pub struct Task {
    pub id: String,
    pub campaign_id: String,
    pub item_id: String,
    pub source: String,
    pub mode: String,
    pub reason: String,
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// JSON: what was done, or in a dry run would be done.
    pub action: Option<String>,
    pub planned_at: Option<NaiveDateTime>,
    pub executed_at: Option<NaiveDateTime>,
    pub next_attempt_at: Option<NaiveDateTime>,
    pub verified_at: Option<NaiveDateTime>,
    pub checked_sync_run_id: Option<String>,
    pub verified_sync_run_id: Option<String>,
    pub ticket: Option<String>,
    /// How many times an admin asked for the task to be tried again.
    pub generation: i64,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// A task with the access it removes, for lists and the console.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ListedTask {
    #[serde(flatten)]
    pub task: Task,
    pub person: String,
    pub group: String,
    pub via: Option<String>,
}

/// An item's person, group and `via`, as frozen in its campaign.
type AccessNames = (String, String, Option<String>);

/// The mode a source's revocations are carried out in (manual when not configured).
pub fn mode_of(config: &Config, source: &str) -> RemediationMode {
    config
        .sources
        .get(source)
        .and_then(|s| s.remediation())
        .map(|r| r.mode)
        .unwrap_or_default()
}

/// Makes the task of every revoked item that is due one and has none yet; returns how many
/// it made.
pub fn create_due(
    conn: &mut DbConnection,
    config: &Config,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<usize> {
    let immediate: Vec<&str> = config
        .sources
        .iter()
        .filter(|(_, s)| {
            s.remediation()
                .is_some_and(|r| r.when == RemediationWhen::Immediately)
        })
        .map(|(name, _)| name.as_str())
        .collect();
    let mut made = 0;
    loop {
        let batch = write_tx(conn, |conn| {
            let revoked = review_items::state.eq(ITEM_REVOKED).or(review_items::state
                .eq(ITEM_NO_RESPONSE)
                .and(review_items::no_response_outcome.eq("revoke")));
            let due = campaigns::state
                .eq(STATE_CLOSED)
                .or(review_items::expired_at.is_not_null())
                .or(campaigns::state
                    .eq(STATE_OPEN)
                    .and(campaigns::source.eq_any(&immediate)));
            let rows: Vec<(String, String, String, String, Option<NaiveDateTime>)> =
                review_items::table
                    .inner_join(campaigns::table)
                    .filter(revoked.and(due))
                    .filter(not(exists(
                        remediation_tasks::table
                            .filter(remediation_tasks::item_id.eq(review_items::id)),
                    )))
                    .order(review_items::id.asc())
                    .limit(CREATE_BATCH)
                    .select((
                        review_items::id,
                        review_items::campaign_id,
                        campaigns::source,
                        review_items::state,
                        review_items::expired_at,
                    ))
                    .load(conn)?;
            let mut by_campaign: BTreeMap<(String, String), Vec<serde_json::Value>> =
                BTreeMap::new();
            let mut inserted = 0;
            for (item, campaign, source, state, expired_at) in &rows {
                let reason = match (state.as_str(), expired_at) {
                    (_, Some(_)) => REASON_EXPIRED,
                    (ITEM_NO_RESPONSE, _) => REASON_NO_RESPONSE,
                    _ => REASON_DECISION,
                };
                let id = new_id();
                let mode = mode_of(config, source).as_str();
                if insert_task(conn, &id, item, campaign, source, mode, reason, now)? {
                    inserted += 1;
                    by_campaign
                        .entry((campaign.clone(), source.clone()))
                        .or_default()
                        .push(json!({ "task": id, "item": item, "reason": reason }));
                }
            }
            let mut events = EventBatch::default();
            for ((campaign, source), tasks) in by_campaign {
                // IT hears of the accesses it removes by hand.
                if let Some(remediation) = config.sources.get(&source).and_then(|s| s.remediation())
                    && remediation.mode == RemediationMode::Manual
                    && !remediation.mail_to.is_empty()
                {
                    enqueue_remediation_notice(
                        conn,
                        now,
                        &campaign,
                        &remediation.mail_to,
                        &mut events,
                    )?;
                }
                events.push(
                    EventKind::RemediationTasksCreated,
                    Some(&campaign),
                    json!({
                        "campaign": campaign,
                        "source": source,
                        "mode": mode_of(config, &source).as_str(),
                        "tasks": tasks,
                    }),
                );
            }
            events.append_all(conn, now, actor)?;
            Ok((rows.len(), inserted))
        })?;
        made += batch.1;
        if batch.0 < CREATE_BATCH as usize {
            return Ok(made);
        }
    }
}

/// Inserts one task unless its item has one (another instance was first); returns whether it
/// inserted.
#[allow(clippy::too_many_arguments)]
fn insert_task(
    conn: &mut DbConnection,
    id: &str,
    item: &str,
    campaign: &str,
    source: &str,
    mode: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let row = (
        remediation_tasks::id.eq(id),
        remediation_tasks::campaign_id.eq(campaign),
        remediation_tasks::item_id.eq(item),
        remediation_tasks::kind.eq(KIND_REVOKE),
        remediation_tasks::state.eq(TASK_PENDING),
        remediation_tasks::source.eq(source),
        remediation_tasks::mode.eq(mode),
        remediation_tasks::reason.eq(reason),
        remediation_tasks::created_at.eq(to_db(now)),
        remediation_tasks::updated_at.eq(to_db(now)),
    );
    let added = match conn {
        DbConnection::Postgres(pg) => diesel::insert_into(remediation_tasks::table)
            .values(row)
            .on_conflict(remediation_tasks::item_id)
            .do_nothing()
            .execute(pg)?,
        DbConnection::Sqlite(sqlite) => diesel::insert_into(remediation_tasks::table)
            .values(row)
            .on_conflict(remediation_tasks::item_id)
            .do_nothing()
            .execute(sqlite)?,
    };
    Ok(added == 1)
}

pub fn task(conn: &mut DbConnection, id: &str) -> Result<Task> {
    remediation_tasks::table
        .find(id)
        .select(Task::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("remediation task {id} not found")))
}

/// Tasks, oldest first, optionally of one state and one campaign; at most `limit`.
pub fn list(
    conn: &mut DbConnection,
    state: Option<&str>,
    campaign: Option<&str>,
    limit: i64,
) -> Result<Vec<ListedTask>> {
    if let Some(state) = state
        && !TASK_STATES.contains(&state)
    {
        return Err(Error::BadRequest(format!(
            "no task state `{state}`: use one of {}",
            TASK_STATES.join(", ")
        )));
    }
    let mut query = remediation_tasks::table
        .inner_join(review_items::table)
        .order((
            remediation_tasks::created_at.asc(),
            remediation_tasks::id.asc(),
        ))
        .limit(limit)
        .into_boxed();
    if let Some(state) = state {
        query = query.filter(remediation_tasks::state.eq(state.to_string()));
    }
    if let Some(campaign) = campaign {
        query = query.filter(remediation_tasks::campaign_id.eq(campaign.to_string()));
    }
    let rows: Vec<(Task, AccessNames)> = query
        .select((
            Task::as_select(),
            (
                review_items::identity_login,
                review_items::entitlement_name,
                review_items::via,
            ),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(task, (person, group, via))| ListedTask {
            task,
            person,
            group,
            via,
        })
        .collect())
}

/// How many tasks are in each state.
pub fn counts_by_state(conn: &mut DbConnection) -> Result<Vec<(String, i64)>> {
    Ok(remediation_tasks::table
        .group_by(remediation_tasks::state)
        .select((remediation_tasks::state, diesel::dsl::count_star()))
        .order(remediation_tasks::state.asc())
        .load(conn)?)
}

/// IT carried out a task by hand (a manual one, or one attest could not do): it is executed, with the ticket that tracks the change, and
/// the next sync proves it.
pub fn mark_done(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    ticket: &str,
    actor: &str,
) -> Result<Task> {
    let ticket = ticket.trim();
    if ticket.is_empty() || ticket.len() > 200 {
        return Err(Error::BadRequest(
            "give the ticket reference that tracks the change (1 to 200 characters)".into(),
        ));
    }
    write_tx(conn, |conn| {
        let found = task(conn, id)?;
        // Whatever the mode: a blocked task is removed by hand, and a source may have moved
        // from an automatic mode to manual.
        let updated = diesel::update(
            remediation_tasks::table
                .find(id)
                .filter(remediation_tasks::state.eq_any(OPEN_STATES))
                .filter(
                    remediation_tasks::locked_until
                        .is_null()
                        .or(remediation_tasks::locked_until.lt(to_db(now))),
                ),
        )
        .set((
            remediation_tasks::state.eq(TASK_EXECUTED),
            remediation_tasks::ticket.eq(Some(ticket)),
            remediation_tasks::executed_at.eq(Some(to_db(now))),
            remediation_tasks::next_attempt_at.eq(None::<NaiveDateTime>),
            remediation_tasks::updated_at.eq(to_db(now)),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Err(Error::Conflict(format!(
                "task {id} is {}, not pending, failed or blocked (or attest is carrying it out \
                 right now): nothing to close",
                found.state
            )));
        }
        append(
            conn,
            now,
            EventKind::RemediationDone,
            actor,
            Some(&found.campaign_id),
            &json!({ "task": id, "item": found.item_id, "ticket": ticket }),
        )?;
        task(conn, id)
    })
}

/// An admin asks for a failed, blocked or still-present task to be carried out again (after
/// fixing the directory's ACL, unprotecting a group, or finding the other path).
pub fn retry(conn: &mut DbConnection, now: DateTime<Utc>, id: &str, actor: &str) -> Result<Task> {
    write_tx(conn, |conn| {
        let found = task(conn, id)?;
        let updated = diesel::update(remediation_tasks::table.find(id).filter(
            remediation_tasks::state.eq_any([
                TASK_FAILED,
                TASK_BLOCKED,
                TASK_STILL_PRESENT,
                TASK_REGRANTED,
            ]),
        ))
        .set((
            remediation_tasks::state.eq(TASK_PENDING),
            remediation_tasks::attempts.eq(0),
            remediation_tasks::generation.eq(remediation_tasks::generation + 1),
            remediation_tasks::next_attempt_at.eq(None::<NaiveDateTime>),
            remediation_tasks::planned_at.eq(None::<NaiveDateTime>),
            remediation_tasks::updated_at.eq(to_db(now)),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Err(Error::Conflict(format!(
                "task {id} is {}: only failed, blocked, still-present or re-granted tasks are \
                 tried again",
                found.state
            )));
        }
        append(
            conn,
            now,
            EventKind::RemediationRetried,
            actor,
            Some(&found.campaign_id),
            &json!({ "task": id, "item": found.item_id, "was": found.state }),
        )?;
        task(conn, id)
    })
}
