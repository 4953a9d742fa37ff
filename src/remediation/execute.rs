//! Carrying out due tasks, source by source, in the source's configured mode. A task is
//! claimed just before it is acted on, under a lease that also names this claim (the lease's
//! instant), so that two instances never act on one task and an outcome is recorded only by
//! the claim that acted. Before acting, the item is read again: a revocation whose decision
//! changed, or that a later review approved, is cancelled. The outcome is written with its
//! event in one transaction: executed (with the change made), failed (the directory's or the
//! receiver's refusal, retried with exponential backoff up to `max_attempts`), blocked (a
//! protected group, a membership attest cannot remove) or cancelled. A source that cannot be
//! reached stops its round without charging any task an attempt. In a dry run nothing is
//! written anywhere but the task's plan.

use std::collections::HashSet;

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::{Config, RemediationConfig, RemediationMode, SourceConfig};
use crate::db::DbConnection;
use crate::db::schema::remediation_tasks;
use crate::db::time::to_db;
use crate::directory::effective::VIA_SEPARATOR;
use crate::directory::snapshot::names_group;
use crate::error::Result;
use crate::remediation::ActionError;
use crate::remediation::ldap_write::{LdapWriter, removal_action};
use crate::remediation::outcome::{Outcome, record, record_plan, release};
use crate::remediation::targets::{
    FrozenItem, Removal, Target, frozen_item, no_longer_revoked, resolve,
};
use crate::remediation::tasks::{TASK_FAILED, TASK_PENDING, Task, task};
use crate::remediation::webhook::WebhookSender;

/// Tasks one round carries out per source, at most (the next round takes the rest).
const ROUND_TASKS: usize = 200;
/// A source's round stops after this long (the scheduler has other work on its tick).
const ROUND_SECONDS: u64 = 120;
/// How long a claimed task is reserved for the instance carrying it out.
const LEASE_MINUTES: i64 = 10;

/// What one run did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ExecutionReport {
    pub executed: usize,
    pub failed: usize,
    pub blocked: usize,
    pub cancelled: usize,
    /// Dry runs: tasks planned, nothing written.
    pub planned: usize,
    /// Sources that could not be reached this round (their tasks wait).
    pub unavailable: usize,
}

/// Carries out the due tasks of every source with an automatic mode (`ldap`, `webhook`).
/// `replan` plans dry-run tasks again even when they were planned before.
pub fn run_due(
    conn: &mut DbConnection,
    config: &Config,
    clock: &dyn Clock,
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
        let mut runner = Runner::new(name, source, remediation);
        let started = std::time::Instant::now();
        let mut seen = HashSet::new();
        while seen.len() < ROUND_TASKS && started.elapsed().as_secs() < ROUND_SECONDS {
            let Some((task, lease)) =
                claim_next(conn, name, remediation, clock.now(), replan, &seen)?
            else {
                break;
            };
            seen.insert(task.id.clone());
            let item = frozen_item(conn, &task.item_id)?;
            let outcome = match no_longer_revoked(conn, &item)? {
                Some(why) => Ok(Outcome::Cancelled(why)),
                None => runner.carry_out(conn, &task, &item, clock),
            };
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(ActionError::Unavailable(error)) => {
                    tracing::error!(source = %name, error = %error, "remediation: source unavailable");
                    release(conn, &task, lease, &error)?;
                    report.unavailable += 1;
                    break;
                }
                Err(ActionError::Refused(error)) => Outcome::Failed(error),
            };
            if remediation.dry_run && !matches!(outcome, Outcome::Cancelled(_)) {
                record_plan(conn, &task, lease, outcome, clock.now())?;
                report.planned += 1;
                continue;
            }
            let counted = match &outcome {
                Outcome::Executed(_) => &mut report.executed,
                Outcome::Failed(_) => &mut report.failed,
                Outcome::Blocked(_) => &mut report.blocked,
                Outcome::Cancelled(_) => &mut report.cancelled,
            };
            *counted += 1;
            record(conn, &task, lease, remediation, outcome, clock.now(), actor)?;
        }
        runner.close();
    }
    Ok(report)
}

