//! Moving undecided items to another reviewer while a campaign is open: escalation when the
//! first reviewer has not answered in time, an item the reviewer does not know about, a
//! reviewer who has left, and a delegation by the reviewer or an admin. Each item goes to the
//! named person, or to the next one along its reviewer's chain, read from the source's current
//! snapshot: the reviewer's manager, then the campaign's fallback reviewers (after the
//! reviewer, when the reviewer is one of them), never back to someone who answered "don't
//! know" on it. The independence rules of generation hold here too, including for the moves
//! planned in the same run: nobody gets their own access, the access of someone who reviews
//! them, or a privileged group they hold. Moves, their events and the new reviewer's notice
//! are one transaction; the caller appends the events last, after every row is written.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::campaigns::generate::insert_reviewers;
use crate::campaigns::model::{ITEM_PENDING, Reviewer, campaign, reviewers_of};
use crate::campaigns::reviewers::{Candidate, available_people};
use crate::db::schema::{decisions, identity_versions, review_items, reviewers};
use crate::db::{DbConnection, new_id};
use crate::decisions::{AuthContext, DecisionOutcome};
use crate::directory::current_sync_run;
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind};
use crate::notify::outbox::enqueue_escalation;

/// Item ids named in one `items.reassigned` event, at most.
const IDS_PER_EVENT: usize = 1_000;

/// Why items moved; stored as the items' new routing reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReassignReason {
    /// Not decided `escalate_after_days` after opening.
    Escalated,
    /// The reviewer answered "don't know".
    DontKnow,
    /// The reviewer is disabled or gone from the directory.
    ReviewerUnavailable,
    /// The reviewer handed their undecided items to someone else, with a reason.
    Delegated,
    /// An admin moved a reviewer's undecided items to someone else, with a reason.
    AdminReassigned,
}

impl ReassignReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReassignReason::Escalated => "escalated",
            ReassignReason::DontKnow => "dont_know_escalated",
            ReassignReason::ReviewerUnavailable => "reviewer_unavailable",
            ReassignReason::Delegated => "delegated",
            ReassignReason::AdminReassigned => "reassigned_by_admin",
        }
    }
}

/// What a reassignment did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Reassigned {
    pub items: usize,
    /// Items left where they were: nobody independent was left along the chain.
    pub stuck: usize,
    pub new_reviewers: usize,
}

/// Which of a campaign's undecided items move.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Every undecided item of the campaign.
    AllPending,
    /// Every undecided item of one reviewer.
    PendingOf(&'a str),
    /// One item (of the reviewer deciding "don't know").
    Item(&'a str),
}

/// Where the selected items go.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// The next independent reviewer along each item's reviewer's chain.
    Chain,
    /// This person, for the items they may review independently.
    Person(&'a Candidate),
}

/// A reassignment to carry out.
#[derive(Debug, Clone, Copy)]
pub struct Reassignment<'a> {
    pub campaign_id: &'a str,
    pub selection: Selection<'a>,
    pub reason: ReassignReason,
    pub target: Target<'a>,
    /// Why, in the words of whoever asked (a delegation or an admin's move); kept in the event.
    pub note: Option<&'a str>,
    /// How a reviewer who asked for the move proved who they are (a delegation).
    pub auth: Option<&'a AuthContext>,
}

