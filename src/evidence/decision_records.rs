//! One record per decision for the evidence pack (`decisions.csv`, `decisions.jsonl`): the
//! full history of a campaign's decisions, changes of mind included, each with the context an
//! auditor needs to read it alone (who decided what about whose access, when, and how they
//! authenticated). The CSV is spreadsheet-safe; the JSON keeps the raw values.

use std::borrow::Cow;
use std::io::Write;

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::campaigns::model::Campaign;
use crate::db::DbConnection;
use crate::db::schema::{decisions, review_items, reviewers};
use crate::db::stored_time::{MaybeStoredTime, StoredTime};
use crate::db::time::rfc3339;
use crate::error::{Error, Result};
use crate::evidence::row_pipeline::{PageSender, read_and_format};
use crate::evidence::spreadsheet::safe_cell;
use crate::evidence::tally::{DecisionTally, Reviewers};

/// Decisions read per query.
const PAGE: i64 = 1_000;

/// One exported decision with the context an auditor needs to read it alone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub decided_at: String,
    pub campaign_id: String,
    pub item_id: String,
    pub outcome: String,
    pub comment: Option<String>,
    /// The reviewer's id in the campaign, as the decision's event names them.
    pub reviewer_id: String,
    pub reviewer_email: String,
    pub reviewer_name: String,
    pub person_login: String,
    pub person_name: String,
    pub person_email: Option<String>,
    pub group_name: String,
    pub group_dn: String,
    pub privileged: bool,
    pub auth_method: String,
    pub auth_context: serde_json::Value,
    /// An approval until this date (RFC 3339): it expires into a revocation then.
    pub approved_until: Option<String>,
    /// When the item's approval until a date expired (the item is now revoked).
    pub item_expired_at: Option<String>,
}

pub const CSV_HEADER: [&str; 17] = [
    "decision_id",
    "decided_at",
    "campaign_id",
    "item_id",
    "outcome",
    "comment",
    "reviewer_email",
    "reviewer_name",
    "person_login",
    "person_name",
    "person_email",
    "group_name",
    "group_dn",
    "privileged",
    "auth_method",
    "approved_until",
    "item_expired_at",
];

impl DecisionRecord {
    /// The CSV row, spreadsheet-safe.
    pub fn csv_row(&self) -> Vec<String> {
        self.csv_cells().into_iter().map(Cow::into_owned).collect()
    }

    /// The CSV row's cells, borrowed where they need no change.
    pub fn csv_cells(&self) -> [Cow<'_, str>; 17] {
        [
            self.decision_id.as_str(),
            self.decided_at.as_str(),
            self.campaign_id.as_str(),
            self.item_id.as_str(),
            self.outcome.as_str(),
            self.comment.as_deref().unwrap_or(""),
            self.reviewer_email.as_str(),
            self.reviewer_name.as_str(),
            self.person_login.as_str(),
            self.person_name.as_str(),
            self.person_email.as_deref().unwrap_or(""),
            self.group_name.as_str(),
            self.group_dn.as_str(),
            if self.privileged { "true" } else { "false" },
            self.auth_method.as_str(),
            self.approved_until.as_deref().unwrap_or(""),
            self.item_expired_at.as_deref().unwrap_or(""),
        ]
        .map(safe_cell)
    }
}

