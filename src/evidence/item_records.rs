//! One record per review item for the evidence pack (`items.csv`, `items.jsonl`): the whole
//! population under review, decided or not, so that an auditor reconciles it against the
//! campaign without asking anyone. Each row says who held what (directly or via which
//! groups), who reviewed it and why them, where it ended (approved, revoked, or nobody
//! answered and what the no-response policy did), and the latest decision with how its
//! maker authenticated; the full history of decisions is `decisions.jsonl`.

use std::collections::HashMap;
use std::io::Write;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::campaigns::model::ReviewItem;
use crate::db::DbConnection;
use crate::db::schema::{decisions, review_items, reviewers};
use crate::db::time::from_db;
use crate::error::{Error, Result};
use crate::evidence::spreadsheet::neutralize_csv_cell;

/// Items read per query.
const PAGE: i64 = 1_000;

/// One review item as the pack shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemRecord {
    pub item_id: String,
    pub person_id: String,
    pub person_login: String,
    pub person_name: String,
    pub person_email: Option<String>,
    pub person_status: String,
    pub group_id: String,
    pub group_name: String,
    pub group_dn: String,
    pub privileged: bool,
    /// The chain of groups the access comes through; none for a direct member.
    pub via: Option<String>,
    /// When attest first saw the access (not necessarily when it was granted).
    pub first_seen_at: String,
    pub reviewer_email: String,
    pub reviewer_name: String,
    /// Why this reviewer (`manager`, `owner`, `fallback`, a reroute or a reassignment).
    pub routing: String,
    pub stage: i64,
    /// `approved`, `revoked`, `pending` (campaign still open) or `no_response`.
    pub outcome: String,
    /// For `no_response`: what the policy did (`flag`, `keep`, `revoke`).
    pub no_response_outcome: Option<String>,
    pub decided_at: Option<String>,
    pub approved_until: Option<String>,
    /// When an approval until a date expired into the revocation.
    pub approval_expired_at: Option<String>,
    pub last_decision_id: Option<String>,
    pub last_comment: Option<String>,
    pub last_auth_method: Option<String>,
}

pub const ITEM_CSV_HEADER: [&str; 24] = [
    "item_id",
    "person_id",
    "person_login",
    "person_name",
    "person_email",
    "person_status",
    "group_id",
    "group_name",
    "group_dn",
    "privileged",
    "via",
    "first_seen_at",
    "reviewer_email",
    "reviewer_name",
    "routing",
    "stage",
    "outcome",
    "no_response_outcome",
    "decided_at",
    "approved_until",
    "approval_expired_at",
    "last_decision_id",
    "last_comment",
    "last_auth_method",
];

impl ItemRecord {
    pub fn csv_row(&self) -> Vec<String> {
        let text = |value: &Option<String>| value.clone().unwrap_or_default();
        [
            self.item_id.clone(),
            self.person_id.clone(),
            self.person_login.clone(),
            self.person_name.clone(),
            text(&self.person_email),
            self.person_status.clone(),
            self.group_id.clone(),
            self.group_name.clone(),
            self.group_dn.clone(),
            self.privileged.to_string(),
            text(&self.via),
            self.first_seen_at.clone(),
            self.reviewer_email.clone(),
            self.reviewer_name.clone(),
            self.routing.clone(),
            self.stage.to_string(),
            self.outcome.clone(),
            text(&self.no_response_outcome),
            text(&self.decided_at),
            text(&self.approved_until),
            text(&self.approval_expired_at),
            text(&self.last_decision_id),
            text(&self.last_comment),
            text(&self.last_auth_method),
        ]
        .iter()
        .map(|cell| neutralize_csv_cell(cell))
        .collect()
    }
}

fn rfc3339(t: NaiveDateTime) -> String {
    from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Calls `visit` with every item of the campaign, in id order, a page at a time.
pub fn for_each_item(
    conn: &mut DbConnection,
    campaign_id: &str,
    mut visit: impl FnMut(&ItemRecord) -> Result<()>,
) -> Result<u64> {
    let reviewer_rows: HashMap<String, (String, String)> = reviewers::table
        .filter(reviewers::campaign_id.eq(campaign_id))
        .select((reviewers::id, reviewers::email, reviewers::display_name))
        .load::<(String, String, String)>(conn)?
        .into_iter()
        .map(|(id, email, name)| (id, (email, name)))
        .collect();
    let mut after = String::new();
    let mut count = 0u64;
    loop {
        let page: Vec<ReviewItem> = review_items::table
            .filter(review_items::campaign_id.eq(campaign_id))
            .filter(review_items::id.gt(&after))
            .order(review_items::id.asc())
            .limit(PAGE)
            .select(ReviewItem::as_select())
            .load(conn)?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        after = last.id.clone();
        let ids: Vec<&String> = page.iter().map(|i| &i.id).collect();
        // The latest decision of each item of the page (ties by id, as the history orders).
        let mut latest: HashMap<String, (String, Option<String>, String)> = HashMap::new();
        let rows: Vec<(String, String, Option<String>, String)> = decisions::table
            .filter(decisions::item_id.eq_any(&ids))
            .order((decisions::decided_at.asc(), decisions::id.asc()))
            .select((
                decisions::item_id,
                decisions::id,
                decisions::comment,
                decisions::auth_method,
            ))
            .load(conn)?;
        for (item, id, comment, auth) in rows {
            latest.insert(item, (id, comment, auth));
        }
        for item in page {
            let (reviewer_email, reviewer_name) = reviewer_rows
                .get(&item.reviewer_id)
                .cloned()
                .ok_or_else(|| Error::Internal(format!("item {} has no reviewer", item.id)))?;
            let last = latest.remove(&item.id);
            let record = ItemRecord {
                person_id: item.identity_external_id,
                person_login: item.identity_login,
                person_name: item.identity_name,
                person_email: item.identity_email,
                person_status: item.identity_status,
                group_id: item.entitlement_external_id,
                group_name: item.entitlement_name,
                group_dn: item.entitlement_dn,
                privileged: item.privileged,
                via: item.via,
                first_seen_at: rfc3339(item.granted_since),
                reviewer_email,
                reviewer_name,
                routing: item.routing,
                stage: item.stage,
                outcome: item.state,
                no_response_outcome: item.no_response_outcome,
                decided_at: item.decided_at.map(rfc3339),
                approved_until: item.approved_until.map(rfc3339),
                approval_expired_at: item.expired_at.map(rfc3339),
                last_decision_id: last.as_ref().map(|l| l.0.clone()),
                last_comment: last.as_ref().and_then(|l| l.1.clone()),
                last_auth_method: last.map(|l| l.2),
                item_id: item.id,
            };
            visit(&record)?;
            count += 1;
        }
    }
}

/// Writes `items.csv` to `out`; returns how many rows.
pub fn write_items_csv<W: Write>(
    conn: &mut DbConnection,
    campaign_id: &str,
    out: &mut W,
) -> Result<u64> {
    let mut csv = csv::Writer::from_writer(out);
    let csv_error = |e: csv::Error| Error::Io(format!("cannot write items.csv: {e}"));
    csv.write_record(ITEM_CSV_HEADER).map_err(csv_error)?;
    let count = for_each_item(conn, campaign_id, |record| {
        csv.write_record(record.csv_row()).map_err(csv_error)
    })?;
    csv.flush()?;
    Ok(count)
}
