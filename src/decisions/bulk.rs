//! Bulk decisions: one reviewer approves or revokes several of their undecided items at once
//! (every undecided item of one person, of one group, or all that remain) with one comment.
//! The checks are those of a single decision; each item still gets its own decision row, and
//! the rows, the items' new states and their `decisions.recorded` events are one transaction.
//! Items already decided are left as they are: a bulk action never overturns a decision the
//! reviewer made one by one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::campaigns::model::ITEM_PENDING;
use crate::db::schema::{campaigns, decisions, review_items};
use crate::db::time::{from_db, to_db};
use crate::db::{DbConnection, new_id, write_tx};
use crate::decisions::reasons::ReasonRules;
use crate::decisions::record::{
    AuthContext, DecisionOutcome, approval_end, check_may_decide, clean_comment, holds,
};
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind};

/// Items named in one `decisions.recorded` event, at most.
const ITEMS_PER_EVENT: usize = 1_000;

/// Which of the reviewer's undecided items a bulk decision covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkScope {
    /// Every undecided item.
    Remaining,
    /// The undecided items of one person (their directory id).
    Person(String),
    /// The undecided items of one group (its directory id).
    Group(String),
}

impl BulkScope {
    /// Parses the form value: `remaining`, `person:ID` or `group:ID`.
    pub fn parse(text: &str) -> Result<BulkScope> {
        match text.split_once(':') {
            None if text == "remaining" => Ok(BulkScope::Remaining),
            Some(("person", id)) if !id.is_empty() => Ok(BulkScope::Person(id.to_string())),
            Some(("group", id)) if !id.is_empty() => Ok(BulkScope::Group(id.to_string())),
            _ => Err(Error::BadRequest(
                "choose which accesses to decide: all remaining, one person's or one group's"
                    .into(),
            )),
        }
    }

    fn describe(&self) -> serde_json::Value {
        match self {
            BulkScope::Remaining => json!({ "remaining": true }),
            BulkScope::Person(id) => json!({ "person": id }),
            BulkScope::Group(id) => json!({ "group": id }),
        }
    }
}

/// One reviewer's decision on a set of their undecided items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRequest {
    pub campaign_id: String,
    pub reviewer_id: String,
    pub scope: BulkScope,
    pub outcome: DecisionOutcome,
    pub comment: Option<String>,
    pub approved_until: Option<chrono::NaiveDate>,
    /// Which decisions need a reason (the comment); checked on every item in scope.
    pub reasons: ReasonRules,
}

