//! The counting half of `attest verify`: `items.csv` and `items.jsonl` list the same items,
//! each once; `summary.json` adds up (population = items = decided + undecided, in total,
//! per reviewer and per group) and says what the items say; `exceptions.csv` holds exactly
//! the exceptions the items imply. The first difference is named by file and row.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Read};

use chrono::{DateTime, Utc};

use crate::campaigns::model::{ITEM_APPROVED, ITEM_NO_RESPONSE, ITEM_PENDING, ITEM_REVOKED};
use crate::error::{Error, Result};
use crate::evidence::exceptions::{EXCEPTIONS_CSV_HEADER, exception_rows, kind_of};
use crate::evidence::item_records::{ITEM_CSV_HEADER, ItemRecord};
use crate::evidence::spreadsheet::next_row_is;
use crate::evidence::summary::{Outcomes, Summary};
use crate::evidence::verify_decisions::{ItemDecisions, ListedDecisions, instant};

fn failed(what: String) -> Error {
    Error::BadRequest(what)
}

/// What the items add up to.
#[derive(Default)]
struct Tally {
    totals: Outcomes,
    privileged: Outcomes,
    by_reviewer: BTreeMap<String, Outcomes>,
    by_group: BTreeMap<String, Outcomes>,
    /// Items whose final decision came after the due date.
    decided_after_due: u64,
    /// For unanswered items: what the no-response policy did, and how often.
    no_response_policy: BTreeMap<String, u64>,
    /// Exceptions by kind.
    exceptions: BTreeMap<String, u64>,
}

/// What the proved events say of single items.
#[derive(Default)]
pub struct ItemFacts {
    /// Item -> the no-response outcome it got at close (`items.unanswered`).
    pub unanswered: HashMap<String, String>,
    /// Items whose approval until a date expired (`approvals.expired`).
    pub expired: HashSet<String>,
    /// Items that went on to a later stage (`items.advanced`).
    pub advanced: HashSet<String>,
}

/// Checks the items against each other, the decisions, the summary and the exceptions, all
/// read side by side in item order; returns how many items there are.
pub fn reconcile_items(
    items_csv: impl Read,
    items_jsonl: impl BufRead,
    exceptions_csv: impl Read,
    decisions: &mut ListedDecisions,
    facts: &ItemFacts,
    summary: &Summary,
) -> Result<u64> {
    let due_at = instant(&summary.timeliness.due_at)
        .ok_or_else(|| failed("summary.json: timeliness.due_at is not RFC 3339".into()))?;
    let mut reader = csv::Reader::from_reader(items_csv);
    let header = reader
        .headers()
        .map_err(|e| failed(format!("items.csv: {e}")))?;
    if header.iter().ne(ITEM_CSV_HEADER) {
        return Err(failed(
            "items.csv: its header is not the pack format's".into(),
        ));
    }
    let mut rows = reader.records();
    let mut exceptions = csv::Reader::from_reader(exceptions_csv);
    let header = exceptions
        .headers()
        .map_err(|e| failed(format!("exceptions.csv: {e}")))?;
    if header.iter().ne(EXCEPTIONS_CSV_HEADER) {
        return Err(failed(
            "exceptions.csv: its header is not the pack format's".into(),
        ));
    }
    let mut exception_rows_read = exceptions.records();
    let mut exception_row = 1;
    let mut tally = Tally::default();
    let mut previous: Option<(String, String)> = None;
    let mut count = 0u64;
    for (line, text) in items_jsonl.lines().enumerate() {
        let at_line = |what: String| failed(format!("items.jsonl line {}: {what}", line + 1));
        let text = text.map_err(|e| at_line(e.to_string()))?;
        let item: ItemRecord = serde_json::from_str(&text).map_err(|e| at_line(e.to_string()))?;
        // By outcome then id, each once: a repeated or moved row is an edit.
        let key = (item.outcome.clone(), item.item_id.clone());
        if previous.as_ref().is_some_and(|p| *p >= key) {
            return Err(at_line(format!(
                "item {} is repeated or out of order",
                item.item_id
            )));
        }
        if !next_row_is(&mut rows, &item.csv_row(), "items.csv", line + 2).map_err(failed)? {
            return Err(failed(format!(
                "items.csv row {}: item {} differs from items.jsonl line {}",
                line + 2,
                item.item_id,
                line + 1
            )));
        }
        check_outcome(&item, decisions.of_item.remove(&item.item_id), facts)
            .map_err(|what| at_line(format!("item {}: {what}", item.item_id)))?;
        // The item's exceptions are the next rows of exceptions.csv.
        for expected in exception_rows(&item, due_at) {
            exception_row += 1;
            if !next_row_is(
                &mut exception_rows_read,
                &expected,
                "exceptions.csv",
                exception_row,
            )
            .map_err(failed)?
            {
                return Err(failed(format!(
                    "exceptions.csv row {exception_row}: not the {} exception of item {} that \
                     items.jsonl implies",
                    kind_of(&expected),
                    item.item_id
                )));
            }
            *tally
                .exceptions
                .entry(kind_of(&expected).to_string())
                .or_insert(0) += 1;
        }
        tally.add(&item, due_at);
        count += 1;
        previous = Some(key);
    }
    if rows.next().is_some() {
        return Err(failed("items.csv has more rows than items.jsonl".into()));
    }
    if exception_rows_read.next().is_some() {
        return Err(failed(format!(
            "exceptions.csv row {}: an exception no item of items.jsonl implies",
            exception_row + 1
        )));
    }
    if let Some((item, decided)) = decisions.of_item.iter().next() {
        return Err(failed(format!(
            "decisions.jsonl lists decision {} of item {item}, which items.jsonl does not list",
            decided.latest_id
        )));
    }
    check_summary(summary, &tally)?;
    if tally.exceptions != summary.exceptions {
        return Err(failed(format!(
            "summary.json counts exceptions {:?}, the items imply {:?}",
            summary.exceptions, tally.exceptions
        )));
    }
    Ok(count)
}

