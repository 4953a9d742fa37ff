//! Carrying out due tasks, source by source, in the source's configured mode. Each task is
//! claimed with a short lease first (several instances never both act on one), then carried
//! out, and its outcome is written with its event in one transaction: executed (with the
//! change made), failed (with the directory's or the receiver's error, retried with
//! exponential backoff up to `max_attempts`), or blocked (a protected group, a membership
//! attest cannot remove). In a dry run nothing is written anywhere but the task's plan.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use crate::config::{Config, RemediationConfig, RemediationMode, SourceConfig};
use crate::db::schema::remediation_tasks;
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::directory::snapshot::names_group;
use crate::error::Result;
use crate::ledger::{EventKind, append};
use crate::remediation::ldap_write::{LdapWriter, removal_action};
use crate::remediation::targets::{FrozenItem, Group, Removal, Target, frozen_item, resolve};
use crate::remediation::tasks::{TASK_BLOCKED, TASK_EXECUTED, TASK_FAILED, TASK_PENDING, Task};
use crate::remediation::webhook::WebhookSender;

/// Tasks one run claims per source, at most (the next run takes the rest).
const RUN_LIMIT: i64 = 1_000;
/// How long a claimed task is reserved for the instance carrying it out.
const LEASE_MINUTES: i64 = 10;

/// What one run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ExecutionReport {
    pub executed: usize,
    pub failed: usize,
    pub blocked: usize,
    /// Dry runs: tasks planned, nothing written.
    pub planned: usize,
}

enum Outcome {
    Executed(Value),
    Failed(String),
    Blocked(String),
}

/// Carries out the due tasks of every source with an automatic mode (`ldap`, `webhook`).
/// `replan` plans dry-run tasks again even when they were planned before.
pub fn run_due(
    conn: &mut DbConnection,
    config: &Config,
    now: DateTime<Utc>,
    actor: &str,
    replan: bool,
) -> Result<ExecutionReport> {
    let mut report = ExecutionReport::default();
    for (name, source) in &config.sources {
        let Some(remediation) = source.remediation() else {
            continue;
        };
        if remediation.mode == RemediationMode::Manual {
            continue;
        }
        let claimed = claim_due(conn, name, remediation, now, replan)?;
        if claimed.is_empty() {
            continue;
        }
        let mut runner = Runner::new(name, source, remediation);
        for task in claimed {
            let outcome = match frozen_item(conn, &task.item_id) {
                Ok(item) => runner.carry_out(conn, &task, &item, now),
                Err(e) => Outcome::Failed(e.to_string()),
            };
            if remediation.dry_run {
                record_plan(conn, &task, outcome, now)?;
                report.planned += 1;
                continue;
            }
            match &outcome {
                Outcome::Executed(_) => report.executed += 1,
                Outcome::Failed(_) => report.failed += 1,
                Outcome::Blocked(_) => report.blocked += 1,
            }
            record(conn, &task, remediation, outcome, now, actor)?;
        }
        runner.close();
    }
    Ok(report)
}

/// Reserves the source's due tasks for this run.
fn claim_due(
    conn: &mut DbConnection,
    source: &str,
    remediation: &RemediationConfig,
    now: DateTime<Utc>,
    replan: bool,
) -> Result<Vec<Task>> {
    let at = to_db(now);
    let mut query = remediation_tasks::table
        .filter(remediation_tasks::source.eq(source))
        .filter(remediation_tasks::state.eq_any([TASK_PENDING, TASK_FAILED]))
        .filter(
            remediation_tasks::next_attempt_at
                .is_null()
                .or(remediation_tasks::next_attempt_at.le(at)),
        )
        .filter(
            remediation_tasks::locked_until
                .is_null()
                .or(remediation_tasks::locked_until.lt(at)),
        )
        .order((
            remediation_tasks::created_at.asc(),
            remediation_tasks::id.asc(),
        ))
        .limit(RUN_LIMIT)
        .into_boxed();
    // A failed task waits for its next attempt; one that gave up has none.
    query = query.filter(
        remediation_tasks::state
            .eq(TASK_PENDING)
            .or(remediation_tasks::next_attempt_at.is_not_null()),
    );
    if remediation.dry_run && !replan {
        query = query.filter(remediation_tasks::planned_at.is_null());
    }
    let due: Vec<Task> = query.select(Task::as_select()).load(conn)?;
    let lease = to_db(now + Duration::minutes(LEASE_MINUTES));
    let mut claimed = Vec::with_capacity(due.len());
    for task in due {
        let taken = diesel::update(
            remediation_tasks::table.find(&task.id).filter(
                remediation_tasks::locked_until
                    .is_null()
                    .or(remediation_tasks::locked_until.lt(at)),
            ),
        )
        .set(remediation_tasks::locked_until.eq(Some(lease)))
        .execute(conn)?;
        if taken == 1 {
            claimed.push(task);
        }
    }
    Ok(claimed)
}

