//! Recording one decision. The checks (campaign open, item belongs to this reviewer, nobody
//! decides on their own access), the history row, the item's new state and the evidence event
//! all happen in one transaction. Sending the same decision twice records it once. "Don't
//! know" is recorded the same way and passes the undecided item on to the next reviewer.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::campaigns::model::{
    Campaign, ITEM_APPROVED, ITEM_PENDING, ITEM_REVOKED, Reviewer, campaign, item, reviewer,
};
use crate::campaigns::reassign::{ReassignReason, Reassignment, Selection, Target, reassign};
use crate::db::schema::{campaigns, decisions, review_items};
use crate::db::time::{from_db, to_db};
use crate::db::{DbConnection, new_id, write_tx};
use crate::decisions::reasons::ReasonRules;
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind};
use crate::notify::links::{ensure_link_still_valid, lock_reviewer};

/// Longest comment kept with a decision.
pub const MAX_COMMENT_CHARS: usize = 2_000;
/// Furthest an approval until a date may reach: beyond a year, approve it outright and let
/// the next review look again.
pub const MAX_APPROVE_UNTIL_DAYS: i64 = 366;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionOutcome {
    Approve,
    Revoke,
    /// The reviewer cannot judge this access: it moves to the next reviewer along their
    /// chain (their manager, then the fallback reviewers) and stays undecided.
    #[serde(rename = "dont_know")]
    DontKnow,
}

impl DecisionOutcome {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "approve" => Ok(DecisionOutcome::Approve),
            "revoke" => Ok(DecisionOutcome::Revoke),
            "dont_know" => Ok(DecisionOutcome::DontKnow),
            other => Err(Error::BadRequest(format!(
                "unknown decision `{}`; use approve, revoke or dont_know",
                other.chars().take(20).collect::<String>()
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DecisionOutcome::Approve => "approve",
            DecisionOutcome::Revoke => "revoke",
            DecisionOutcome::DontKnow => "dont_know",
        }
    }

    pub(crate) fn item_state(self) -> &'static str {
        match self {
            DecisionOutcome::Approve => ITEM_APPROVED,
            DecisionOutcome::Revoke => ITEM_REVOKED,
            DecisionOutcome::DontKnow => ITEM_PENDING,
        }
    }
}

/// How the decider proved who they are; stored with the decision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuthContext {
    /// `email_link`, or `email_link+sso` / `email_link+sso+mfa` under `review.require_sso`.
    pub method: String,
    /// SHA-256 of the link token's id (never the token).
    pub link_jti_sha256: Option<String>,
    /// Short, non-reversible tag of the browser session that posted.
    pub session_tag: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// With `review.require_sso`: a tag of the provider account the reviewer signed in with
    /// (never the account's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sso_subject_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new decision row (its id) and its event were written.
    New(String),
    /// The item already had this outcome and comment: nothing written.
    Unchanged,
}

/// One reviewer's decision on one item, as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRequest {
    pub campaign_id: String,
    pub reviewer_id: String,
    pub item_id: String,
    pub outcome: DecisionOutcome,
    pub comment: Option<String>,
    /// With `Approve`: the approval holds until the start of this day (UTC), then expires
    /// into a revocation.
    pub approved_until: Option<NaiveDate>,
}

/// Checks an approval's end date against `now`; returns the instant it expires.
pub fn approval_end(
    outcome: DecisionOutcome,
    until: Option<NaiveDate>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    let Some(day) = until else {
        return Ok(None);
    };
    if outcome != DecisionOutcome::Approve {
        return Err(Error::BadRequest(
            "only an approval can carry an end date".into(),
        ));
    }
    let today = now.date_naive();
    if day <= today {
        return Err(Error::BadRequest(
            "the end date of a temporary approval must be after today".into(),
        ));
    }
    if day > today + Duration::days(MAX_APPROVE_UNTIL_DAYS) {
        return Err(Error::BadRequest(format!(
            "a temporary approval may last at most {MAX_APPROVE_UNTIL_DAYS} days; approve it \
             without an end date instead"
        )));
    }
    Ok(Some(day.and_time(NaiveTime::MIN).and_utc()))
}