/// The item's outcome is what its latest listed decision made of it.
fn check_outcome(
    item: &ItemRecord,
    decided: Option<ItemDecisions>,
    facts: &ItemFacts,
) -> std::result::Result<(), String> {
    let decided_at = item.decided_at.as_deref().and_then(instant);
    let last = match (&item.last_decision_id, decided) {
        (None, None) => None,
        (Some(id), Some(decided)) if *id == decided.latest_id => Some(decided),
        (Some(id), _) => {
            return Err(format!(
                "its last decision {id} is not its latest listed decision"
            ));
        }
        (None, Some(decided)) => {
            return Err(format!(
                "decision {} of it is listed, the item names none",
                decided.latest_id
            ));
        }
    };
    let settled_by = |outcome: &str| {
        last.as_ref().is_some_and(|d| {
            d.latest_outcome == outcome && d.latest_at.is_some() && d.latest_at == decided_at
        })
    };
    let approved_until = item.approved_until.as_deref().and_then(instant);
    let approved_as_decided = last
        .as_ref()
        .is_some_and(|d| d.latest_approved_until == approved_until);
    // An approval until a date that passed: the decision set the date, the item's expiry is
    // no earlier, and an approvals.expired event names the item.
    let expired = approved_as_decided
        && approved_until.is_some()
        && item
            .approval_expired_at
            .as_deref()
            .and_then(instant)
            .is_some_and(|at| Some(at) >= approved_until)
        && facts.expired.contains(&item.item_id);
    let consistent = match item.outcome.as_str() {
        ITEM_APPROVED => {
            settled_by("approve") && approved_as_decided && item.approval_expired_at.is_none()
        }
        ITEM_REVOKED => {
            (settled_by("revoke") && item.approval_expired_at.is_none())
                || (settled_by("approve") && expired)
        }
        // Unanswered at close: the outcome the close event gave it.
        ITEM_NO_RESPONSE
            if facts.unanswered.get(&item.item_id).map(String::as_str)
                != Some(item.no_response_outcome.as_deref().unwrap_or("none")) =>
        {
            return Err("its no-response outcome is not the one the close recorded".into());
        }
        // Undecided: no decision, "don't know", or one of an earlier stage it went on from.
        ITEM_PENDING | ITEM_NO_RESPONSE => {
            decided_at.is_none()
                && (last
                    .as_ref()
                    .is_none_or(|d| d.latest_outcome == "dont_know")
                    || (item.stage > 1 && facts.advanced.contains(&item.item_id)))
        }
        other => {
            return Err(format!(
                "its outcome `{other}` is not one the pack format knows"
            ));
        }
    };
    if consistent {
        Ok(())
    } else {
        Err(format!(
            "its outcome {} and decision time do not follow from its latest decision",
            item.outcome
        ))
    }
}