/// Carries out tasks of one source, opening its connection on first use.
struct Runner<'a> {
    source_name: &'a str,
    source: &'a SourceConfig,
    remediation: &'a RemediationConfig,
    ldap: Option<std::result::Result<LdapWriter<'a>, String>>,
    webhook: Option<std::result::Result<WebhookSender, String>>,
}

impl<'a> Runner<'a> {
    fn new(
        source_name: &'a str,
        source: &'a SourceConfig,
        remediation: &'a RemediationConfig,
    ) -> Runner<'a> {
        Runner {
            source_name,
            source,
            remediation,
            ldap: None,
            webhook: None,
        }
    }

    fn carry_out(
        &mut self,
        conn: &mut DbConnection,
        task: &Task,
        item: &FrozenItem,
        now: DateTime<Utc>,
    ) -> Outcome {
        let target = match resolve(conn, self.source_name, item) {
            Ok(target) => target,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        let Removal {
            person,
            holder,
            reviewed,
            via,
        } = match target {
            Target::AlreadyAbsent { why } => {
                return Outcome::Executed(json!({ "kind": "nothing_to_remove", "why": why }));
            }
            Target::Remove(removal) => *removal,
        };
        if let Some(rule) = self.protection(&holder) {
            return Outcome::Blocked(format!(
                "{} is protected ({rule} in sources.{}.remediation.protected_groups): \
                 attest never writes to it; remove this access by hand",
                holder.name, self.source_name
            ));
        }
        let dry_run = self.remediation.dry_run;
        match self.remediation.mode {
            RemediationMode::Ldap => {
                let writer = match self.ldap_writer() {
                    Ok(writer) => writer,
                    Err(message) => return Outcome::Failed(message),
                };
                let values = match writer.values_naming(&holder, &person) {
                    Ok(values) => values,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                if values.is_empty() {
                    if holder.gid_number.is_some() && holder.gid_number == person.gid_number {
                        return Outcome::Blocked(format!(
                            "{} is the person's primary group (gidNumber): attest does not \
                             change a person's primary group; change it by hand",
                            holder.name
                        ));
                    }
                    return Outcome::Executed(json!({
                        "kind": "nothing_to_remove",
                        "why": format!("the directory no longer names the person in {}", holder.dn),
                    }));
                }
                let action = removal_action(&holder, &reviewed, via.as_deref(), &values, dry_run);
                if dry_run {
                    return Outcome::Executed(action);
                }
                match writer.remove(&holder, &values) {
                    Ok(()) => Outcome::Executed(action),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            RemediationMode::Webhook => {
                let body = webhook_body(task, item, &holder, &reviewed, via.as_deref());
                if dry_run {
                    return Outcome::Executed(json!({ "kind": "webhook", "would_send": body }));
                }
                let sender = match self.webhook_sender() {
                    Ok(sender) => sender,
                    Err(message) => return Outcome::Failed(message),
                };
                match sender.deliver(&task.id, &body, now.timestamp()) {
                    Ok(action) => Outcome::Executed(action),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
            RemediationMode::Manual => Outcome::Failed("manual tasks are closed by IT".into()),
        }
    }

    /// The protected-groups entry that covers `group`, if any.
    fn protection(&self, group: &Group) -> Option<&'a str> {
        self.remediation
            .protected_groups
            .iter()
            .find(|wanted| names_group(wanted, &group.dn_norm, &group.name))
            .map(String::as_str)
    }

    fn ldap_writer(&mut self) -> std::result::Result<&mut LdapWriter<'a>, String> {
        let SourceConfig::Ldap(ldap) = self.source else {
            return Err(format!(
                "source {} is not an LDAP directory: mode = \"ldap\" cannot apply",
                self.source_name
            ));
        };
        let remediation = self.remediation;
        let opened = self
            .ldap
            .get_or_insert_with(|| LdapWriter::open(ldap, remediation).map_err(|e| e.to_string()));
        opened.as_mut().map_err(|message| message.clone())
    }

    fn webhook_sender(&mut self) -> std::result::Result<&WebhookSender, String> {
        let remediation = self.remediation;
        let made = self
            .webhook
            .get_or_insert_with(|| WebhookSender::new(remediation).map_err(|e| e.to_string()));
        made.as_ref().map_err(|message| message.clone())
    }

    fn close(self) {
        if let Some(Ok(writer)) = self.ldap {
            writer.close();
        }
    }
}

/// The JSON a webhook receives for a task.
fn webhook_body(
    task: &Task,
    item: &FrozenItem,
    holder: &Group,
    reviewed: &Group,
    via: Option<&str>,
) -> Value {
    json!({
        "task": task.id,
        "kind": "revoke",
        "campaign": task.campaign_id,
        "item": task.item_id,
        "source": task.source,
        "reason": task.reason,
        "person": {
            "external_id": item.identity_external_id,
            "login": item.identity_login,
            "email": item.identity_email,
        },
        "group": { "external_id": reviewed.external_id, "name": reviewed.name, "dn": reviewed.dn },
        "via": via,
        "remove_from": { "external_id": holder.external_id, "name": holder.name, "dn": holder.dn },
    })
}

/// A dry run keeps the task as it is and records what it would have done.
fn record_plan(
    conn: &mut DbConnection,
    task: &Task,
    outcome: Outcome,
    now: DateTime<Utc>,
) -> Result<()> {
    let plan = match outcome {
        Outcome::Executed(action) => action,
        Outcome::Failed(error) => json!({ "kind": "would_fail", "error": error }),
        Outcome::Blocked(why) => json!({ "kind": "would_block", "why": why }),
    };
    diesel::update(remediation_tasks::table.find(&task.id))
        .set((
            remediation_tasks::action.eq(Some(plan.to_string())),
            remediation_tasks::planned_at.eq(Some(to_db(now))),
            remediation_tasks::locked_until.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    Ok(())
}

/// Writes a task's outcome and its event together.
fn record(
    conn: &mut DbConnection,
    task: &Task,
    remediation: &RemediationConfig,
    outcome: Outcome,
    now: DateTime<Utc>,
    actor: &str,
) -> Result<()> {
    let at = to_db(now);
    let attempts = task.attempts + 1;
    let mode = remediation.mode.as_str();
    write_tx(conn, |conn| {
        let open = remediation_tasks::table
            .find(&task.id)
            .filter(remediation_tasks::state.eq_any([TASK_PENDING, TASK_FAILED]));
        let (updated, kind, payload) = match &outcome {
            Outcome::Executed(action) => {
                let updated = diesel::update(open)
                    .set((
                        remediation_tasks::state.eq(TASK_EXECUTED),
                        remediation_tasks::mode.eq(mode),
                        remediation_tasks::action.eq(Some(action.to_string())),
                        remediation_tasks::executed_at.eq(Some(at)),
                        remediation_tasks::attempts.eq(attempts),
                        remediation_tasks::last_error.eq(None::<String>),
                        remediation_tasks::next_attempt_at.eq(None::<NaiveDateTime>),
                        remediation_tasks::locked_until.eq(None::<NaiveDateTime>),
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                (
                    updated,
                    EventKind::RemediationExecuted,
                    json!({ "task": task.id, "item": task.item_id, "mode": mode, "action": action }),
                )
            }
            Outcome::Failed(error) => {
                let next = (attempts < i64::from(remediation.max_attempts)).then(|| {
                    let wait = remediation.retry_base_seconds.max(1) as i64
                        * 2_i64.pow((attempts - 1).clamp(0, 16) as u32);
                    now + Duration::seconds(wait)
                });
                let updated = diesel::update(open)
                    .set((
                        remediation_tasks::state.eq(TASK_FAILED),
                        remediation_tasks::mode.eq(mode),
                        remediation_tasks::attempts.eq(attempts),
                        remediation_tasks::last_error.eq(Some(error.as_str())),
                        remediation_tasks::next_attempt_at.eq(next.map(to_db)),
                        remediation_tasks::locked_until.eq(None::<NaiveDateTime>),
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                (
                    updated,
                    EventKind::RemediationFailed,
                    json!({
                        "task": task.id,
                        "item": task.item_id,
                        "mode": mode,
                        "attempt": attempts,
                        "error": error,
                        "next_attempt_at": next.map(|n| n.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                    }),
                )
            }
            Outcome::Blocked(why) => {
                let updated = diesel::update(open)
                    .set((
                        remediation_tasks::state.eq(TASK_BLOCKED),
                        remediation_tasks::mode.eq(mode),
                        remediation_tasks::last_error.eq(Some(why.as_str())),
                        remediation_tasks::next_attempt_at.eq(None::<NaiveDateTime>),
                        remediation_tasks::locked_until.eq(None::<NaiveDateTime>),
                        remediation_tasks::updated_at.eq(at),
                    ))
                    .execute(conn)?;
                (
                    updated,
                    EventKind::RemediationBlocked,
                    json!({ "task": task.id, "item": task.item_id, "mode": mode, "why": why }),
                )
            }
        };
        // Another instance or an admin changed the task meanwhile: its outcome stands.
        if updated == 1 {
            append(conn, now, kind, actor, Some(&task.campaign_id), &payload)?;
        }
        Ok(())
    })
}
