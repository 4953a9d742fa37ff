//! Closing a campaign. Decisions stop; every item nobody decided gets the definition's
//! no-response outcome (`flag`, `keep` or `revoke`) and the state `no_response`, in the same
//! transaction as the close and its event. A revoking policy has a breaker: when it would
//! revoke more than `max_auto_revoke_share` of the items, the close needs an admin's
//! confirmation; `preview_close` shows beforehand exactly what a close would do.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::campaigns::lifecycle::{CampaignSummary, summarize};
use crate::campaigns::model::{
    Campaign, ITEM_NO_RESPONSE, ITEM_PENDING, STATE_CLOSED, STATE_OPEN, campaign,
};
use crate::campaigns::stages::stages_of;
use crate::config::{Config, NoResponse};
use crate::db::schema::{campaigns, review_items};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventBatch, EventKind, append};

/// Accesses a preview lists by name, at most; the count is always complete.
pub const PREVIEW_LISTED: i64 = 200;
/// Item ids named in one `items.unanswered` event, at most.
const IDS_PER_EVENT: usize = 1_000;

/// How a close treats the items nobody decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CloseRules {
    pub no_response: NoResponse,
    pub max_auto_revoke_share: f64,
    /// An admin confirmed revocations above the share.
    pub confirm_revocations: bool,
}

impl CloseRules {
    /// The rules of the campaign's definition; a campaign whose definition is no longer
    /// configured is closed with the safe default (`flag`).
    pub fn of(config: &Config, campaign: &Campaign) -> CloseRules {
        match config.campaigns.get(&campaign.definition) {
            Some(definition) => CloseRules {
                no_response: definition.no_response,
                max_auto_revoke_share: definition.max_auto_revoke_share,
                confirm_revocations: false,
            },
            None => CloseRules::default(),
        }
    }

    pub fn confirmed(self) -> CloseRules {
        CloseRules {
            confirm_revocations: true,
            ..self
        }
    }
}

impl Default for CloseRules {
    fn default() -> Self {
        CloseRules {
            no_response: NoResponse::Flag,
            max_auto_revoke_share: 0.2,
            confirm_revocations: false,
        }
    }
}

/// What closing now would do.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClosePreview {
    pub summary: CampaignSummary,
    /// The outcome each undecided item would get.
    pub no_response: &'static str,
    /// Items the close would revoke (decided revokes are counted in `summary`).
    pub would_revoke: i64,
    /// Up to [`PREVIEW_LISTED`] of them: (person's login, group name).
    pub would_revoke_listed: Vec<(String, String)>,
    /// The revocations exceed `max_auto_revoke_share`: the close needs confirmation.
    pub needs_confirmation: bool,
}

/// What closing `campaign_id` now, under `rules`, would do; writes nothing.
pub fn preview_close(
    conn: &mut DbConnection,
    campaign_id: &str,
    rules: &CloseRules,
) -> Result<ClosePreview> {
    let summary = summary_of(conn, campaign_id)?;
    let revoking = rules.no_response == NoResponse::Revoke;
    let would_revoke_listed = if revoking {
        review_items::table
            .filter(review_items::campaign_id.eq(campaign_id))
            .filter(review_items::state.eq(ITEM_PENDING))
            .order((
                review_items::identity_login.asc(),
                review_items::entitlement_name.asc(),
            ))
            .select((review_items::identity_login, review_items::entitlement_name))
            .limit(PREVIEW_LISTED)
            .load(conn)?
    } else {
        Vec::new()
    };
    let would_revoke = if revoking { summary.pending } else { 0 };
    Ok(ClosePreview {
        no_response: rules.no_response.as_str(),
        would_revoke,
        would_revoke_listed,
        needs_confirmation: exceeds_share(would_revoke, summary.items, rules),
        summary,
    })
}

fn summary_of(conn: &mut DbConnection, campaign_id: &str) -> Result<CampaignSummary> {
    let campaign = campaign(conn, campaign_id)?;
    summarize(conn, campaign)
}

fn exceeds_share(would_revoke: i64, items: i64, rules: &CloseRules) -> bool {
    would_revoke > 0 && (would_revoke as f64) > rules.max_auto_revoke_share * (items as f64)
}

