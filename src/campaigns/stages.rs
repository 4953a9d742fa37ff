//! Campaigns reviewed in stages (`stages` in the definition): when a stage's time is up, the
//! accesses that go on (by `stage_outcome`: approvals, or revocations, and those nobody
//! decided) move to the next stage's reviewers, routed by that stage's chain over the
//! campaign's frozen snapshot with the same independence rules as at opening, and to someone
//! other than the earlier stage's reviewer whenever the chain has someone else; the others
//! keep their decision as final (a later decision on them is refused). The stages are those
//! the campaign was opened with, as its scope records them. The items, the campaign's stage, their events and the new
//! reviewers' digests are one transaction; earlier decisions stay in the decision history.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::campaigns::generate::insert_reviewers;
use crate::campaigns::model::{
    Campaign, ITEM_APPROVED, ITEM_PENDING, ITEM_REVOKED, campaign, reviewers_of,
};
use crate::campaigns::population::{Holders, Population};
use crate::campaigns::reviewers::{available_people, resolve_named};
use crate::campaigns::routing::{ChainPeople, Routing, RoutingPlan};
use crate::config::{CampaignDefinition, StageDefinition, StageOutcome};
use crate::db::schema::{campaigns, review_items};
use crate::db::time::from_db;
use crate::db::{DbConnection, new_id, write_tx};
use crate::directory::snapshot::sync_run;
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind};
use crate::notify::outbox::enqueue_stage_review;

/// Item ids named in one `items.advanced` event, at most.
const IDS_PER_EVENT: usize = 1_000;

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

