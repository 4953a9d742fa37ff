//! Recording one decision. The checks (campaign open, item belongs to this reviewer, nobody
//! decides on their own access), the history row, the item's new state and the evidence event
//! all happen in one transaction. Sending the same decision twice records it once. "Don't
//! know" is recorded the same way and passes the undecided item on to the next reviewer.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::campaigns::model::{
    ITEM_APPROVED, ITEM_PENDING, ITEM_REVOKED, campaign, item, reviewer,
};
use crate::campaigns::reassign::{ReassignReason, Reassignment, Selection, reassign};
use crate::db::schema::{campaigns, decisions, review_items};
use crate::db::time::to_db;
use crate::db::{DbConnection, new_id, write_tx};
use crate::error::{Error, Result};
use crate::evidence::{EventBatch, EventKind, append};
use crate::notify::links::{ensure_link_still_valid, lock_reviewer};

/// Longest comment kept with a decision.
pub const MAX_COMMENT_CHARS: usize = 2_000;

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

    fn item_state(self) -> &'static str {
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
    /// e.g. `email_link`.
    pub method: String,
    /// SHA-256 of the link token's id (never the token).
    pub link_jti_sha256: Option<String>,
    /// Short, non-reversible tag of the browser session that posted.
    pub session_tag: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
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
}

/// Records the request's outcome on its item, after checking the reviewer may decide it.
pub fn record_decision(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request: &DecisionRequest,
    auth: &AuthContext,
) -> Result<Recorded> {
    let (campaign_id, reviewer_id, item_id, outcome) = (
        request.campaign_id.as_str(),
        request.reviewer_id.as_str(),
        request.item_id.as_str(),
        request.outcome,
    );
    let comment = request
        .comment
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty());
    if comment.is_some_and(|c| c.chars().count() > MAX_COMMENT_CHARS) {
        return Err(Error::BadRequest(format!(
            "comment is longer than {MAX_COMMENT_CHARS} characters"
        )));
    }
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
        // The link may have been revoked since the request was authenticated: checked again
        // here, with the decision, so that no decision lands after its revocation (the
        // reviewer lock orders this transaction against a revocation of that reviewer's links).
        if let Some(jti_sha256) = &auth.link_jti_sha256 {
            lock_reviewer(conn, reviewer_id, false)?;
            ensure_link_still_valid(conn, jti_sha256, reviewer_id, campaign_id, now)?;
        }
        let campaign = campaign(conn, campaign_id)?;
        if !campaign.is_open() {
            return Err(Error::Conflict(
                "this review is closed; decisions are no longer accepted".into(),
            ));
        }
        let item = item(conn, item_id)
            .map_err(|_| Error::Forbidden("this access is not in your review".into()))?;
        if item.campaign_id != campaign_id || item.reviewer_id != reviewer_id {
            return Err(Error::Forbidden("this access is not in your review".into()));
        }
        let reviewer = reviewer(conn, reviewer_id)?;
        if reviewer.identity_external_id.as_deref() == Some(item.identity_external_id.as_str())
            || item
                .identity_email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&reviewer.email))
        {
            return Err(Error::Forbidden("you cannot review your own access".into()));
        }
        if outcome == DecisionOutcome::DontKnow && item.state != ITEM_PENDING {
            return Err(Error::Conflict(
                "this access is already decided; change the decision to approve or revoke".into(),
            ));
        }
        if item.state == outcome.item_state() && outcome != DecisionOutcome::DontKnow {
            let last_comment: Option<Option<String>> = decisions::table
                .filter(decisions::item_id.eq(item_id))
                .order(decisions::decided_at.desc())
                .select(decisions::comment)
                .first(conn)
                .optional()?;
            if last_comment.flatten().as_deref() == comment {
                return Ok(Recorded::Unchanged);
            }
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
            ))
            .execute(conn)?;
        if outcome != DecisionOutcome::DontKnow {
            diesel::update(review_items::table.find(item_id))
                .set((
                    review_items::state.eq(outcome.item_state()),
                    review_items::decided_at.eq(Some(to_db(now))),
                ))
                .execute(conn)?;
        }
        append(
            conn,
            now,
            EventKind::DecisionRecorded,
            &format!("reviewer:{reviewer_id}"),
            Some(campaign_id),
            &json!({
                "decision": decision_id,
                "campaign": campaign_id,
                "item": item_id,
                "reviewer": reviewer_id,
                "outcome": outcome.as_str(),
                "previous_state": item.state,
                "comment": comment,
                "auth": auth,
            }),
        )?;
        if outcome == DecisionOutcome::DontKnow {
            pass_on(conn, now, campaign_id, item_id, reviewer_id)?;
        }
        Ok(Recorded::New(decision_id))
    })
}

/// Moves an item its reviewer does not know about to the next reviewer along their chain;
/// refused when nobody independent is left (the reviewer must then decide).
fn pass_on(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    item_id: &str,
    reviewer_id: &str,
) -> Result<()> {
    let actor = format!("reviewer:{reviewer_id}");
    let job = Reassignment {
        campaign_id,
        selection: Selection::Item(item_id),
        reason: ReassignReason::DontKnow,
        actor: &actor,
    };
    let mut events = EventBatch::default();
    let moved = reassign(conn, now, &job, &mut events)?;
    if moved.items == 0 {
        return Err(Error::Conflict(
            "nobody else can review this access; please approve or revoke it".into(),
        ));
    }
    events.append_all(conn, now, &actor)
}