/// Writes, in one pass over the campaign's decisions, `decisions.csv` to `csv_out` and
/// `decisions.jsonl` to `jsonl_out`, counting them on the way; returns how many decisions
/// and the counts. The database is read on this thread, the rows formatted on another.
pub fn write_decision_files(
    conn: &mut DbConnection,
    campaign: &Campaign,
    reviewers: &Reviewers,
    csv_out: &mut (impl Write + Send),
    jsonl_out: &mut (impl Write + Send),
) -> Result<(u64, DecisionTally)> {
    let due_at = campaign.due_at;
    read_and_format(
        |pages| read_decision_pages(conn, &campaign.id, pages),
        move |pages| {
            let mut csv = csv::Writer::from_writer(csv_out);
            let csv_error = |e: csv::Error| Error::Io(format!("cannot write decisions.csv: {e}"));
            csv.write_record(CSV_HEADER).map_err(csv_error)?;
            let mut count = 0u64;
            let mut tally = DecisionTally::for_reviewers(reviewers.len());
            for page in pages {
                for row in page {
                    let reviewer = reviewers.number(&row.2.0).ok_or_else(|| {
                        Error::Internal(format!(
                            "decision {} was made by a reviewer outside the campaign",
                            row.0.0
                        ))
                    })?;
                    tally.count(reviewer, row.0.1.0, due_at);
                    let record = record_of(row);
                    csv.write_record(record.csv_cells().iter().map(|c| c.as_bytes()))
                        .map_err(csv_error)?;
                    serde_json::to_writer(&mut *jsonl_out, &record)?;
                    jsonl_out.write_all(b"\n")?;
                    count += 1;
                }
            }
            csv.flush()?;
            Ok((count, tally))
        },
    )
}

type DecisionColumns = (
    (
        String,
        StoredTime,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        MaybeStoredTime,
    ),
    (
        String,
        String,
        Option<String>,
        String,
        String,
        bool,
        MaybeStoredTime,
    ),
    (String, String, String),
);

/// Reads every decision of the campaign in decision order, a page at a time, and hands the
/// pages to `pages`.
fn read_decision_pages(
    conn: &mut DbConnection,
    campaign_id: &str,
    pages: &PageSender<Vec<DecisionColumns>>,
) -> Result<()> {
    let mut after: Option<(NaiveDateTime, String)> = None;
    loop {
        let mut query = decisions::table
            .inner_join(review_items::table)
            .inner_join(reviewers::table.on(reviewers::id.eq(decisions::reviewer_id)))
            .filter(decisions::campaign_id.eq(campaign_id))
            .into_boxed();
        if let Some((at, id)) = &after {
            // The range term first, so that the (campaign, time) index bounds the scan.
            query = query.filter(decisions::decided_at.ge(*at)).filter(
                decisions::decided_at
                    .gt(*at)
                    .or(decisions::id.gt(id.clone())),
            );
        }
        let rows: Vec<DecisionColumns> = query
            .order((decisions::decided_at.asc(), decisions::id.asc()))
            .limit(PAGE)
            .select((
                (
                    decisions::id,
                    decisions::decided_at,
                    decisions::campaign_id,
                    decisions::item_id,
                    decisions::outcome,
                    decisions::comment,
                    decisions::auth_method,
                    decisions::auth_context,
                    decisions::approved_until,
                ),
                (
                    review_items::identity_login,
                    review_items::identity_name,
                    review_items::identity_email,
                    review_items::entitlement_name,
                    review_items::entitlement_dn,
                    review_items::privileged,
                    review_items::expired_at,
                ),
                (reviewers::id, reviewers::email, reviewers::display_name),
            ))
            .load(conn)?;
        let Some(last) = rows.last() else { break };
        after = Some((last.0.1.0, last.0.0.clone()));
        pages.send(rows)?;
    }
    Ok(())
}

/// The record of one decision row.
fn record_of((d, item, reviewer): DecisionColumns) -> DecisionRecord {
    DecisionRecord {
        decision_id: d.0,
        decided_at: rfc3339(d.1.0),
        campaign_id: d.2,
        item_id: d.3,
        outcome: d.4,
        comment: d.5,
        auth_method: d.6,
        auth_context: serde_json::from_str(&d.7).unwrap_or(serde_json::Value::Null),
        approved_until: d.8.0.map(rfc3339),
        item_expired_at: item.6.0.map(rfc3339),
        person_login: item.0,
        person_name: item.1,
        person_email: item.2,
        group_name: item.3,
        group_dn: item.4,
        privileged: item.5,
        reviewer_id: reviewer.0,
        reviewer_email: reviewer.1,
        reviewer_name: reviewer.2,
    }
}