/// Moves the campaign from stage `from` to the next one, under the stages and scope it was
/// opened with; nothing when it is closed or has moved on already (another instance, a job
/// run twice).
pub fn advance_stage(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    from: i64,
    actor: &str,
) -> Result<Advanced> {
    let found = campaign(conn, campaign_id)?;
    let (stages, stage_outcome) = stages_of(&found)?;
    let to = from + 1;
    if !found.is_open() || found.stage != from || to as usize > stages.len() {
        return Ok(Advanced {
            stage: found.stage,
            ..Advanced::default()
        });
    }
    let scope: serde_json::Value = serde_json::from_str(&found.scope)?;
    let names = |key: &str| -> Vec<String> {
        scope[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The next stage as a one-stage definition of the scope, over every group (the items
    // it moves are in scope already).
    let mut next = CampaignDefinition::for_source(&found.source, names("fallback_reviewers"));
    next.reviewer_chain = stages[to as usize - 1].reviewer_chain.clone();
    next.include_service_accounts = scope["include_service_accounts"].as_bool().unwrap_or(true);
    next.include_disabled = scope["include_disabled"].as_bool().unwrap_or(true);
    if let Some(owners) = scope["group_owners"].as_object() {
        next.group_owners = owners
            .iter()
            .filter_map(|(group, owner)| Some((group.clone(), owner.as_str()?.to_string())))
            .collect();
    }
    let seq = sync_run(conn, &found.sync_run_id)?.seq;
    let population = Population::load(conn, &found.source, seq, &next)?;
    let holders = Holders::read(conn, &found.source, seq, &population)?;
    let chain = ChainPeople {
        steps: next.reviewer_chain.clone(),
        owners: population.owner_facts(),
        named: resolve_named(conn, &found.source, seq, &names("named_reviewers"))?,
        fallbacks: available_people(
            conn,
            &found.source,
            seq,
            "fallback_reviewers",
            &next.fallback_reviewers,
        )?,
    };
    let going_on = match stage_outcome {
        StageOutcome::AllApprove => [ITEM_PENDING, ITEM_APPROVED],
        StageOutcome::AnyApprove => [ITEM_PENDING, ITEM_REVOKED],
    };
    write_tx(conn, |conn| {
        lock_campaign(conn, campaign_id)?;
        let now_found = campaign(conn, campaign_id)?;
        if !now_found.is_open() || now_found.stage != from {
            return Ok(Advanced {
                stage: now_found.stage,
                ..Advanced::default()
            });
        }
        let query = review_items::table
            .filter(review_items::campaign_id.eq(campaign_id))
            .filter(review_items::stage.eq(from))
            .order(review_items::id.asc())
            .select((
                review_items::id,
                review_items::identity_external_id,
                review_items::entitlement_external_id,
                review_items::reviewer_id,
                review_items::state,
            ));
        let rows: Vec<(String, String, String, String, String)> = match conn {
            DbConnection::Postgres(pg) => query.for_update().load(pg)?,
            DbConnection::Sqlite(sqlite) => query.load(sqlite)?,
        };
        let (moving, settled): (Vec<_>, Vec<_>) = rows
            .into_iter()
            .partition(|(.., state)| going_on.contains(&state.as_str()));
        let no_owner = crate::campaigns::routing::GroupOwner::NotNamed;
        let owner_of = |group: &str| population.groups.get(group).map_or(&no_owner, |g| &g.owner);
        let subjects: Vec<_> = moving
            .iter()
            .map(|(_, person, group, ..)| (person.clone(), owner_of(group).clone()))
            .collect();
        let people = subjects
            .iter()
            .filter_map(|(id, _)| Some((id.clone(), population.facts(id)?)))
            .collect();
        let plan = RoutingPlan::new(people, subjects, chain.clone())?;
        let current = reviewers_of(conn, campaign_id)?;
        // The earlier stage's reviewers by row id: a later stage is someone else's look.
        let earlier: HashMap<String, Option<String>> = current
            .iter()
            .map(|r| (r.id.clone(), r.identity_external_id.clone()))
            .collect();
        let mut reviewer_ids: HashMap<String, String> = current
            .into_iter()
            .map(|r| (r.email.to_lowercase(), r.id))
            .collect();
        let no_holders = HashSet::new();
        let mut moves: BTreeMap<(String, &'static str), Vec<String>> = BTreeMap::new();
        for (item, person, group, earlier_reviewer, _) in &moving {
            let holders = match population.groups.get(group) {
                Some(g) if g.privileged => holders.of_privileged.get(group).unwrap_or(&no_holders),
                _ => &no_holders,
            };
            let owner = owner_of(group);
            let (mut reviewer, mut routing) = plan.reviewer_for(person, owner, holders)?;
            if let Some(Some(earlier_id)) = earlier.get(earlier_reviewer)
                && reviewer.external_id.as_ref() == Some(earlier_id)
            {
                let mut excluded = holders.clone();
                excluded.insert(earlier_id.clone());
                let reason = Routing::EarlierStageReviewerRerouted;
                // Nobody else in the chain: the same person looks again rather than nobody.
                if let Ok(other) = plan.reviewer_excluding(person, owner, &excluded, reason) {
                    (reviewer, routing) = other;
                }
            }
            let key = reviewer.email.to_lowercase();
            let reviewer_id = match reviewer_ids.get(&key) {
                Some(id) => id.clone(),
                None => {
                    let id = new_id();
                    insert_reviewers(conn, campaign_id, &[(id.clone(), reviewer.clone())])?;
                    reviewer_ids.insert(key, id.clone());
                    id
                }
            };
            moves
                .entry((reviewer_id, routing.as_str()))
                .or_default()
                .push(item.clone());
        }
        let mut events = EventBatch::default();
        let mut notified = HashSet::new();
        for ((reviewer_id, routing), ids) in &moves {
            for chunk in ids.chunks(IDS_PER_EVENT) {
                diesel::update(review_items::table.filter(review_items::id.eq_any(chunk)))
                    .set((
                        review_items::stage.eq(to),
                        review_items::reviewer_id.eq(reviewer_id),
                        review_items::routing.eq(*routing),
                        review_items::state.eq(ITEM_PENDING),
                        review_items::decided_at.eq(None::<chrono::NaiveDateTime>),
                        review_items::approved_until.eq(None::<chrono::NaiveDateTime>),
                        review_items::expired_at.eq(None::<chrono::NaiveDateTime>),
                    ))
                    .execute(conn)?;
                events.push(
                    EventKind::ItemsAdvanced,
                    Some(campaign_id),
                    json!({
                        "campaign": campaign_id,
                        "stage": to,
                        "to_reviewer": reviewer_id,
                        "routing": routing,
                        "items": chunk,
                    }),
                );
            }
            if notified.insert(reviewer_id.clone()) {
                enqueue_stage_review(conn, now, campaign_id, reviewer_id, to, &mut events)?;
            }
        }
        diesel::update(campaigns::table.find(campaign_id))
            .set(campaigns::stage.eq(to))
            .execute(conn)?;
        let advanced = Advanced {
            stage: to,
            items: moving.len(),
            settled: settled.len(),
        };
        events.push(
            EventKind::CampaignStageAdvanced,
            Some(campaign_id),
            json!({
                "campaign": campaign_id,
                "from_stage": from,
                "to_stage": to,
                "stage_outcome": stage_outcome.as_str(),
                "items_advanced": advanced.items,
                "items_settled": advanced.settled,
                "reviewers": notified.len(),
            }),
        );
        events.append_all(conn, now, actor)?;
        Ok(advanced)
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
fn lock_campaign(conn: &mut DbConnection, campaign_id: &str) -> Result<()> {
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
