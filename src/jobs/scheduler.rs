//! The scheduler inside `attest serve`: on every tick it works out, for each campaign
//! definition with a schedule, the period `now` falls in, and enqueues the opening of that
//! period's campaign when there is none (once: the job's dedupe key and the campaigns'
//! UNIQUE(definition, period_start) make any number of instances open it once). Then it runs
//! the due jobs: an opening syncs the source if the definition asks for it and opens the
//! campaign, marked late when the service was down across the period's start. Time comes from
//! the injected clock. Open campaigns' reminders, escalation and close are planned and run
//! the same way (`follow_up`), and so are approvals given until a date that has come
//! (`approval_expiry`). Each tick also runs a round of remediation
//! (`remediation::run_once`).

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::campaigns::model::STATE_GENERATING;
use crate::campaigns::schedule::Schedule;
use crate::campaigns::{Opening, open_campaign};
use crate::clock::SharedClock;
use crate::config::{Config, FirstPeriod};
use crate::db::schema::{campaign_schedules, campaigns};
use crate::db::time::{from_db, to_db};
use crate::db::{Database, DbConnection, write_tx};
use crate::directory::sync_source;
use crate::error::{Error, Result};
use crate::jobs::follow_up::{self, FollowUp};
use crate::jobs::queue::{self, Job};
use crate::jobs::{approval_expiry, checkpoints, sync_now};
use crate::remediation;

pub const KIND_OPEN_CAMPAIGN: &str = "open_campaign";

/// How long a claimed job is reserved for its worker (a sync and a generation fit in it).
const JOB_LEASE_MINUTES: i64 = 60;
/// Periods listed as missed in an opening, at most.
const MISSED_LISTED: usize = 12;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct OpenCampaign {
    definition: String,
    period_start: DateTime<Utc>,
}

#[derive(Clone)]
pub struct Scheduler {
    db: Database,
    clock: SharedClock,
    config: Arc<Config>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    pub fn new(db: Database, clock: SharedClock, config: Arc<Config>) -> Scheduler {
        Scheduler { db, clock, config }
    }

    /// Plans and runs what is due now, then a round of remediation (revocations carried out
    /// and proved), then signs a checkpoint of the event log if one is due (a failure there is logged; the jobs have run). Returns how many jobs ran.
    /// Blocking.
    pub fn tick(&self) -> Result<usize> {
        self.plan()?;
        let ran = self.run_due()?;
        let mut conn = self.db.conn()?;
        match remediation::run_once(
            &mut conn,
            &self.config,
            self.clock.as_ref(),
            "scheduler",
            false,
        ) {
            Ok(round) if round != remediation::RoundReport::default() => {
                tracing::info!(round = ?round, "remediation round");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, code = e.code(), "remediation round failed"),
        }
        if let Err(e) = checkpoints::sign_if_due(&mut conn, &self.config, self.clock.now()) {
            tracing::error!(error = %e, code = e.code(), "cannot sign a checkpoint of the event log");
        }
        Ok(ran)
    }