/// What the decider's page showed and what the definition requires, checked inside the
/// decision's transaction. The default checks neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionChecks {
    pub reasons: ReasonRules,
    /// The item's latest decision when the decider's page showed it (`Some(None)`: none
    /// yet). Another one since means someone decided in between: the decision is refused
    /// as stale rather than silently overwriting theirs.
    pub seen_latest: Option<Option<String>>,
}

/// Records the request's outcome on its item, after checking the reviewer may decide it.
pub fn record_decision(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request: &DecisionRequest,
    auth: &AuthContext,
) -> Result<Recorded> {
    record_checked_decision(conn, now, request, auth, &DecisionChecks::default())
}

/// [`record_decision`], refusing a decision without a reason the definition requires and
/// one made on a stale page.
pub fn record_checked_decision(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request: &DecisionRequest,
    auth: &AuthContext,
    checks: &DecisionChecks,
) -> Result<Recorded> {
    let (campaign_id, reviewer_id, item_id, outcome) = (
        request.campaign_id.as_str(),
        request.reviewer_id.as_str(),
        request.item_id.as_str(),
        request.outcome,
    );
    let comment = clean_comment(request.comment.as_deref())?;
    let approved_until = approval_end(outcome, request.approved_until, now)?.map(to_db);
    write_tx(conn, |conn| {
        // PostgreSQL: hold the campaign against a concurrent close and serialise decisions on
        // the same item (SQLite's immediate transaction already serialises writers).
        if let DbConnection::Postgres(pg) = conn {
            campaigns::table
                .find(campaign_id)
                .select(campaigns::id)
                .for_share()
                .first::<String>(pg)
                .optional()?;
            review_items::table
                .find(item_id)
                .select(review_items::id)
                .for_update()
                .first::<String>(pg)
                .optional()?;
        }
        let (open_campaign, reviewer) =
            check_may_decide(conn, now, campaign_id, reviewer_id, auth)?;
        let item = item(conn, item_id)
            .map_err(|_| Error::Forbidden("this access is not in your review".into()))?;
        if item.campaign_id != campaign_id || item.reviewer_id != reviewer_id {
            return Err(Error::Forbidden("this access is not in your review".into()));
        }
        // Decided no earlier than the item's latest decision: two submissions racing for the
        // item's lock are recorded in the order they were applied (ties go by id, which is
        // made after the lock), so the history's last decision is the item's state.
        let latest: Option<(String, chrono::NaiveDateTime, Option<String>)> = decisions::table
            .filter(decisions::item_id.eq(item_id))
            .order((decisions::decided_at.desc(), decisions::id.desc()))
            .select((decisions::id, decisions::decided_at, decisions::comment))
            .first(conn)
            .optional()?;
        let now = latest
            .as_ref()
            .map_or(now, |(_, latest, _)| now.max(from_db(*latest)));
        if holds(
            &reviewer,
            &item.identity_external_id,
            item.identity_email.as_deref(),
        ) {
            return Err(Error::Forbidden("you cannot review your own access".into()));
        }
        // A campaign reviewed in stages: what an earlier stage settled is final.
        if item.stage < open_campaign.stage {
            return Err(Error::Conflict(
                "this access was settled in an earlier stage of the review; its decision is \
                 final"
                    .into(),
            ));
        }
        checks.reasons.check(outcome, item.privileged, comment)?;
        if outcome == DecisionOutcome::DontKnow && item.state != ITEM_PENDING {
            return Err(Error::Conflict(
                "this access is already decided; change the decision to approve or revoke".into(),
            ));
        }
        if item.state == outcome.item_state()
            && outcome != DecisionOutcome::DontKnow
            && item.approved_until == approved_until
            && latest.as_ref().and_then(|(_, _, c)| c.as_deref()) == comment
        {
            return Ok(Recorded::Unchanged);
        }
        if let Some(seen) = &checks.seen_latest
            && seen.as_deref() != latest.as_ref().map(|(id, ..)| id.as_str())
        {
            return Err(Error::Stale(
                "this access was decided by someone else after your page showed it; see its \
                 history and decide again"
                    .into(),
            ));
        }
        let decision_id = new_id();
        let auth_json = serde_json::to_string(auth)?;
        diesel::insert_into(decisions::table)
            .values((
                decisions::id.eq(&decision_id),
                decisions::item_id.eq(item_id),
                decisions::campaign_id.eq(campaign_id),
                decisions::reviewer_id.eq(reviewer_id),
                decisions::outcome.eq(outcome.as_str()),
                decisions::comment.eq(comment),
                decisions::decided_at.eq(to_db(now)),
                decisions::auth_method.eq(&auth.method),
                decisions::auth_context.eq(&auth_json),
                decisions::approved_until.eq(approved_until),
            ))
            .execute(conn)?;
        if outcome != DecisionOutcome::DontKnow {
            diesel::update(review_items::table.find(item_id))
                .set((
                    review_items::state.eq(outcome.item_state()),
                    review_items::decided_at.eq(Some(to_db(now))),
                    review_items::approved_until.eq(approved_until),
                    review_items::expired_at.eq(None::<chrono::NaiveDateTime>),
                ))
                .execute(conn)?;
        }
        // One batch appended last, after every row this decision changes (the log's lock is
        // always the last one a transaction takes).
        let mut events = EventBatch::default();
        events.push(
            EventKind::DecisionRecorded,
            Some(campaign_id),
            json!({
                "decision": decision_id,
                "campaign": campaign_id,
                "item": item_id,
                "reviewer": reviewer_id,
                "outcome": outcome.as_str(),
                "previous_state": item.state,
                "approved_until": approved_until.map(from_db),
                "comment": comment,
                "auth": auth,
            }),
        );
        if outcome == DecisionOutcome::DontKnow {
            pass_on(conn, now, campaign_id, item_id, &mut events)?;
        }
        events.append_all(conn, now, &format!("reviewer:{reviewer_id}"))?;
        Ok(Recorded::New(decision_id))
    })
}

