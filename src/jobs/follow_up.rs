//! The jobs that follow an open campaign to its end: reminders before the due date,
//! escalation of undecided items, reviewers who leave the directory mid-campaign, and the
//! close at the due date with its no-response policy.
//! Each tick enqueues the ones whose time has come, under a dedupe key per campaign (and per
//! reminder, and per stage for escalation, counted from the stage's start), so each happens
//! once however many instances run the scheduler; a service that was down sends only the
//! latest reminder that is due and closes a campaign once it returns. A move between stages
//! that stopped half way is planned again each hour until it is done.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::campaigns::closing::hold_close;
use crate::campaigns::model::{
    Campaign, ITEM_PENDING, Reviewer, STATE_OPEN, campaign, reviewer, reviewers_of,
};
use crate::campaigns::reassign::{ReassignReason, Reassignment, Selection, Target, reassign};
use crate::campaigns::stages::{advance_stage, current_stage_start, move_unfinished, stage_due};
use crate::campaigns::{CloseRules, close_campaign, preview_close};
use crate::config::{CampaignDefinition, Config};
use crate::db::schema::{campaigns, identity_versions, review_items};
use crate::db::time::from_db;
use crate::db::{DbConnection, write_tx};
use crate::directory::current_sync_run;
use crate::error::{Error, Result};
use crate::jobs::queue;
use crate::ledger::EventBatch;
use crate::notify::outbox::enqueue_reminder;
use crate::notify::revocation::{LinkScope, RevocationReason, revoke_links};

pub const KIND_CLOSE_CAMPAIGN: &str = "close_campaign";
pub const KIND_REMIND_REVIEWERS: &str = "remind_reviewers";
pub const KIND_ESCALATE_ITEMS: &str = "escalate_items";
pub const KIND_CHECK_REVIEWERS: &str = "check_reviewers";
pub const KIND_ADVANCE_STAGE: &str = "advance_stage";

/// What a follow-up job works on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FollowUp {
    pub campaign: String,
    /// For a reminder: how many days before the due date it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_before_due: Option<u32>,
    /// For a stage's end: the stage that ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<i64>,
}

impl FollowUp {
    fn of(campaign: &str) -> FollowUp {
        FollowUp {
            campaign: campaign.to_string(),
            days_before_due: None,
            stage: None,
        }
    }
}

/// Enqueues the follow-ups of open campaigns whose time has come; returns how many.
pub fn plan(conn: &mut DbConnection, config: &Config, now: DateTime<Utc>) -> Result<usize> {
    let open: Vec<Campaign> = campaigns::table
        .filter(campaigns::state.eq(STATE_OPEN))
        .select(Campaign::as_select())
        .load(conn)?;
    let mut enqueued = 0;
    for campaign in open {
        let Some(definition) = config.campaigns.get(&campaign.definition) else {
            continue;
        };
        let mut due = due_follow_ups(&campaign, definition, now);
        // A move between stages that stopped (its job gave up): plan it again, once an hour.
        if move_unfinished(conn, &campaign)? {
            let from = campaign.stage - 1;
            due.push((
                KIND_ADVANCE_STAGE,
                format!(
                    "{KIND_ADVANCE_STAGE}:{}:{from}:resume:{}",
                    campaign.id,
                    now.format("%Y%m%d%H")
                ),
                FollowUp {
                    stage: Some(from),
                    ..FollowUp::of(&campaign.id)
                },
            ));
        }
        // A newer snapshot of the source: are the campaign's reviewers still there?
        if let Some(run) = current_sync_run(conn, &campaign.source)?
            && run.id != campaign.sync_run_id
        {
            due.push((
                KIND_CHECK_REVIEWERS,
                format!("{KIND_CHECK_REVIEWERS}:{}:{}", campaign.id, run.id),
                FollowUp::of(&campaign.id),
            ));
        }
        for (kind, key, task) in due {
            let payload = serde_json::to_value(&task)?;
            if write_tx(conn, |conn| queue::enqueue(conn, now, kind, &key, &payload))? {
                tracing::info!(campaign = %campaign.id, kind, "campaign follow-up planned");
                enqueued += 1;
            }
        }
    }
    Ok(enqueued)
}

