//! Exceptions for the evidence pack (`exceptions.csv`): every review item that did not go the
//! plain way (its reviewer by the chain, decided on time), one row per item and exception:
//! rerouted by an independence rule or to the fallback, reassigned (escalation, "don't
//! know", delegation, an admin), nobody answered (and what the no-response policy did), or
//! decided after the due date. [`exceptions_of`] is the one rule: the export applies it to
//! the items, and `attest verify` re-derives the same rows from `items.jsonl`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::campaigns::model::{Campaign, ITEM_NO_RESPONSE, ReviewItem};
use crate::db::DbConnection;
use crate::db::schema::{review_items, reviewers};
use crate::db::time::from_db;
use crate::error::{Error, Result};
use crate::evidence::spreadsheet::neutralize_csv_cell;

/// Items read per query.
const PAGE: i64 = 1_000;

/// Routing reasons of the plain way: the chain named this reviewer.
const CHAIN_ROUTINGS: [&str; 3] = ["manager", "owner", "named"];
/// Routing reasons of items moved after opening.
const REASSIGNMENTS: [&str; 5] = [
    "escalated",
    "dont_know_escalated",
    "reviewer_unavailable",
    "delegated",
    "reassigned_by_admin",
];

pub const EXCEPTIONS_CSV_HEADER: [&str; 8] = [
    "item_id",
    "person_login",
    "person_name",
    "group_name",
    "privileged",
    "reviewer_email",
    "exception",
    "detail",
];

/// One exception of one item: (kind, detail).
pub type Exception = (&'static str, String);

/// The exceptions of an item with this routing reason, outcome, no-response policy outcome
/// and final decision time, in a campaign due at `due_at`.
pub fn exceptions_of(
    routing: &str,
    outcome: &str,
    no_response_outcome: Option<&str>,
    decided_at: Option<DateTime<Utc>>,
    due_at: DateTime<Utc>,
) -> Vec<Exception> {
    let mut found = Vec::new();
    if REASSIGNMENTS.contains(&routing) {
        found.push(("reassigned", routing.to_string()));
    } else if !CHAIN_ROUTINGS.contains(&routing) {
        found.push(("rerouted", routing.to_string()));
    }
    if outcome == ITEM_NO_RESPONSE {
        found.push((
            "no_response",
            no_response_outcome.unwrap_or("none").to_string(),
        ));
    }
    if let Some(at) = decided_at.filter(|at| *at > due_at) {
        found.push((
            "decided_after_due",
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ));
    }
    found
}

/// One row of `exceptions.csv`: the item's id, person login and name, group name,
/// privileged marker and reviewer email, then the exception; spreadsheet-safe.
pub fn exception_row(item: [&str; 6], kind: &str, detail: &str) -> Vec<String> {
    item.into_iter()
        .chain([kind, detail])
        .map(neutralize_csv_cell)
        .collect()
}

/// Writes `exceptions.csv` for the campaign to `out`; returns the count of each kind.
pub fn write_exceptions_csv<W: Write>(
    conn: &mut DbConnection,
    campaign: &Campaign,
    out: &mut W,
) -> Result<BTreeMap<String, u64>> {
    let reviewer_emails: HashMap<String, String> = reviewers::table
        .filter(reviewers::campaign_id.eq(&campaign.id))
        .select((reviewers::id, reviewers::email))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    let due_at = from_db(campaign.due_at);
    let mut csv = csv::Writer::from_writer(out);
    let csv_error = |e: csv::Error| Error::Io(format!("cannot write exceptions.csv: {e}"));
    csv.write_record(EXCEPTIONS_CSV_HEADER).map_err(csv_error)?;
    let mut counts = BTreeMap::new();
    let mut after = String::new();
    loop {
        // Only items that can have an exception; `exceptions_of` decides.
        let page: Vec<ReviewItem> = review_items::table
            .filter(review_items::campaign_id.eq(&campaign.id))
            .filter(review_items::id.gt(&after))
            .filter(
                review_items::routing
                    .ne_all(CHAIN_ROUTINGS)
                    .nullable()
                    .or(review_items::state.eq(ITEM_NO_RESPONSE).nullable())
                    .or(review_items::decided_at.gt(campaign.due_at)),
            )
            .order(review_items::id.asc())
            .limit(PAGE)
            .select(ReviewItem::as_select())
            .load(conn)?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.id.clone();
        for item in page {
            let found = exceptions_of(
                &item.routing,
                &item.state,
                item.no_response_outcome.as_deref(),
                item.decided_at.map(from_db),
                due_at,
            );
            let reviewer = reviewer_emails
                .get(&item.reviewer_id)
                .map(String::as_str)
                .unwrap_or_default();
            for (kind, detail) in found {
                *counts.entry(kind.to_string()).or_insert(0) += 1;
                let row = exception_row(
                    [
                        item.id.as_str(),
                        item.identity_login.as_str(),
                        item.identity_name.as_str(),
                        item.entitlement_name.as_str(),
                        if item.privileged { "true" } else { "false" },
                        reviewer,
                    ],
                    kind,
                    &detail,
                );
                csv.write_record(row).map_err(csv_error)?;
            }
        }
    }
    csv.flush()?;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_plain_way_has_no_exception() {
        let due = Utc.with_ymd_and_hms(2026, 3, 31, 0, 0, 0).unwrap();
        let on_time = Some(due - chrono::Duration::days(1));
        for routing in CHAIN_ROUTINGS {
            assert!(exceptions_of(routing, "approved", None, on_time, due).is_empty());
        }
    }

    #[test]
    fn each_departure_is_named() {
        let due = Utc.with_ymd_and_hms(2026, 3, 31, 0, 0, 0).unwrap();
        let late = Some(due + chrono::Duration::hours(2));
        assert_eq!(
            exceptions_of("self_review_rerouted", "revoked", None, late, due),
            vec![
                ("rerouted", "self_review_rerouted".to_string()),
                (
                    "decided_after_due",
                    "2026-03-31T02:00:00.000000Z".to_string()
                )
            ]
        );
        assert_eq!(
            exceptions_of("delegated", "no_response", Some("revoke"), None, due),
            vec![
                ("reassigned", "delegated".to_string()),
                ("no_response", "revoke".to_string())
            ]
        );
        assert_eq!(
            exceptions_of("fallback", "pending", None, None, due),
            vec![("rerouted", "fallback".to_string())]
        );
    }
}
