//! Moving a campaign's accesses on to its next stage, a page at a time. Once the campaign's
//! stage has moved on (`stages::advance_stage`), no decision can change the accesses of the
//! stage that ended, so they can be routed and moved in short write transactions: decisions
//! on SQLite keep being answered while a large campaign advances, and memory stays bounded
//! by people and reviewers, not by accesses. A move that stopped half way (a crash, an
//! error) goes on from where it stopped when the job runs again.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::IntoSql;
use diesel::prelude::*;
use serde_json::json;

use crate::campaigns::generate::insert_reviewers;
use crate::campaigns::model::{
    Campaign, ITEM_APPROVED, ITEM_PENDING, ITEM_REVOKED, campaign, reviewers_of,
};
use crate::campaigns::population::{Holders, Population};
use crate::campaigns::reviewers::{available_people, resolve_named};
use crate::campaigns::routing::{ChainPeople, GroupOwner, Routing, RoutingPlan};
use crate::config::{CampaignDefinition, StageDefinition};
use crate::db::schema::{outbox, review_items, reviewers};
use crate::db::{DbConnection, new_id, write_tx};
use crate::directory::snapshot::sync_run;
use crate::error::Result;
use crate::ledger::{EventBatch, EventKind};
use crate::notify::outbox::enqueue_stage_review;

/// Accesses routed and moved per write transaction.
pub const ITEMS_PER_PAGE: i64 = 5_000;
/// Item ids named in one `items.advanced` event, at most.
const IDS_PER_EVENT: usize = 1_000;
/// Stage digests queued per write transaction.
const DIGESTS_PER_TX: usize = 500;

/// One move of a campaign from stage `from` to stage `to`, and the item states that go on.
pub(crate) struct StageMove<'a> {
    pub(crate) campaign_id: &'a str,
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) going_on: [&'static str; 2],
}

/// How a move pages: accesses per write transaction, and (to cut a move short, as a crash
/// would) how many pages to move at most.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub items_per_page: i64,
    pub stop_after_pages: Option<usize>,
}

impl Default for Paging {
    fn default() -> Self {
        Paging {
            items_per_page: ITEMS_PER_PAGE,
            stop_after_pages: None,
        }
    }
}

/// What the next stage routes over: the campaign's frozen snapshot, every group (the items
/// it moves are in scope already), and the next stage's reviewer chain.
pub(crate) struct NextStage {
    population: Population,
    holders: Holders,
    chain: ChainPeople,
}

impl NextStage {
    /// Reads the snapshot the campaign was opened on, with `stage` as a one-stage definition
    /// of the scope it recorded.
    pub(crate) fn read(
        conn: &mut DbConnection,
        found: &Campaign,
        stage: &StageDefinition,
    ) -> Result<NextStage> {
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
        let mut next = CampaignDefinition::for_source(&found.source, names("fallback_reviewers"));
        next.reviewer_chain = stage.reviewer_chain.clone();
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
        Ok(NextStage {
            population,
            holders,
            chain,
        })
    }

    fn owner_of(&self, group: &str) -> GroupOwner {
        self.population
            .groups
            .get(group)
            .map_or(GroupOwner::NotNamed, |g| g.owner.clone())
    }
}

/// An access of the stage that ended: (item, person, group, its reviewer's row id).
type StageItem = (String, String, String, String);

/// Which of a campaign's accesses a page walks: those of `stage` in `state`.
struct Walk<'a> {
    campaign_id: &'a str,
    stage: i64,
    state: &'a str,
    /// Only those still to move: not an approval that expired (a settled revocation).
    to_move: bool,
}

/// The next page of a walk after item `after`, in id order. One state at a time, so that the
/// (campaign, state, id) index gives the order without a sort.
fn page(
    conn: &mut DbConnection,
    walk: &Walk<'_>,
    after: &str,
    size: i64,
    lock: bool,
) -> Result<Vec<StageItem>> {
    let any_expiry = (!walk.to_move).into_sql::<diesel::sql_types::Bool>();
    let query = review_items::table
        .filter(review_items::campaign_id.eq(walk.campaign_id))
        .filter(review_items::state.eq(walk.state))
        .filter(review_items::id.gt(after))
        .filter(review_items::stage.eq(walk.stage))
        .filter(review_items::expired_at.is_null().or(any_expiry))
        .order(review_items::id.asc())
        .limit(size)
        .select((
            review_items::id,
            review_items::identity_external_id,
            review_items::entitlement_external_id,
            review_items::reviewer_id,
        ));
    Ok(match conn {
        DbConnection::Postgres(pg) if lock => query.for_update().load(pg)?,
        DbConnection::Postgres(pg) => query.load(pg)?,
        DbConnection::Sqlite(sqlite) => query.load(sqlite)?,
    })
}