/// Moves the selected undecided items of the campaign along their reviewers' chains, inside
/// the caller's transaction; events go to `events`.
pub fn reassign(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    job: &Reassignment<'_>,
    events: &mut EventBatch,
) -> Result<Reassigned> {
    let Reassignment {
        campaign_id,
        selection,
        reason,
        target,
        note,
        auth,
    } = *job;
    let campaign = campaign(conn, campaign_id)?;
    // The fallback reviewers as the campaign was opened with (its definition may have
    // changed or gone since).
    let scope: serde_json::Value = serde_json::from_str(&campaign.scope)?;
    let names = |key: &str| -> Vec<String> {
        scope[key]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let seq = current_sync_run(conn, &campaign.source)?
        .map(|run| run.seq)
        .ok_or_else(|| Error::Conflict(format!("source {} has no snapshot", campaign.source)))?;
    let (named, fallbacks) = match target {
        Target::Chain => (
            available_people(
                conn,
                &campaign.source,
                seq,
                "named_reviewers",
                &names("named_reviewers"),
            )?,
            available_people(
                conn,
                &campaign.source,
                seq,
                "fallback_reviewers",
                &names("fallback_reviewers"),
            )?,
        ),
        Target::Person(_) => (Vec::new(), Vec::new()),
    };
    let mut reviewers: HashMap<String, Reviewer> = reviewers_of(conn, campaign_id)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    // Only the current stage's: an undecided access of an earlier stage is waiting for a
    // move between stages to take it on, and goes with it.
    let mut query = review_items::table
        .filter(review_items::campaign_id.eq(campaign_id))
        .filter(review_items::state.eq(ITEM_PENDING))
        .filter(review_items::stage.eq(campaign.stage))
        .select((
            review_items::id,
            review_items::reviewer_id,
            review_items::identity_external_id,
            review_items::identity_email,
            review_items::entitlement_external_id,
            review_items::privileged,
        ))
        .into_boxed();
    query = match selection {
        Selection::AllPending => query,
        Selection::PendingOf(reviewer) => query.filter(review_items::reviewer_id.eq(reviewer)),
        Selection::Item(item) => query.filter(review_items::id.eq(item)),
    };
    let mut pending: Vec<PendingItem> = query
        .order(review_items::id.asc())
        .load::<(String, String, String, Option<String>, String, bool)>(conn)?
        .into_iter()
        .map(PendingItem::from)
        .collect();
    // PostgreSQL: lock the rows in id order (the order every writer of several items takes
    // them in) and keep those still undecided with the reviewer they were read with; a
    // decision or another move may have landed since the read. SQLite's immediate
    // transaction holds them already.
    if let DbConnection::Postgres(pg) = conn {
        let ids: Vec<&String> = pending.iter().map(|p| &p.id).collect();
        let mut locked: HashSet<(String, String)> = HashSet::with_capacity(ids.len());
        for chunk in ids.chunks(IDS_PER_EVENT) {
            locked.extend(
                review_items::table
                    .filter(review_items::id.eq_any(chunk))
                    .filter(review_items::state.eq(ITEM_PENDING))
                    .select((review_items::id, review_items::reviewer_id))
                    .order(review_items::id.asc())
                    .for_update()
                    .load::<(String, String)>(pg)?,
            );
        }
        pending.retain(|p| locked.contains(&(p.id.clone(), p.reviewer_id.clone())));
    }

    let declined = declined_by(conn, campaign_id)?;
    let mut chains: HashMap<String, Vec<Candidate>> = HashMap::new();
    let mut facts = CandidateFacts::default();
    let mut moves: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut outcome = Reassigned::default();
    for item in &pending {
        let from = reviewers[&item.reviewer_id].clone();
        if !chains.contains_key(&from.id) {
            let chain = match target {
                Target::Chain => {
                    let lists = [named.as_slice(), fallbacks.as_slice()];
                    chain_of(conn, &campaign.source, seq, &from, &lists)?
                }
                Target::Person(person) => vec![person.clone()],
            };
            chains.insert(from.id.clone(), chain);
        }
        let mut chosen = None;
        for candidate in &chains[&from.id] {
            let passed_on = declined
                .get(&item.id)
                .is_some_and(|emails| emails.contains(&candidate.email.to_ascii_lowercase()));
            if !candidate.email.eq_ignore_ascii_case(&from.email)
                && !passed_on
                && facts.independent(conn, campaign_id, candidate, item)?
            {
                chosen = Some(candidate.clone());
                break;
            }
        }
        let Some(target) = chosen else {
            outcome.stuck += 1;
            continue;
        };
        let to_id = match reviewers
            .values()
            .find(|r| r.email.eq_ignore_ascii_case(&target.email))
        {
            Some(existing) => existing.id.clone(),
            None => {
                let id = new_id();
                insert_reviewers(conn, campaign_id, &[(id.clone(), target.clone())])?;
                reviewers.insert(id.clone(), reviewer_row(&id, campaign_id, &target));
                outcome.new_reviewers += 1;
                id
            }
        };
        facts.plan(&item.holder, &target);
        moves
            .entry((from.id.clone(), to_id))
            .or_default()
            .push(item.id.clone());
    }

    let mut ordered: Vec<_> = moves.into_iter().collect();
    ordered.sort();
    let mut notified = HashSet::new();
    for ((from, to), ids) in ordered {
        for chunk in ids.chunks(IDS_PER_EVENT) {
            diesel::update(review_items::table.filter(review_items::id.eq_any(chunk)))
                .set((
                    review_items::reviewer_id.eq(&to),
                    review_items::routing.eq(reason.as_str()),
                ))
                .execute(conn)?;
            outcome.items += chunk.len();
            events.push(
                EventKind::ItemsReassigned,
                Some(campaign_id),
                json!({
                    "campaign": campaign_id,
                    "from_reviewer": from,
                    "to_reviewer": to,
                    "reason": reason.as_str(),
                    "note": note,
                    "auth": auth,
                    "items": chunk,
                }),
            );
        }
        if !ids.is_empty() && notified.insert(to.clone()) {
            enqueue_escalation(conn, now, campaign_id, &to, events)?;
        }
    }
    Ok(outcome)
}

struct PendingItem {
    id: String,
    reviewer_id: String,
    holder: String,
    holder_email: Option<String>,
    entitlement: String,
    privileged: bool,
}

impl From<(String, String, String, Option<String>, String, bool)> for PendingItem {
    fn from(row: (String, String, String, Option<String>, String, bool)) -> Self {
        PendingItem {
            id: row.0,
            reviewer_id: row.1,
            holder: row.2,
            holder_email: row.3,
            entitlement: row.4,
            privileged: row.5,
        }
    }
}

/// For each item, the (lower-cased) addresses of the reviewers who answered "don't know" on
/// it: it never goes back to them.
fn declined_by(
    conn: &mut DbConnection,
    campaign_id: &str,
) -> Result<HashMap<String, HashSet<String>>> {
    let rows: Vec<(String, String)> = decisions::table
        .inner_join(reviewers::table.on(reviewers::id.eq(decisions::reviewer_id)))
        .filter(decisions::campaign_id.eq(campaign_id))
        .filter(decisions::outcome.eq(DecisionOutcome::DontKnow.as_str()))
        .select((decisions::item_id, reviewers::email))
        .load(conn)?;
    let mut out: HashMap<String, HashSet<String>> = HashMap::new();
    for (item, email) in rows {
        out.entry(item)
            .or_default()
            .insert(email.to_ascii_lowercase());
    }
    Ok(out)
}

/// What the independence rules need to know of a candidate, read once per candidate: who
/// reviews them in this campaign, and which privileged groups under review they hold; plus
/// the moves planned so far in this run (a move makes its new reviewer a reviewer of the
/// item's holder, which a later move must not mirror).
#[derive(Default)]
struct CandidateFacts {
    known: HashMap<String, (HashSet<String>, HashSet<String>)>,
    /// Holder → the people given one of their items by this run.
    planned: HashMap<String, HashSet<String>>,
}

impl CandidateFacts {
    fn plan(&mut self, holder: &str, target: &Candidate) {
        if let Some(person) = &target.external_id {
            self.planned
                .entry(holder.to_string())
                .or_default()
                .insert(person.clone());
        }
    }

    fn independent(
        &mut self,
        conn: &mut DbConnection,
        campaign_id: &str,
        candidate: &Candidate,
        item: &PendingItem,
    ) -> Result<bool> {
        let is_holder = candidate.external_id.as_deref() == Some(item.holder.as_str())
            || item
                .holder_email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&candidate.email));
        if is_holder {
            return Ok(false);
        }
        let Some(person) = candidate.external_id.as_deref() else {
            // An address outside the directory holds nothing and is reviewed by nobody.
            return Ok(true);
        };
        if !self.known.contains_key(person) {
            let rows: Vec<(Option<String>, String, bool)> = review_items::table
                .inner_join(reviewers::table)
                .filter(review_items::campaign_id.eq(campaign_id))
                .filter(review_items::identity_external_id.eq(person))
                .select((
                    reviewers::identity_external_id,
                    review_items::entitlement_external_id,
                    review_items::privileged,
                ))
                .load(conn)?;
            let their_reviewers = rows.iter().filter_map(|r| r.0.clone()).collect();
            let privileged_held = rows.iter().filter(|r| r.2).map(|r| r.1.clone()).collect();
            self.known
                .insert(person.to_string(), (their_reviewers, privileged_held));
        }
        let (their_reviewers, privileged_held) = &self.known[person];
        let mutual = their_reviewers.contains(&item.holder)
            || self
                .planned
                .get(person)
                .is_some_and(|planned| planned.contains(&item.holder));
        let holds_group = item.privileged && privileged_held.contains(&item.entitlement);
        Ok(!mutual && !holds_group)
    }
}