impl Tally {
    fn add(&mut self, item: &ItemRecord, due_at: DateTime<Utc>) {
        self.totals.add(&item.outcome, 1);
        if item.privileged {
            self.privileged.add(&item.outcome, 1);
        }
        self.by_reviewer
            .entry(item.reviewer_email.clone())
            .or_default()
            .add(&item.outcome, 1);
        self.by_group
            .entry(item.group_id.clone())
            .or_default()
            .add(&item.outcome, 1);
        let decided_at = item.decided_at.as_deref().and_then(instant);
        if decided_at.is_some_and(|at| at > due_at) {
            self.decided_after_due += 1;
        }
        if item.outcome == ITEM_NO_RESPONSE {
            let outcome = item.no_response_outcome.as_deref().unwrap_or("none");
            *self
                .no_response_policy
                .entry(outcome.to_string())
                .or_insert(0) += 1;
        }
    }
}

fn differs(what: &str, said: &Outcomes, counted: &Outcomes) -> Error {
    failed(format!(
        "summary.json: {what} say {said:?}, the items add up to {counted:?}"
    ))
}

/// The summary's counts per `what` (reviewer, group) are the items' exactly, each listed
/// once and adding up; one listed without items must count nothing (a reviewer whose items
/// all moved on after they decided).
fn check_breakdown<'a>(
    what: &str,
    said: impl Iterator<Item = (&'a str, &'a Outcomes)>,
    counted: &BTreeMap<String, Outcomes>,
) -> Result<()> {
    let mut listed: BTreeMap<&str, &Outcomes> = BTreeMap::new();
    for (key, outcomes) in said {
        if !outcomes.reconciles() || listed.insert(key, outcomes).is_some() {
            return Err(failed(format!(
                "summary.json: {what} {key} is counted twice or does not add up"
            )));
        }
    }
    for (key, counted) in counted {
        match listed.remove(key.as_str()) {
            Some(said) if said == counted => {}
            Some(said) => return Err(differs(&format!("{what} {key}'s counts"), said, counted)),
            None => {
                return Err(failed(format!("summary.json does not count {what} {key}")));
            }
        }
    }
    match listed.iter().find(|(_, said)| said.items > 0) {
        Some((extra, _)) => Err(failed(format!(
            "summary.json counts items of {what} {extra}, who has none in items.jsonl"
        ))),
        None => Ok(()),
    }
}

fn check_summary(summary: &Summary, tally: &Tally) -> Result<()> {
    if !summary.totals.reconciles() || summary.totals != tally.totals {
        return Err(differs("the totals", &summary.totals, &tally.totals));
    }
    if summary.privileged != tally.privileged {
        return Err(differs(
            "the privileged counts",
            &summary.privileged,
            &tally.privileged,
        ));
    }
    check_breakdown(
        "reviewer",
        summary
            .by_reviewer
            .iter()
            .map(|r| (r.reviewer_email.as_str(), &r.outcomes)),
        &tally.by_reviewer,
    )?;
    check_breakdown(
        "group",
        summary
            .by_group
            .iter()
            .map(|g| (g.group_id.as_str(), &g.outcomes)),
        &tally.by_group,
    )?;
    let undecided = tally.totals.pending + tally.totals.no_response;
    if summary.timeliness.items_without_decision != undecided {
        return Err(failed(format!(
            "summary.json: timeliness counts {} items without a decision, the items {undecided}",
            summary.timeliness.items_without_decision
        )));
    }
    if summary.no_response_policy != tally.no_response_policy {
        return Err(failed(format!(
            "summary.json: the no-response policy's outcomes {:?} differ from the items' {:?}",
            summary.no_response_policy, tally.no_response_policy
        )));
    }
    if summary.timeliness.items_decided_after_due != tally.decided_after_due {
        return Err(failed(format!(
            "summary.json: timeliness counts {} items decided after the due date, the items {}",
            summary.timeliness.items_decided_after_due, tally.decided_after_due
        )));
    }
    Ok(())
}
