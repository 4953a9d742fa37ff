//! Campaigns reviewed in stages (`stages` in the definition): when a stage's time is up, the
//! accesses that go on (by `stage_outcome`: approvals, or revocations, and those nobody
//! decided) move to the next stage's reviewers, routed by that stage's chain over the
//! campaign's frozen snapshot with the same independence rules as at opening, and to someone
//! other than the earlier stage's reviewer whenever the chain has someone else; the others
//! keep their decision as final (a later decision on them is refused). The stages are those
//! the campaign was opened with, as its scope records them. The campaign's stage moves on
//! first, in one short transaction with its event; the accesses then move a page at a time
//! (`stage_moves`), each page with its events, and the new reviewers' digests come last.
//! Earlier decisions stay in the decision history.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::campaigns::model::{Campaign, ITEM_APPROVED, ITEM_PENDING, ITEM_REVOKED, campaign};
use crate::campaigns::stage_moves::{self, NextStage, Paging, StageMove};
use crate::config::{StageDefinition, StageOutcome};
use crate::db::schema::{campaigns, review_items};
use crate::db::time::from_db;
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind};

/// What moving a campaign to its next stage did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Advanced {
    /// The stage the campaign is in now.
    pub stage: i64,
    /// Accesses that went on to it.
    pub items: usize,
    /// Accesses whose decision in the stage that ended is final.
    pub settled: usize,
}

/// The stages a campaign was opened with and how their outcomes combine, as its scope
/// records them (the definition may have changed since): none for a one-stage campaign.
pub fn stages_of(found: &Campaign) -> Result<(Vec<StageDefinition>, StageOutcome)> {
    let scope: serde_json::Value = serde_json::from_str(&found.scope)?;
    let stages = match scope.get("stages") {
        Some(stages) if !stages.is_null() => serde_json::from_value(stages.clone())?,
        _ => Vec::new(),
    };
    let outcome = match scope.get("stage_outcome") {
        Some(outcome) if !outcome.is_null() => serde_json::from_value(outcome.clone())?,
        _ => StageOutcome::default(),
    };
    Ok((stages, outcome))
}

/// When stage `stage` (1-based) of a campaign opened at `opened` ends; none for the last
/// stage (it lasts until the due date) or a campaign without stages.
pub fn stage_end(
    stages: &[StageDefinition],
    opened: DateTime<Utc>,
    stage: i64,
) -> Option<DateTime<Utc>> {
    let index = usize::try_from(stage).ok()?.checked_sub(1)?;
    if index + 1 >= stages.len() {
        return None;
    }
    let days: u32 = stages[..=index].iter().filter_map(|s| s.days).sum();
    Some(opened + Duration::days(i64::from(days)))
}

/// When the campaign's current stage began: its opening for the first stage (or a campaign
/// without stages), else the end of the stage before.
pub fn current_stage_start(found: &Campaign) -> DateTime<Utc> {
    let opened = from_db(found.opened_at);
    if found.stage <= 1 {
        return opened;
    }
    match stages_of(found) {
        Ok((stages, _)) => stage_end(&stages, opened, found.stage - 1).unwrap_or(opened),
        Err(e) => {
            tracing::error!(campaign = %found.id, error = %e, "the campaign's stages cannot be read");
            opened
        }
    }
}

/// Moves the campaign from stage `from` to the next one, under the stages and scope it was
/// opened with; nothing when it is closed or has moved on already (another instance, a job
/// run twice). First the campaign's stage moves on with its `campaign.stage_advanced` event,
/// in one short transaction: from then on the ended stage's decisions are final. Then the
/// accesses that go on are routed and moved a page per transaction, and each new reviewer
/// gets a digest. Called again after a move stopped half way, it goes on where it stopped.
pub fn advance_stage(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    from: i64,
    actor: &str,
) -> Result<Advanced> {
    advance_stage_paged(conn, now, campaign_id, from, actor, Paging::default())
}

/// `advance_stage` with its paging given: how many accesses per transaction, and at most how
/// many pages before it stops as if cut short (tests of a move that goes on after a crash).
pub fn advance_stage_paged(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    from: i64,
    actor: &str,
    paging: Paging,
) -> Result<Advanced> {
    let found = campaign(conn, campaign_id)?;
    let (stages, stage_outcome) = stages_of(&found)?;
    let to = from + 1;
    let unchanged = Advanced {
        stage: found.stage,
        ..Advanced::default()
    };
    if !found.is_open() || (found.stage != from && found.stage != to) || to as usize > stages.len()
    {
        return Ok(unchanged);
    }
    let step = StageMove {
        campaign_id,
        from,
        to,
        going_on: going_on(stage_outcome),
    };
    // Reads first, outside any write transaction: the snapshot never changes.
    let next = NextStage::read(conn, &found, &stages[to as usize - 1])?;
    if found.stage == from {
        // A chain with nobody left to route to fails here, before anything changed.
        stage_moves::plan(conn, &step, &next)?;
        if !begin(conn, now, &step, stage_outcome, actor)? {
            return Ok(Advanced {
                stage: campaign(conn, campaign_id)?.stage,
                ..Advanced::default()
            });
        }
    }
    // From here what goes on is fixed: the same plan however often the move goes on.
    let plan = stage_moves::plan(conn, &step, &next)?;
    let moved = stage_moves::move_pages(conn, now, &step, &next, &plan, paging, actor)?;
    let reviewers = stage_moves::queue_digests(conn, now, &step, actor)?;
    let settled: i64 = review_items::table
        .filter(review_items::campaign_id.eq(campaign_id))
        .filter(review_items::stage.eq(from))
        .count()
        .get_result(conn)?;
    tracing::debug!(campaign = %campaign_id, moved, reviewers, "stage accesses moved");
    Ok(Advanced {
        stage: to,
        items: moved,
        settled: usize::try_from(settled).unwrap_or(0),
    })
}