/// The follow-ups of one campaign that are due at `now`: (kind, dedupe key, task).
fn due_follow_ups(
    campaign: &Campaign,
    definition: &CampaignDefinition,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String, FollowUp)> {
    let (opened, due) = (from_db(campaign.opened_at), from_db(campaign.due_at));
    let id = &campaign.id;
    let mut out = Vec::new();
    if now >= due {
        if definition.close_at_due && campaign.close_held_at.is_none() {
            out.push((
                KIND_CLOSE_CAMPAIGN,
                format!("{KIND_CLOSE_CAMPAIGN}:{id}"),
                FollowUp::of(id),
            ));
        }
        return out;
    }
    if stage_due(campaign, now) {
        out.push((
            KIND_ADVANCE_STAGE,
            format!("{KIND_ADVANCE_STAGE}:{id}:{}", campaign.stage),
            FollowUp {
                stage: Some(campaign.stage),
                ..FollowUp::of(id)
            },
        ));
    }
    // Only the latest reminder whose time has come: after downtime, one reminder, not three.
    let latest_reminder = definition
        .reminders
        .iter()
        .copied()
        .filter(|days| {
            let at = due - Duration::days(i64::from(*days));
            at <= now && at > opened
        })
        .min();
    if let Some(days) = latest_reminder {
        out.push((
            KIND_REMIND_REVIEWERS,
            format!("{KIND_REMIND_REVIEWERS}:{id}:{days}"),
            FollowUp {
                days_before_due: Some(days),
                ..FollowUp::of(id)
            },
        ));
    }
    // Counted from the start of each stage: a later stage's reviewers get the same time.
    if let Some(days) = definition.escalate_after_days
        && now >= current_stage_start(campaign) + Duration::days(i64::from(days))
    {
        let key = match campaign.stage {
            1 => format!("{KIND_ESCALATE_ITEMS}:{id}"),
            stage => format!("{KIND_ESCALATE_ITEMS}:{id}:stage-{stage}"),
        };
        out.push((
            KIND_ESCALATE_ITEMS,
            key,
            FollowUp {
                stage: Some(campaign.stage),
                ..FollowUp::of(id)
            },
        ));
    }
    out
}

/// Closes the campaign at its due date under its definition's rules, or holds the close
/// when the no-response policy would revoke more than it may without an admin.
pub fn close_at_due(
    conn: &mut DbConnection,
    config: &Config,
    now: DateTime<Utc>,
    task: &FollowUp,
) -> Result<()> {
    let campaign = campaign(conn, &task.campaign)?;
    if !campaign.is_open() {
        return Ok(());
    }
    let rules = CloseRules::of(config, &campaign);
    let preview = preview_close(conn, &campaign.id, &rules)?;
    if preview.needs_confirmation {
        if hold_close(conn, now, &preview, "scheduler")? {
            tracing::warn!(
                campaign = %campaign.id,
                would_revoke = preview.would_revoke,
                items = preview.summary.items,
                "close held: the no-response policy would revoke more than max_auto_revoke_share"
            );
        }
        return Ok(());
    }
    match close_campaign(conn, now, &campaign.id, &rules, "scheduler") {
        Ok(summary) => {
            tracing::info!(
                campaign = %campaign.id,
                no_response = summary.no_response,
                "campaign closed at its due date"
            );
            Ok(())
        }
        // Closed meanwhile by an admin or another instance.
        Err(Error::Conflict(_)) if !is_open(conn, &campaign.id)? => Ok(()),
        Err(other) => Err(other),
    }
}

/// Moves a campaign reviewed in stages on to its next stage once a stage's time is up.
pub fn advance(
    conn: &mut DbConnection,
    _config: &Config,
    now: DateTime<Utc>,
    task: &FollowUp,
) -> Result<()> {
    let stage = task
        .stage
        .ok_or_else(|| Error::Internal("stage end without its stage".into()))?;
    let found = campaign(conn, &task.campaign)?;
    let advanced = advance_stage(conn, now, &found.id, stage, "scheduler")?;
    tracing::info!(
        campaign = %found.id,
        stage = advanced.stage,
        items = advanced.items,
        settled = advanced.settled,
        "campaign moved on to its next stage"
    );
    Ok(())
}