/// Routes the move with the next stage's chain: who reviews whom is worked out over every
/// (person, group owner) of the accesses that go on, as at opening. Those are the ones still
/// in stage `from` and those already moved to `to` (only this move puts accesses there), so
/// that a move that goes on after stopping routes exactly as one that never stopped.
pub(crate) fn plan(
    conn: &mut DbConnection,
    step: &StageMove<'_>,
    next: &NextStage,
) -> Result<RoutingPlan> {
    let mut subjects: HashSet<(String, GroupOwner)> = HashSet::new();
    let still_to_move = step.going_on.map(|state| Walk {
        campaign_id: step.campaign_id,
        stage: step.from,
        state,
        to_move: true,
    });
    let moved = [ITEM_PENDING, ITEM_APPROVED, ITEM_REVOKED].map(|state| Walk {
        campaign_id: step.campaign_id,
        stage: step.to,
        state,
        to_move: false,
    });
    for walk in still_to_move.iter().chain(moved.iter()) {
        let mut after = String::new();
        loop {
            let rows = page(conn, walk, &after, ITEMS_PER_PAGE, false)?;
            let Some(last) = rows.last() else { break };
            after = last.0.clone();
            for (_, person, group, _) in rows {
                subjects.insert((person, next.owner_of(&group)));
            }
        }
    }
    let people = subjects
        .iter()
        .filter_map(|(id, _)| Some((id.clone(), next.population.facts(id)?)))
        .collect();
    RoutingPlan::new(people, subjects, next.chain.clone())
}

/// Moves the accesses still in stage `from` that go on, a page per write transaction;
/// returns how many it moved. Stops when the campaign closed or moved on meanwhile.
pub(crate) fn move_pages(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    step: &StageMove<'_>,
    next: &NextStage,
    plan: &RoutingPlan,
    paging: Paging,
    actor: &str,
) -> Result<usize> {
    let current = reviewers_of(conn, step.campaign_id)?;
    // The earlier stage's reviewers by row id: a later stage is someone else's look.
    let earlier: HashMap<String, Option<String>> = current
        .iter()
        .map(|r| (r.id.clone(), r.identity_external_id.clone()))
        .collect();
    let mut reviewer_ids: HashMap<String, String> = current
        .into_iter()
        .map(|r| (r.email.to_lowercase(), r.id))
        .collect();
    let (mut moved, mut pages) = (0, 0);
    for state in step.going_on {
        let walk = Walk {
            campaign_id: step.campaign_id,
            stage: step.from,
            state,
            to_move: true,
        };
        let mut after = String::new();
        loop {
            if paging.stop_after_pages.is_some_and(|most| pages >= most) {
                return Ok(moved);
            }
            let page_moved = write_tx(conn, |conn| {
                crate::campaigns::stages::lock_campaign(conn, step.campaign_id)?;
                let now_found = campaign(conn, step.campaign_id)?;
                if !now_found.is_open() || now_found.stage != step.to {
                    return Ok(None);
                }
                let rows = page(conn, &walk, &after, paging.items_per_page, true)?;
                let Some(last) = rows.last() else {
                    return Ok(None);
                };
                let last = last.0.clone();
                let ids = Routed {
                    next,
                    plan,
                    earlier: &earlier,
                }
                .route(conn, step.campaign_id, &rows, &mut reviewer_ids)?;
                write_moves(conn, now, step, &ids, actor)?;
                Ok(Some((rows.len(), last)))
            })?;
            let Some((count, last)) = page_moved else {
                break;
            };
            moved += count;
            pages += 1;
            after = last;
        }
    }
    Ok(moved)
}

/// Routing one page of accesses.
struct Routed<'a> {
    next: &'a NextStage,
    plan: &'a RoutingPlan,
    earlier: &'a HashMap<String, Option<String>>,
}