/// The item states that go on to the next stage: approvals, or revocations, and what nobody
/// decided. The non-pending one first: the pending walk then passes each moved access once.
fn going_on(outcome: StageOutcome) -> [&'static str; 2] {
    match outcome {
        StageOutcome::AllApprove => [ITEM_APPROVED, ITEM_PENDING],
        StageOutcome::AnyApprove => [ITEM_REVOKED, ITEM_PENDING],
    }
}

/// Whether the campaign's last move between stages stopped before all its accesses moved
/// (the stage moved on, some accesses of the stage before that go on did not): the
/// scheduler then plans the move again.
pub fn move_unfinished(conn: &mut DbConnection, found: &Campaign) -> Result<bool> {
    if found.stage <= 1 || !found.is_open() {
        return Ok(false);
    }
    let (_, outcome) = stages_of(found)?;
    let left: i64 = review_items::table
        .filter(review_items::campaign_id.eq(&found.id))
        .filter(review_items::state.eq_any(going_on(outcome)))
        .filter(review_items::stage.eq(found.stage - 1))
        .filter(review_items::expired_at.is_null())
        .select(diesel::dsl::count_star())
        .first(conn)?;
    Ok(left > 0)
}

/// Moves the campaign's stage on, with its event; false when it is closed or its stage
/// changed meanwhile. What goes on and what stays is fixed from here: no decision is taken
/// on an earlier stage's access.
fn begin(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    step: &StageMove<'_>,
    stage_outcome: StageOutcome,
    actor: &str,
) -> Result<bool> {
    write_tx(conn, |conn| {
        lock_campaign(conn, step.campaign_id)?;
        let now_found = campaign(conn, step.campaign_id)?;
        if !now_found.is_open() || now_found.stage != step.from {
            return Ok(false);
        }
        let in_stage: i64 = review_items::table
            .filter(review_items::campaign_id.eq(step.campaign_id))
            .filter(review_items::stage.eq(step.from))
            .count()
            .get_result(conn)?;
        // An approval that expired is a settled revocation: it stays, as in `move_pages`.
        let advancing: i64 = review_items::table
            .filter(review_items::campaign_id.eq(step.campaign_id))
            .filter(review_items::stage.eq(step.from))
            .filter(review_items::state.eq_any(step.going_on))
            .filter(review_items::expired_at.is_null())
            .count()
            .get_result(conn)?;
        let settled = in_stage - advancing;
        diesel::update(campaigns::table.find(step.campaign_id))
            .set(campaigns::stage.eq(step.to))
            .execute(conn)?;
        let mut events = EventBatch::default();
        events.push(
            EventKind::CampaignStageAdvanced,
            Some(step.campaign_id),
            json!({
                "campaign": step.campaign_id,
                "from_stage": step.from,
                "to_stage": step.to,
                "stage_outcome": stage_outcome.as_str(),
                "items_advanced": advancing,
                "items_settled": settled,
            }),
        );
        events.append_all(conn, now, actor)?;
        Ok(true)
    })
}

/// Whether the campaign's current stage has ended by `now` (it is then due to advance).
pub fn stage_due(found: &Campaign, now: DateTime<Utc>) -> bool {
    match stages_of(found) {
        Ok((stages, _)) => {
            stage_end(&stages, from_db(found.opened_at), found.stage).is_some_and(|end| now >= end)
        }
        Err(e) => {
            tracing::error!(campaign = %found.id, error = %e, "the campaign's stages cannot be read");
            false
        }
    }
}

/// Holds the campaign row against a concurrent close or decision batch (PostgreSQL).
pub(crate) fn lock_campaign(conn: &mut DbConnection, campaign_id: &str) -> Result<()> {
    if let DbConnection::Postgres(pg) = conn {
        campaigns::table
            .find(campaign_id)
            .select(campaigns::id)
            .for_update()
            .first::<String>(pg)
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("campaign {campaign_id} not found")))?;
    }
    Ok(())
}
