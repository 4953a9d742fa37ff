//! Campaigns after generation: listing with progress, overall and per reviewer (closing is
//! in `closing`).

use diesel::prelude::*;
use serde::Serialize;

use crate::campaigns::model::{
    Campaign, ITEM_APPROVED, ITEM_NO_RESPONSE, ITEM_PENDING, ITEM_REVOKED, reviewers_of,
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

/// One reviewer's progress in a campaign.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReviewerProgress {
    pub reviewer_id: String,
    pub name: String,
    pub email: String,
    pub items: i64,
    pub pending: i64,
}

/// Every reviewer of `campaign_id` with their items and how many are undecided, most
/// undecided first; one grouped query.
pub fn reviewer_progress(
    conn: &mut DbConnection,
    campaign_id: &str,
) -> Result<Vec<ReviewerProgress>> {
    let counts: Vec<(String, String, i64)> = review_items::table
        .filter(review_items::campaign_id.eq(campaign_id))
        .group_by((review_items::reviewer_id, review_items::state))
        .select((
            review_items::reviewer_id,
            review_items::state,
            diesel::dsl::count_star(),
        ))
        .load(conn)?;
    let mut progress: Vec<ReviewerProgress> = reviewers_of(conn, campaign_id)?
        .into_iter()
        .map(|r| ReviewerProgress {
            reviewer_id: r.id,
            name: r.display_name,
            email: r.email,
            items: 0,
            pending: 0,
        })
        .collect();
    let index: std::collections::HashMap<String, usize> = progress
        .iter()
        .enumerate()
        .map(|(at, p)| (p.reviewer_id.clone(), at))
        .collect();
    for (reviewer_id, state, count) in counts {
        if let Some(&at) = index.get(&reviewer_id) {
            progress[at].items += count;
            if state == ITEM_PENDING {
                progress[at].pending += count;
            }
        }
    }
    // Reviewers whose items all moved on (delegated, escalated) are not listed.
    progress.retain(|p| p.items > 0);
    progress.sort_by(|a, b| b.pending.cmp(&a.pending).then(a.name.cmp(&b.name)));
    Ok(progress)
}