    /// Enqueues the opening of each definition's current period that has no campaign yet;
    /// returns how many it enqueued. Blocking.
    pub fn plan(&self) -> Result<usize> {
        let now = self.clock.now();
        let mut conn = self.db.conn()?;
        let mut enqueued = 0;
        for (name, definition) in &self.config.campaigns {
            let schedule = match Schedule::of(&format!("campaigns.{name}"), definition) {
                Ok(schedule) if !schedule.is_manual() => schedule,
                Ok(_) => continue,
                Err(problems) => {
                    tracing::error!(definition = %name, problems = ?problems, "schedule not usable");
                    continue;
                }
            };
            let first_seen = first_seen(&mut conn, name, now)?;
            let Some(period_start) = schedule.period_containing(now) else {
                continue;
            };
            if definition.first_period == FirstPeriod::Next && period_start < first_seen {
                continue;
            }
            if campaign_exists(&mut conn, name, period_start)? {
                continue;
            }
            let job = OpenCampaign {
                definition: name.clone(),
                period_start,
            };
            let key = format!(
                "{KIND_OPEN_CAMPAIGN}:{name}:{}",
                period_start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
            let added = write_tx(&mut conn, |conn| {
                queue::enqueue(
                    conn,
                    now,
                    KIND_OPEN_CAMPAIGN,
                    &key,
                    &serde_json::to_value(&job)?,
                )
            })?;
            if added {
                tracing::info!(definition = %name, period_start = %period_start, "campaign opening planned");
                enqueued += 1;
            }
        }
        enqueued += follow_up::plan(&mut conn, &self.config, now)?;
        enqueued += approval_expiry::plan(&mut conn, now)?;
        Ok(enqueued)
    }

    /// Runs due jobs until none is due; returns how many ran. Blocking.
    pub fn run_due(&self) -> Result<usize> {
        let mut ran = 0;
        loop {
            let now = self.clock.now();
            let claimed = {
                let mut conn = self.db.conn()?;
                queue::claim_due(&mut conn, now, Duration::minutes(JOB_LEASE_MINUTES))?
            };
            let Some(job) = claimed else {
                return Ok(ran);
            };
            ran += 1;
            let outcome = match job.kind.as_str() {
                KIND_OPEN_CAMPAIGN => self.open(&job),
                follow_up::KIND_CLOSE_CAMPAIGN => self.follow_up(&job, follow_up::close_at_due),
                follow_up::KIND_REMIND_REVIEWERS => self.follow_up(&job, follow_up::remind),
                follow_up::KIND_ESCALATE_ITEMS => self.follow_up(&job, follow_up::escalate),
                follow_up::KIND_CHECK_REVIEWERS => self.follow_up(&job, follow_up::check_reviewers),
                follow_up::KIND_ADVANCE_STAGE => self.follow_up(&job, follow_up::advance),
                sync_now::KIND_SYNC_SOURCE => {
                    sync_now::run(&self.db, self.clock.as_ref(), &self.config, &job)
                }
                approval_expiry::KIND_EXPIRE_APPROVALS => self
                    .db
                    .conn()
                    .and_then(|mut conn| approval_expiry::run(&mut conn, self.clock.now())),
                other => Err(Error::Internal(format!("unknown job kind `{other}`"))),
            };
            let mut conn = self.db.conn()?;
            match outcome {
                Ok(()) => {
                    queue::complete(&mut conn, &job)?;
                }
                Err(error) => {
                    let message = error.to_string();
                    tracing::warn!(job = %job.id, kind = %job.kind, error = %message, "job failed");
                    queue::fail(
                        &mut conn,
                        self.clock.now(),
                        &job,
                        &message,
                        self.config.scheduler.max_attempts,
                    )?;
                }
            }
        }
    }

    /// Opens one period's campaign: syncs first if asked, and marks it late when it comes
    /// well after the period began. A campaign that exists already (another instance was
    /// first) is success.
    fn open(&self, job: &Job) -> Result<()> {
        let task: OpenCampaign = serde_json::from_str(&job.payload)?;
        let definition = self.config.campaign_definition(&task.definition)?;
        {
            let mut conn = self.db.conn()?;
            if campaign_exists(&mut conn, &task.definition, task.period_start)? {
                return Ok(());
            }
        }
        if definition.sync_before {
            let source = self.config.source(&definition.source)?;
            sync_source(
                &self.db,
                self.clock.as_ref(),
                &definition.source,
                source,
                "scheduler",
            )?;
        }
        let now = self.clock.now();
        let late_after = Duration::minutes(self.config.scheduler.late_after_minutes as i64);
        let (missed, first_seen) = {
            let mut conn = self.db.conn()?;
            let first_seen = first_seen(&mut conn, &task.definition, now)?;
            let previous = last_period(&mut conn, &task.definition)?;
            let missed = match (previous, Schedule::of(&task.definition, definition)) {
                (Some(previous), Ok(schedule)) => schedule
                    .starts_between(previous, task.period_start, MISSED_LISTED + 1)
                    .into_iter()
                    .filter(|start| *start < task.period_start)
                    .collect(),
                _ => Vec::new(),
            };
            (missed, first_seen)
        };
        // Late: the scheduler knew the definition before the period began, yet opens it long
        // after (it was down). A first start in the middle of a period is not late.
        let opening = Opening {
            period_start: task.period_start,
            late: now - task.period_start > late_after && first_seen < task.period_start,
            missed_periods: missed,
        };
        match open_campaign(
            &self.db,
            self.clock.as_ref(),
            &self.config,
            &task.definition,
            &opening,
            "scheduler",
        ) {
            Ok(started) => {
                tracing::info!(
                    campaign = %started.campaign.id,
                    definition = %task.definition,
                    late = opening.late,
                    "scheduled campaign opened"
                );
                Ok(())
            }
            Err(Error::Conflict(_))
                if {
                    let mut conn = self.db.conn()?;
                    campaign_exists(&mut conn, &task.definition, task.period_start)?
                } =>
            {
                Ok(())
            }
            Err(other) => Err(other),
        }
    }

    /// Runs one follow-up job of an open campaign.
    fn follow_up(
        &self,
        job: &Job,
        run: fn(&mut DbConnection, &Config, DateTime<Utc>, &FollowUp) -> Result<()>,
    ) -> Result<()> {
        let task: FollowUp = serde_json::from_str(&job.payload)?;
        let mut conn = self.db.conn()?;
        run(&mut conn, &self.config, self.clock.now(), &task)
    }

    /// Ticks every `scheduler.tick_seconds` until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let interval = std::time::Duration::from_secs(self.config.scheduler.tick_seconds.max(1));
        loop {
            let scheduler = self.clone();
            match tokio::task::spawn_blocking(move || scheduler.tick()).await {
                Ok(Ok(ran)) => tracing::debug!(jobs = ran, "scheduler tick"),
                Ok(Err(e)) => tracing::error!(error = %e, code = e.code(), "scheduler tick failed"),
                Err(e) => tracing::error!(error = %e, "scheduler tick panicked"),
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// When the scheduler first saw `definition` (recorded on first sight).
fn first_seen(
    conn: &mut DbConnection,
    definition: &str,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    let row = (
        campaign_schedules::definition.eq(definition),
        campaign_schedules::first_seen_at.eq(to_db(now)),
    );
    write_tx(conn, |conn| {
        match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(campaign_schedules::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(pg)?,
            DbConnection::Sqlite(sqlite) => diesel::insert_into(campaign_schedules::table)
                .values(row)
                .on_conflict_do_nothing()
                .execute(sqlite)?,
        };
        Ok(())
    })?;
    let seen: chrono::NaiveDateTime = campaign_schedules::table
        .find(definition)
        .select(campaign_schedules::first_seen_at)
        .first(conn)?;
    Ok(from_db(seen))
}

fn campaign_exists(
    conn: &mut DbConnection,
    definition: &str,
    period_start: DateTime<Utc>,
) -> Result<bool> {
    // A campaign still generating does not count: its generator may have died, and the
    // opening then takes the period over.
    let count: i64 = campaigns::table
        .filter(campaigns::definition.eq(definition))
        .filter(campaigns::period_start.eq(to_db(period_start)))
        .filter(campaigns::state.ne(STATE_GENERATING))
        .count()
        .get_result(conn)?;
    Ok(count > 0)
}

/// The period of the definition's latest campaign, if any.
fn last_period(conn: &mut DbConnection, definition: &str) -> Result<Option<DateTime<Utc>>> {
    let latest: Option<chrono::NaiveDateTime> = campaigns::table
        .filter(campaigns::definition.eq(definition))
        .select(diesel::dsl::max(campaigns::period_start))
        .first(conn)?;
    Ok(latest.map(from_db))
}

/// The next time each scheduled definition opens a campaign by itself, for `campaign list`.
pub fn next_openings(config: &Config, now: DateTime<Utc>) -> Vec<(String, Option<DateTime<Utc>>)> {
    config
        .campaigns
        .iter()
        .map(|(name, definition)| {
            let next = Schedule::of(name, definition)
                .ok()
                .and_then(|s| s.next_after(now));
            (name.clone(), next)
        })
        .collect()
}