/// Records the outcome on every undecided item of the reviewer in scope; returns how many.
pub fn record_bulk(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request: &BulkRequest,
    auth: &AuthContext,
) -> Result<usize> {
    let (campaign_id, reviewer_id, outcome) = (
        request.campaign_id.as_str(),
        request.reviewer_id.as_str(),
        request.outcome,
    );
    if outcome == DecisionOutcome::DontKnow {
        return Err(Error::BadRequest(
            "\"don't know\" is given one access at a time".into(),
        ));
    }
    let comment = clean_comment(request.comment.as_deref())?;
    let approved_until = approval_end(outcome, request.approved_until, now)?.map(to_db);
    let auth_json = serde_json::to_string(auth)?;
    write_tx(conn, |conn| {
        if let DbConnection::Postgres(pg) = conn {
            campaigns::table
                .find(campaign_id)
                .select(campaigns::id)
                .for_share()
                .first::<String>(pg)
                .optional()?;
        }
        // Undecided items are all in the campaign's current stage (an advance takes every
        // undecided one along), so no settled item of an earlier stage is in scope. A
        // reviewer belongs to one campaign: filtering by the reviewer alone lets the
        // (reviewer, state) index find their items without walking the campaign's.
        let mut query = review_items::table
            .filter(review_items::reviewer_id.eq(reviewer_id))
            .filter(review_items::state.eq(ITEM_PENDING))
            .select((
                review_items::id,
                review_items::identity_external_id,
                review_items::identity_email,
                review_items::privileged,
            ))
            .order(review_items::id.asc())
            .into_boxed();
        query = match &request.scope {
            BulkScope::Remaining => query,
            BulkScope::Person(id) => query.filter(review_items::identity_external_id.eq(id)),
            BulkScope::Group(id) => query.filter(review_items::entitlement_external_id.eq(id)),
        };
        let mut rows: Vec<(String, String, Option<String>, bool)> = query.load(conn)?;
        // PostgreSQL: lock the rows in id order (as every writer of several items does) and
        // keep those still undecided and still this reviewer's; SQLite's immediate
        // transaction holds them already. Rows first, then the reviewer, then the log.
        if let DbConnection::Postgres(pg) = conn {
            let ids: Vec<&String> = rows.iter().map(|(id, ..)| id).collect();
            let mut locked = std::collections::HashSet::with_capacity(ids.len());
            for chunk in ids.chunks(ITEMS_PER_EVENT) {
                locked.extend(
                    review_items::table
                        .filter(review_items::id.eq_any(chunk))
                        .filter(review_items::reviewer_id.eq(reviewer_id))
                        .filter(review_items::state.eq(ITEM_PENDING))
                        .select(review_items::id)
                        .order(review_items::id.asc())
                        .for_update()
                        .load::<String>(pg)?,
                );
            }
            rows.retain(|(id, ..)| locked.contains(id));
        }
        let (_, reviewer) = check_may_decide(conn, now, campaign_id, reviewer_id, auth)?;
        if reviewer.campaign_id != campaign_id {
            return Err(Error::Forbidden(
                "this reviewer does not review this campaign".into(),
            ));
        }
        let rows: Vec<(String, bool)> = rows
            .into_iter()
            .filter(|(_, holder, email, _)| !holds(&reviewer, holder, email.as_deref()))
            .map(|(id, _, _, privileged)| (id, privileged))
            .collect();
        for (_, privileged) in &rows {
            request.reasons.check(outcome, *privileged, comment)?;
        }
        let items: Vec<String> = rows.into_iter().map(|(id, _)| id).collect();
        let mut events = EventBatch::default();
        for chunk in items.chunks(ITEMS_PER_EVENT) {
            let decided: Vec<(String, &String)> = chunk.iter().map(|i| (new_id(), i)).collect();
            let rows: Vec<_> = decided
                .iter()
                .map(|(decision, item)| {
                    (
                        decisions::id.eq(decision.as_str()),
                        decisions::item_id.eq(item.as_str()),
                        decisions::campaign_id.eq(campaign_id),
                        decisions::reviewer_id.eq(reviewer_id),
                        decisions::outcome.eq(outcome.as_str()),
                        decisions::comment.eq(comment),
                        decisions::decided_at.eq(to_db(now)),
                        decisions::auth_method.eq(auth.method.as_str()),
                        decisions::auth_context.eq(auth_json.as_str()),
                        decisions::approved_until.eq(approved_until),
                    )
                })
                .collect();
            crate::insert_rows!(conn, decisions::table, &rows)?;
            diesel::update(review_items::table.filter(review_items::id.eq_any(chunk)))
                .set((
                    review_items::state.eq(outcome.item_state()),
                    review_items::decided_at.eq(Some(to_db(now))),
                    review_items::approved_until.eq(approved_until),
                    review_items::expired_at.eq(None::<chrono::NaiveDateTime>),
                ))
                .execute(conn)?;
            let pairs: Vec<_> = decided
                .iter()
                .map(|(decision, item)| json!({ "item": item, "decision": decision }))
                .collect();
            events.push(
                EventKind::DecisionsRecorded,
                Some(campaign_id),
                json!({
                    "campaign": campaign_id,
                    "reviewer": reviewer_id,
                    "outcome": outcome.as_str(),
                    "scope": request.scope.describe(),
                    "approved_until": approved_until.map(from_db),
                    "comment": comment,
                    "auth": auth,
                    "decisions": pairs,
                }),
            );
        }
        events.append_all(conn, now, &format!("reviewer:{reviewer_id}"))?;
        Ok(items.len())
    })
}
