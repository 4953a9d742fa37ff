//! Campaign lifecycle after generation: listing with progress, and closing. A closed campaign
//! accepts no further decisions; its items keep the state they had.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::campaigns::model::{
    Campaign, ITEM_APPROVED, ITEM_PENDING, ITEM_REVOKED, STATE_CLOSED, STATE_OPEN, campaign,
};
use crate::db::schema::{campaigns, review_items};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::evidence::{EventKind, append};

/// A campaign with its item counts by state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CampaignSummary {
    pub campaign: Campaign,
    pub items: i64,
    pub pending: i64,
    pub approved: i64,
    pub revoked: i64,
}

pub fn summarize(conn: &mut DbConnection, campaign: Campaign) -> Result<CampaignSummary> {
    let counts: Vec<(String, i64)> = review_items::table
        .filter(review_items::campaign_id.eq(&campaign.id))
        .group_by(review_items::state)
        .select((review_items::state, diesel::dsl::count_star()))
        .load(conn)?;
    let count_of = |state: &str| {
        counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n)
    };
    Ok(CampaignSummary {
        items: counts.iter().map(|(_, n)| n).sum(),
        pending: count_of(ITEM_PENDING),
        approved: count_of(ITEM_APPROVED),
        revoked: count_of(ITEM_REVOKED),
        campaign,
    })
}

/// Every campaign, newest first, with progress.
pub fn list_campaigns(conn: &mut DbConnection) -> Result<Vec<CampaignSummary>> {
    let all: Vec<Campaign> = campaigns::table
        .order(campaigns::opened_at.desc())
        .select(Campaign::as_select())
        .load(conn)?;
    all.into_iter().map(|c| summarize(conn, c)).collect()
}

/// Closes an open campaign. Its links keep showing the (now read-only) review.
pub fn close_campaign(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    campaign_id: &str,
    actor: &str,
) -> Result<CampaignSummary> {
    write_tx(conn, |conn| {
        campaign(conn, campaign_id)?;
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
        let closed = campaign(conn, campaign_id)?;
        let summary = summarize(conn, closed)?;
        append(
            conn,
            at,
            EventKind::CampaignClosed,
            actor,
            Some(campaign_id),
            &json!({
                "campaign": campaign_id,
                "items": summary.items,
                "approved": summary.approved,
                "revoked": summary.revoked,
                "pending": summary.pending,
            }),
        )?;
        Ok(summary)
    })
}