/// Reminds every reviewer who still has undecided items (one mail each per reminder).
pub fn remind(
    conn: &mut DbConnection,
    _config: &Config,
    now: DateTime<Utc>,
    task: &FollowUp,
) -> Result<()> {
    let days = task
        .days_before_due
        .ok_or_else(|| Error::Internal("reminder without its day".into()))?;
    write_tx(conn, |conn| {
        let campaign = campaign(conn, &task.campaign)?;
        if !campaign.is_open() || now >= from_db(campaign.due_at) {
            return Ok(());
        }
        // The current stage's reviewers (accesses of an earlier stage wait for their move).
        let waiting: Vec<String> = review_items::table
            .filter(review_items::campaign_id.eq(&campaign.id))
            .filter(review_items::state.eq(ITEM_PENDING))
            .filter(review_items::stage.eq(campaign.stage))
            .select(review_items::reviewer_id)
            .distinct()
            .order(review_items::reviewer_id.asc())
            .load(conn)?;
        let seq = current_sync_run(conn, &campaign.source)?.map(|run| run.seq);
        let mut events = EventBatch::default();
        let mut reminded = 0;
        for reviewer_id in &waiting {
            // A reviewer the directory now shows disabled or gone had their links revoked
            // (`check_reviewers`); a reminder would mint them a working one again.
            let reviewer = reviewer(conn, reviewer_id)?;
            if let Some(seq) = seq
                && !is_available(conn, &campaign.source, seq, &reviewer)?
            {
                continue;
            }
            enqueue_reminder(conn, now, &campaign.id, reviewer_id, days, &mut events)?;
            reminded += 1;
        }
        events.append_all(conn, now, "scheduler")?;
        tracing::info!(campaign = %campaign.id, reviewers = reminded, days_before_due = days, "reminders queued");
        Ok(())
    })
}

/// Moves every undecided item to the next reviewer along its reviewer's chain.
pub fn escalate(
    conn: &mut DbConnection,
    _config: &Config,
    now: DateTime<Utc>,
    task: &FollowUp,
) -> Result<()> {
    write_tx(conn, |conn| {
        let campaign = campaign(conn, &task.campaign)?;
        if !campaign.is_open() || now >= from_db(campaign.due_at) {
            return Ok(());
        }
        // Planned for a stage that has ended since: its items went on, to fresh reviewers.
        if task.stage.is_some_and(|stage| stage != campaign.stage) {
            return Ok(());
        }
        let mut events = EventBatch::default();
        let job = Reassignment {
            campaign_id: &campaign.id,
            selection: Selection::AllPending,
            reason: ReassignReason::Escalated,
            target: Target::Chain,
            note: None,
            auth: None,
        };
        let moved = reassign(conn, now, &job, &mut events)?;
        events.append_all(conn, now, "scheduler")?;
        tracing::info!(
            campaign = %campaign.id,
            items = moved.items,
            stuck = moved.stuck,
            "undecided items escalated"
        );
        Ok(())
    })
}

/// A reviewer whom the source's current snapshot shows disabled or gone loses their links
/// at once, and their undecided items move along their chain (TESTPLAN A8).
pub fn check_reviewers(
    conn: &mut DbConnection,
    _config: &Config,
    now: DateTime<Utc>,
    task: &FollowUp,
) -> Result<()> {
    let campaign = campaign(conn, &task.campaign)?;
    if !campaign.is_open() {
        return Ok(());
    }
    let Some(run) = current_sync_run(conn, &campaign.source)? else {
        return Ok(());
    };
    for reviewer in reviewers_of(conn, &campaign.id)? {
        if is_available(conn, &campaign.source, run.seq, &reviewer)? {
            continue;
        }
        let scope = LinkScope {
            campaign_id: &campaign.id,
            reviewer_email: Some(&reviewer.email),
            reason: RevocationReason::ReviewerUnavailable,
        };
        let revoked = revoke_links(conn, now, &scope, false, "scheduler")?;
        let moved = write_tx(conn, |conn| {
            let mut events = EventBatch::default();
            let job = Reassignment {
                campaign_id: &campaign.id,
                selection: Selection::PendingOf(&reviewer.id),
                reason: ReassignReason::ReviewerUnavailable,
                target: Target::Chain,
                note: None,
                auth: None,
            };
            let moved = reassign(conn, now, &job, &mut events)?;
            events.append_all(conn, now, "scheduler")?;
            Ok(moved)
        })?;
        tracing::warn!(
            campaign = %campaign.id,
            reviewer = %reviewer.id,
            links = revoked.links,
            items = moved.items,
            stuck = moved.stuck,
            "a reviewer is disabled or gone: links revoked, undecided items moved"
        );
    }
    Ok(())
}

/// Whether the reviewer can still act: active in the snapshot `seq` of the source, or an
/// address outside the directory (a fallback named by email).
fn is_available(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    reviewer: &Reviewer,
) -> Result<bool> {
    let Some(person) = &reviewer.identity_external_id else {
        return Ok(true);
    };
    let status: Option<String> = identity_versions::table
        .filter(identity_versions::source.eq(source))
        .filter(identity_versions::external_id.eq(person))
        .filter(crate::as_of!(identity_versions, seq))
        .select(identity_versions::status)
        .first(conn)
        .optional()?;
    Ok(status.as_deref() == Some("active"))
}

fn is_open(conn: &mut DbConnection, campaign_id: &str) -> Result<bool> {
    Ok(campaign(conn, campaign_id)?.is_open())
}