/// The chain after `from`: their manager in the current snapshot (active, with an email),
/// then the named reviewers and the fallbacks (`lists`, in chain order), starting after
/// `from` when `from` is on one of them; never `from` again.
fn chain_of(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    from: &Reviewer,
    lists: &[&[Candidate]],
) -> Result<Vec<Candidate>> {
    let mut chain = Vec::new();
    if let Some(person) = &from.identity_external_id
        && let Some(manager) = active_manager(conn, source, seq, person)?
    {
        chain.push(manager);
    }
    let later: Vec<&Candidate> = lists.iter().flat_map(|list| list.iter()).collect();
    let after = later
        .iter()
        .rposition(|c| c.email.eq_ignore_ascii_case(&from.email))
        .map_or(0, |i| i + 1);
    chain.extend(later[after..].iter().map(|c| (*c).clone()));
    chain.retain(|c| !c.email.eq_ignore_ascii_case(&from.email));
    Ok(chain)
}

fn active_manager(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    person: &str,
) -> Result<Option<Candidate>> {
    let manager_dn: Option<Option<String>> = identity_versions::table
        .filter(identity_versions::source.eq(source))
        .filter(identity_versions::external_id.eq(person))
        .filter(crate::as_of!(identity_versions, seq))
        .select(identity_versions::manager_dn_norm)
        .first(conn)
        .optional()?;
    let Some(dn) = manager_dn.flatten() else {
        return Ok(None);
    };
    let manager: Option<(String, String, String, Option<String>)> = identity_versions::table
        .filter(identity_versions::source.eq(source))
        .filter(identity_versions::dn_norm.eq(dn))
        .filter(identity_versions::status.eq("active"))
        .filter(crate::as_of!(identity_versions, seq))
        .select((
            identity_versions::external_id,
            identity_versions::login,
            identity_versions::display_name,
            identity_versions::email,
        ))
        .first(conn)
        .optional()?;
    Ok(
        manager.and_then(|(external_id, login, display_name, email)| {
            Some(Candidate {
                external_id: Some(external_id),
                login: Some(login),
                email: email.filter(|e| !e.is_empty())?,
                display_name,
            })
        }),
    )
}

fn reviewer_row(id: &str, campaign_id: &str, c: &Candidate) -> Reviewer {
    Reviewer {
        id: id.to_string(),
        campaign_id: campaign_id.to_string(),
        identity_external_id: c.external_id.clone(),
        login: c.login.clone(),
        email: c.email.clone(),
        display_name: c.display_name.clone(),
    }
}
