//! Campaigns after generation: listing with progress (closing is in `closing`).

use diesel::prelude::*;
use serde::Serialize;

use crate::campaigns::model::{
    Campaign, ITEM_APPROVED, ITEM_NO_RESPONSE, ITEM_PENDING, ITEM_REVOKED,
};
use crate::db::DbConnection;
use crate::db::schema::{campaigns, review_items};
use crate::error::Result;

/// A campaign with its item counts by state.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CampaignSummary {
    pub campaign: Campaign,
    pub items: i64,
    pub pending: i64,
    pub approved: i64,
    pub revoked: i64,
    /// Nobody decided before close (the no-response policy applied).
    pub no_response: i64,
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
        no_response: count_of(ITEM_NO_RESPONSE),
        campaign,
    })
}

/// Every campaign that has opened, newest first, with progress (one still generating is
/// not a campaign yet).
pub fn list_campaigns(conn: &mut DbConnection) -> Result<Vec<CampaignSummary>> {
    let all: Vec<Campaign> = campaigns::table
        .filter(campaigns::state.ne(crate::campaigns::model::STATE_GENERATING))
        .order(campaigns::opened_at.desc())
        .select(Campaign::as_select())
        .load(conn)?;
    all.into_iter().map(|c| summarize(conn, c)).collect()
}