/// Tasks due at `at`: pending, or failed with their next attempt come (one that gave up has
/// none), and claimed by nobody.
macro_rules! due_tasks {
    ($at:expr) => {
        remediation_tasks::table
            .filter(
                remediation_tasks::state
                    .eq(TASK_PENDING)
                    .or(remediation_tasks::state
                        .eq(TASK_FAILED)
                        .and(remediation_tasks::next_attempt_at.le($at))),
            )
            .filter(
                remediation_tasks::locked_until
                    .is_null()
                    .or(remediation_tasks::locked_until.lt($at)),
            )
    };
}

/// Reserves the source's next due task for this run; returns it, read again under the
/// claim, with the lease that names the claim.
fn claim_next(
    conn: &mut DbConnection,
    source: &str,
    remediation: &RemediationConfig,
    now: DateTime<Utc>,
    replan: bool,
    seen: &HashSet<String>,
) -> Result<Option<(Task, NaiveDateTime)>> {
    let at = to_db(now);
    let due = || {
        let mut query = due_tasks!(at)
            .filter(remediation_tasks::source.eq(source))
            .into_boxed();
        if remediation.dry_run && !replan {
            query = query.filter(remediation_tasks::planned_at.is_null());
        }
        query
    };
    loop {
        let next: Option<String> = due()
            .filter(remediation_tasks::id.ne_all(seen.iter().cloned().collect::<Vec<_>>()))
            .order((
                remediation_tasks::created_at.asc(),
                remediation_tasks::id.asc(),
            ))
            .select(remediation_tasks::id)
            .first(conn)
            .optional()?;
        let Some(id) = next else {
            return Ok(None);
        };
        // Unique per claim: the instant of this claim's lease.
        let lease = to_db(now + Duration::minutes(LEASE_MINUTES))
            + Duration::microseconds(rand::random_range(0..1_000_000));
        // The same conditions again, in the UPDATE: what another instance did since counts.
        let target = due_tasks!(at).filter(remediation_tasks::id.eq(&id));
        let claim = remediation_tasks::locked_until.eq(Some(lease));
        let taken = if remediation.dry_run && !replan {
            diesel::update(target.filter(remediation_tasks::planned_at.is_null()))
                .set(claim)
                .execute(conn)?
        } else {
            diesel::update(target).set(claim).execute(conn)?
        };
        if taken == 1 {
            return Ok(Some((task(conn, &id)?, lease)));
        }
        // Another instance took it between the two statements: look again.
    }
}