/// The checks every decision makes inside its transaction, after its row locks: the link
/// still works (it may have been revoked since the request was authenticated; the reviewer
/// lock orders this against a revocation of that reviewer's links) and the campaign is open.
/// Returns the campaign and the reviewer.
pub(crate) fn check_may_decide(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
    auth: &AuthContext,
) -> Result<(Campaign, Reviewer)> {
    if let Some(jti_sha256) = &auth.link_jti_sha256 {
        lock_reviewer(conn, reviewer_id, false)?;
        ensure_link_still_valid(conn, jti_sha256, reviewer_id, campaign_id, now)?;
    }
    let found = campaign(conn, campaign_id)?;
    if !found.is_open() {
        return Err(Error::Conflict(
            "this review is closed; decisions are no longer accepted".into(),
        ));
    }
    Ok((found, reviewer(conn, reviewer_id)?))
}

/// A decision's comment, trimmed; none when blank; refused when too long.
pub(crate) fn clean_comment(comment: Option<&str>) -> Result<Option<&str>> {
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS) {
        return Err(Error::BadRequest(format!(
            "comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
    Ok(comment)
}

/// Whether the reviewer is the holder of an access (by directory id or email address).
pub(crate) fn holds(reviewer: &Reviewer, holder: &str, holder_email: Option<&str>) -> bool {
    reviewer.identity_external_id.as_deref() == Some(holder)
        || holder_email.is_some_and(|e| e.eq_ignore_ascii_case(&reviewer.email))
}

/// Moves an item its reviewer does not know about to the next reviewer along their chain;
/// refused when nobody independent is left (the reviewer must then decide).
fn pass_on(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    item_id: &str,
    events: &mut EventBatch,
) -> Result<()> {
    let job = Reassignment {
        campaign_id,
        selection: Selection::Item(item_id),
        reason: ReassignReason::DontKnow,
        target: Target::Chain,
        note: None,
        auth: None,
    };
    let moved = reassign(conn, now, &job, events)?;
    if moved.items == 0 {
        return Err(Error::Conflict(
            "nobody else can review this access; please approve or revoke it".into(),
        ));
    }
    Ok(())
}
