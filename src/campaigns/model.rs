//! Campaign rows as the rest of the spine reads them.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConnection;
use crate::db::schema::{campaigns, review_items, reviewers};
use crate::db::stored_time::{MaybeStoredTime, StoredTime};
use crate::error::{Error, Result};

/// Items are being frozen; nobody sees the campaign until it opens.
pub const STATE_GENERATING: &str = "generating";
pub const STATE_OPEN: &str = "open";
pub const STATE_CLOSED: &str = "closed";

pub const ITEM_PENDING: &str = "pending";
pub const ITEM_APPROVED: &str = "approved";
pub const ITEM_REVOKED: &str = "revoked";
/// Nobody decided before close; `no_response_outcome` says what the policy did.
pub const ITEM_NO_RESPONSE: &str = "no_response";

#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = campaigns)]
pub struct Campaign {
    pub id: String,
    pub definition: String,
    pub title: String,
    pub source: String,
    pub sync_run_id: String,
    pub scope: String,
    pub period_start: NaiveDateTime,
    pub opened_at: NaiveDateTime,
    pub due_at: NaiveDateTime,
    pub closed_at: Option<NaiveDateTime>,
    pub state: String,
    /// Opened well after its period began (the service was down across the boundary).
    pub late: bool,
    /// The close at the due date was held: it would revoke more than the definition allows
    /// without an admin's confirmation.
    pub close_held_at: Option<NaiveDateTime>,
    /// The stage the campaign is in (1 unless it is reviewed in stages).
    pub stage: i64,
}

impl Campaign {
    pub fn is_open(&self) -> bool {
        self.state == STATE_OPEN
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = reviewers)]
pub struct Reviewer {
    pub id: String,
    pub campaign_id: String,
    pub identity_external_id: Option<String>,
    pub login: Option<String>,
    pub email: String,
    pub display_name: String,
}

/// A frozen copy of one grant at launch, and where its review stands.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = review_items)]
pub struct ReviewItem {
    pub id: String,
    pub campaign_id: String,
    pub reviewer_id: String,
    pub routing: String,
    pub identity_external_id: String,
    pub identity_login: String,
    pub identity_name: String,
    pub identity_email: Option<String>,
    pub identity_status: String,
    pub entitlement_external_id: String,
    pub entitlement_name: String,
    pub entitlement_dn: String,
    pub privileged: bool,
    pub via: Option<String>,
    #[diesel(deserialize_as = StoredTime)]
    pub granted_since: NaiveDateTime,
    pub stage: i64,
    pub state: String,
    #[diesel(deserialize_as = MaybeStoredTime)]
    pub decided_at: Option<NaiveDateTime>,
    /// For an item nobody decided, what the no-response policy did at close.
    pub no_response_outcome: Option<String>,
    /// An approval until this date: at the date it expires into a revocation.
    #[diesel(deserialize_as = MaybeStoredTime)]
    pub approved_until: Option<NaiveDateTime>,
    /// When an approval until a date expired (the item is then `revoked`).
    #[diesel(deserialize_as = MaybeStoredTime)]
    pub expired_at: Option<NaiveDateTime>,
}

pub fn campaign(conn: &mut DbConnection, id: &str) -> Result<Campaign> {
    campaigns::table
        .find(id)
        .select(Campaign::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("campaign {id} not found")))
}

pub fn reviewer(conn: &mut DbConnection, id: &str) -> Result<Reviewer> {
    reviewers::table
        .find(id)
        .select(Reviewer::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("reviewer {id} not found")))
}

pub fn reviewers_of(conn: &mut DbConnection, campaign_id: &str) -> Result<Vec<Reviewer>> {
    Ok(reviewers::table
        .filter(reviewers::campaign_id.eq(campaign_id))
        .order(reviewers::email.asc())
        .select(Reviewer::as_select())
        .load(conn)?)
}

/// A reviewer's items, privileged first, then by person and group.
pub fn items_of_reviewer(conn: &mut DbConnection, reviewer_id: &str) -> Result<Vec<ReviewItem>> {
    Ok(review_items::table
        .filter(review_items::reviewer_id.eq(reviewer_id))
        .order((
            review_items::privileged.desc(),
            review_items::identity_name.asc(),
            review_items::entitlement_name.asc(),
        ))
        .select(ReviewItem::as_select())
        .load(conn)?)
}

pub fn item(conn: &mut DbConnection, id: &str) -> Result<ReviewItem> {
    review_items::table
        .find(id)
        .select(ReviewItem::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("review item {id} not found")))
}