/// Item ids by (reviewer row id, routing).
type Moves = BTreeMap<(String, &'static str), Vec<String>>;

impl Routed<'_> {
    fn route(
        &self,
        conn: &mut DbConnection,
        campaign_id: &str,
        rows: &[StageItem],
        reviewer_ids: &mut HashMap<String, String>,
    ) -> Result<Moves> {
        let no_holders = HashSet::new();
        let mut moves = Moves::new();
        for (item, person, group, earlier_reviewer) in rows {
            let holders = match self.next.population.groups.get(group) {
                Some(g) if g.privileged => self
                    .next
                    .holders
                    .of_privileged
                    .get(group)
                    .unwrap_or(&no_holders),
                _ => &no_holders,
            };
            let owner = self.next.owner_of(group);
            let (mut reviewer, mut routing) = self.plan.reviewer_for(person, &owner, holders)?;
            if let Some(Some(earlier_id)) = self.earlier.get(earlier_reviewer)
                && reviewer.external_id.as_ref() == Some(earlier_id)
            {
                let mut excluded = holders.clone();
                excluded.insert(earlier_id.clone());
                let reason = Routing::EarlierStageReviewerRerouted;
                // Nobody else in the chain: the same person looks again rather than nobody.
                if let Ok(other) = self
                    .plan
                    .reviewer_excluding(person, &owner, &excluded, reason)
                {
                    (reviewer, routing) = other;
                }
            }
            let key = reviewer.email.to_lowercase();
            let reviewer_id = match reviewer_ids.get(&key) {
                Some(id) => id.clone(),
                None => {
                    // Another runner of this move (or a reassignment) may have added them.
                    let existing: Option<String> = reviewers::table
                        .filter(reviewers::campaign_id.eq(campaign_id))
                        .filter(reviewers::email.eq(&reviewer.email))
                        .select(reviewers::id)
                        .first(conn)
                        .optional()?;
                    let id = match existing {
                        Some(id) => id,
                        None => {
                            let id = new_id();
                            insert_reviewers(conn, campaign_id, &[(id.clone(), reviewer.clone())])?;
                            id
                        }
                    };
                    reviewer_ids.insert(key, id.clone());
                    id
                }
            };
            moves
                .entry((reviewer_id, routing.as_str()))
                .or_default()
                .push(item.clone());
        }
        Ok(moves)
    }
}

/// Writes one page's moves and their `items.advanced` events.
fn write_moves(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    step: &StageMove<'_>,
    moves: &Moves,
    actor: &str,
) -> Result<()> {
    let mut events = EventBatch::default();
    for ((reviewer_id, routing), ids) in moves {
        for chunk in ids.chunks(IDS_PER_EVENT) {
            diesel::update(
                review_items::table
                    .filter(review_items::id.eq_any(chunk))
                    .filter(review_items::stage.eq(step.from))
                    .filter(review_items::expired_at.is_null()),
            )
            .set((
                review_items::stage.eq(step.to),
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
                Some(step.campaign_id),
                json!({
                    "campaign": step.campaign_id,
                    "stage": step.to,
                    "to_reviewer": reviewer_id,
                    "routing": routing,
                    "items": chunk,
                }),
            );
        }
    }
    events.append_all(conn, now, actor)
}

/// Queues one digest for each reviewer of the new stage that has none yet (a move that goes
/// on after a crash queues only the missing ones); returns how many reviewers the stage has.
pub(crate) fn queue_digests(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    step: &StageMove<'_>,
    actor: &str,
) -> Result<usize> {
    // Closed meanwhile: nobody is asked to review any more.
    if !campaign(conn, step.campaign_id)?.is_open() {
        return Ok(0);
    }
    let reviewers: Vec<String> = review_items::table
        .filter(review_items::campaign_id.eq(step.campaign_id))
        .filter(review_items::stage.eq(step.to))
        .select(review_items::reviewer_id)
        .distinct()
        .order(review_items::reviewer_id.asc())
        .load(conn)?;
    for chunk in reviewers.chunks(DIGESTS_PER_TX) {
        write_tx(conn, |conn| {
            let mut events = EventBatch::default();
            for reviewer_id in chunk {
                let key =
                    crate::notify::outbox::stage_review_key(step.campaign_id, reviewer_id, step.to);
                let queued: i64 = outbox::table
                    .filter(outbox::dedupe_key.eq(&key))
                    .count()
                    .get_result(conn)?;
                if queued == 0 {
                    enqueue_stage_review(
                        conn,
                        now,
                        step.campaign_id,
                        reviewer_id,
                        step.to,
                        &mut events,
                    )?;
                }
            }
            events.append_all(conn, now, actor)
        })?;
    }
    Ok(reviewers.len())
}