/// Closes an open campaign under `rules`. Its links keep showing the (now read-only)
/// review. Refused, with nothing written, when the revocations need a confirmation that
/// `rules` does not carry.
pub fn close_campaign(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    campaign_id: &str,
    rules: &CloseRules,
    actor: &str,
) -> Result<CampaignSummary> {
    write_tx(conn, |conn| {
        let found = campaign(conn, campaign_id)?;
        // A campaign reviewed in stages may close before its last (the scheduler was down
        // past a stage's end): the event says in which stage it closed.
        let stages = stages_of(&found)?.0.len().max(1);
        // The state test in the UPDATE makes two concurrent closes produce one close.
        let closed_now = diesel::update(
            campaigns::table
                .find(campaign_id)
                .filter(campaigns::state.eq(STATE_OPEN)),
        )
        .set((
            campaigns::state.eq(STATE_CLOSED),
            campaigns::closed_at.eq(Some(to_db(at))),
        ))
        .execute(conn)?;
        if closed_now == 0 {
            return Err(Error::Conflict(format!(
                "campaign {campaign_id} is already closed"
            )));
        }
        // Counted after the campaign row is taken: no decision lands in between.
        let before = summary_of(conn, campaign_id)?;
        let would_revoke = match rules.no_response {
            NoResponse::Revoke => before.pending,
            _ => 0,
        };
        if exceeds_share(would_revoke, before.items, rules) && !rules.confirm_revocations {
            return Err(Error::Conflict(format!(
                "closing would revoke {would_revoke} of {} accesses nobody reviewed, more than \
                 max_auto_revoke_share ({}) allows; check them first (`attest campaign close \
                 {campaign_id} --dry-run`), then close again confirming the revocations: \
                 `--confirm-revocations` on the command line, {{\"confirm_revocations\": true}} \
                 in the API's body, or the confirmation box in the console",
                before.items, rules.max_auto_revoke_share
            )));
        }
        // Which items got the no-response outcome, by id: the evidence names each of them
        // (a revoking policy removes access nobody looked at).
        let unanswered_ids: Vec<String> = review_items::table
            .filter(review_items::campaign_id.eq(campaign_id))
            .filter(review_items::state.eq(ITEM_PENDING))
            .order(review_items::id.asc())
            .select(review_items::id)
            .load(conn)?;
        let unanswered = diesel::update(
            review_items::table
                .filter(review_items::campaign_id.eq(campaign_id))
                .filter(review_items::state.eq(ITEM_PENDING)),
        )
        .set((
            review_items::state.eq(ITEM_NO_RESPONSE),
            review_items::no_response_outcome.eq(Some(rules.no_response.as_str())),
        ))
        .execute(conn)?;
        let summary = summary_of(conn, campaign_id)?;
        let mut events = EventBatch::default();
        for chunk in unanswered_ids.chunks(IDS_PER_EVENT) {
            events.push(
                EventKind::ItemsUnanswered,
                Some(campaign_id),
                json!({
                    "campaign": campaign_id,
                    "outcome": rules.no_response.as_str(),
                    "items": chunk,
                }),
            );
        }
        events.push(
            EventKind::CampaignClosed,
            Some(campaign_id),
            json!({
                "campaign": campaign_id,
                "items": summary.items,
                "approved": summary.approved,
                "revoked": summary.revoked,
                "stage": found.stage,
                "stages": stages,
                "no_response": {
                    "items": unanswered,
                    "outcome": rules.no_response.as_str(),
                    "confirmed_above_share": rules.confirm_revocations
                        && exceeds_share(would_revoke, before.items, rules),
                },
            }),
        );
        events.append_all(conn, at, actor)?;
        Ok(summary)
    })
}

/// Records that the close at the due date waits for an admin (once per campaign); returns
/// whether this call recorded it.
pub fn hold_close(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    preview: &ClosePreview,
    actor: &str,
) -> Result<bool> {
    let campaign_id = preview.summary.campaign.id.as_str();
    write_tx(conn, |conn| {
        let held = diesel::update(
            campaigns::table
                .find(campaign_id)
                .filter(campaigns::state.eq(STATE_OPEN))
                .filter(campaigns::close_held_at.is_null()),
        )
        .set(campaigns::close_held_at.eq(Some(to_db(at))))
        .execute(conn)?;
        if held == 0 {
            return Ok(false);
        }
        append(
            conn,
            at,
            EventKind::CampaignCloseHeld,
            actor,
            Some(campaign_id),
            &json!({
                "campaign": campaign_id,
                "items": preview.summary.items,
                "would_revoke": preview.would_revoke,
                "no_response": preview.no_response,
            }),
        )?;
        Ok(true)
    })
}