/// Carries out tasks of one source, opening its connection on first use.
struct Runner<'a> {
    source_name: &'a str,
    source: &'a SourceConfig,
    remediation: &'a RemediationConfig,
    ldap: Option<LdapWriter<'a>>,
    webhook: Option<WebhookSender>,
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
        clock: &dyn Clock,
    ) -> std::result::Result<Outcome, ActionError> {
        let target = match resolve(conn, self.source_name, item) {
            Ok(target) => target,
            Err(e) => return Ok(Outcome::Failed(e.to_string())),
        };
        let removal = match target {
            Target::AlreadyAbsent { why } => {
                return Ok(Outcome::Executed(
                    json!({ "kind": "nothing_to_remove", "why": why }),
                ));
            }
            Target::Remove(removal) => *removal,
        };
        if let Some(why) = self.protection(&removal) {
            return Ok(Outcome::Blocked(why));
        }
        match self.remediation.mode {
            RemediationMode::Ldap => self.remove_in_ldap(&removal),
            RemediationMode::Webhook => self.send_webhook(task, item, &removal, clock),
            RemediationMode::Manual => Ok(Outcome::Failed("manual tasks are closed by IT".into())),
        }
    }

    fn remove_in_ldap(&mut self, removal: &Removal) -> std::result::Result<Outcome, ActionError> {
        let Removal {
            person,
            holder,
            reviewed,
            via,
        } = removal;
        let dry_run = self.remediation.dry_run;
        let writer = self.ldap_writer()?;
        let values = writer.values_naming(holder, person)?;
        if values.is_empty() {
            if holder.gid_number.is_some() && holder.gid_number == person.gid_number {
                return Ok(Outcome::Blocked(format!(
                    "{} is the person's primary group (gidNumber): attest does not change a \
                     person's primary group; change it by hand",
                    holder.name
                )));
            }
            return Ok(Outcome::Executed(json!({
                "kind": "nothing_to_remove",
                "why": format!("the directory no longer names the person in {}", holder.dn),
            })));
        }
        let action = removal_action(holder, reviewed, via.as_deref(), &values, dry_run);
        if !dry_run {
            writer.remove(holder, &values)?;
        }
        Ok(Outcome::Executed(action))
    }

    fn send_webhook(
        &mut self,
        task: &Task,
        item: &FrozenItem,
        removal: &Removal,
        clock: &dyn Clock,
    ) -> std::result::Result<Outcome, ActionError> {
        if self.remediation.dry_run {
            return Ok(Outcome::Executed(json!({
                "kind": "webhook",
                "dry_run": true,
                "remove_from": removal.holder.name,
            })));
        }
        let body = webhook_body(task, item, removal);
        let key = format!("{}:{}", task.id, task.generation);
        let sender = self.webhook_sender()?;
        Ok(Outcome::Executed(sender.deliver(
            &key,
            &body,
            clock.now().timestamp(),
        )?))
    }

    /// Why the removal is blocked, when a group on its way is protected: the group written,
    /// the reviewed group, and every group between them.
    fn protection(&self, removal: &Removal) -> Option<String> {
        let protected = |dn_norm: &str, name: &str| {
            self.remediation
                .protected_groups
                .iter()
                .find(|wanted| names_group(wanted, dn_norm, name))
                .cloned()
        };
        let chain = removal.via.as_deref().unwrap_or_default();
        let between = chain
            .split(VIA_SEPARATOR)
            .filter(|name| !name.is_empty())
            .find_map(|name| protected("", name).map(|rule| (name.to_string(), rule)));
        let found = protected(&removal.holder.dn_norm, &removal.holder.name)
            .map(|rule| (removal.holder.name.clone(), rule))
            .or_else(|| {
                protected(&removal.reviewed.dn_norm, &removal.reviewed.name)
                    .map(|rule| (removal.reviewed.name.clone(), rule))
            })
            .or(between)?;
        Some(format!(
            "{} is protected (\"{}\" in sources.{}.remediation.protected_groups): attest never \
             writes access to it; remove this access by hand",
            found.0, found.1, self.source_name
        ))
    }

    fn ldap_writer(&mut self) -> std::result::Result<&mut LdapWriter<'a>, ActionError> {
        let SourceConfig::Ldap(ldap) = self.source else {
            return Err(ActionError::Refused(format!(
                "source {} is not an LDAP directory: mode = \"ldap\" cannot apply",
                self.source_name
            )));
        };
        if self.ldap.is_none() {
            self.ldap = Some(LdapWriter::open(ldap, self.remediation)?);
        }
        self.ldap
            .as_mut()
            .ok_or_else(|| ActionError::Unavailable("no connection".into()))
    }

    fn webhook_sender(&mut self) -> std::result::Result<&WebhookSender, ActionError> {
        if self.webhook.is_none() {
            let sender = WebhookSender::new(self.remediation)
                .map_err(|e| ActionError::Unavailable(e.to_string()))?;
            self.webhook = Some(sender);
        }
        self.webhook
            .as_ref()
            .ok_or_else(|| ActionError::Unavailable("no webhook client".into()))
    }

    fn close(self) {
        if let Some(writer) = self.ldap {
            writer.close();
        }
    }
}

/// The JSON a webhook receiver gets for a task.
fn webhook_body(task: &Task, item: &FrozenItem, removal: &Removal) -> Value {
    let (holder, reviewed) = (&removal.holder, &removal.reviewed);
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
        "via": removal.via,
        "remove_from": { "external_id": holder.external_id, "name": holder.name, "dn": holder.dn },
    })
}
