//! Exceptions for the evidence pack (`exceptions.csv`): every review item that did not go the
//! plain way (its reviewer by the chain, decided on time), one row per item and exception:
//! rerouted by an independence rule or to the fallback, reassigned (escalation, "don't
//! know", delegation, an admin), nobody answered (and what the no-response policy did), or
//! decided after the due date. [`exceptions_of`] is the one rule: the export applies it to
//! each item as it writes them ([`exception_rows_decided_at`]), and `attest verify`
//! re-derives the same rows from `items.jsonl` ([`exception_rows`]).

use chrono::{DateTime, Utc};

use crate::campaigns::model::ITEM_NO_RESPONSE;
use crate::evidence::item_records::ItemRecord;
use crate::evidence::spreadsheet::neutralize_csv_cell;

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

/// The rows of `exceptions.csv` for one item of a campaign due at `due_at`: its id, person
/// login and name, group name, privileged marker and reviewer email, then the exception and
/// its detail; spreadsheet-safe.
pub fn exception_rows(item: &ItemRecord, due_at: DateTime<Utc>) -> Vec<Vec<String>> {
    let decided_at = item
        .decided_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc));
    exception_rows_decided_at(item, decided_at, due_at)
}

/// [`exception_rows`] of an item whose final decision time is known as a time already.
pub fn exception_rows_decided_at(
    item: &ItemRecord,
    decided_at: Option<DateTime<Utc>>,
    due_at: DateTime<Utc>,
) -> Vec<Vec<String>> {
    let found = exceptions_of(
        &item.routing,
        &item.outcome,
        item.no_response_outcome.as_deref(),
        decided_at,
        due_at,
    );
    if found.is_empty() {
        return Vec::new();
    }
    let privileged = item.privileged.to_string();
    found
        .into_iter()
        .map(|(kind, detail)| {
            [
                item.item_id.as_str(),
                &item.person_login,
                &item.person_name,
                &item.group_name,
                &privileged,
                &item.reviewer_email,
                kind,
                &detail,
            ]
            .map(neutralize_csv_cell)
            .to_vec()
        })
        .collect()
}

/// The kind of an exception row.
pub fn kind_of(row: &[String]) -> &str {
    row.get(6).map_or("", String::as_str)
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
