//! The counting half of `attest verify`: `items.csv` and `items.jsonl` list the same items,
//! each once; `summary.json` adds up (population = items = decided + undecided, in total,
//! per reviewer and per group) and says what the items say; `exceptions.csv` holds exactly
//! the exceptions the items imply. The first difference is named by file and row.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::evidence::exceptions::exceptions_of;
use crate::evidence::item_records::ItemRecord;
use crate::evidence::summary::{Outcomes, Summary};

fn failed(what: String) -> Error {
    Error::BadRequest(what)
}

fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A cell as written, without the quote that made it spreadsheet-safe.
fn cell(record: &csv::StringRecord, column: usize) -> String {
    record
        .get(column)
        .unwrap_or_default()
        .trim_start_matches('\'')
        .to_string()
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
    /// (item, kind, detail) -> how many times.
    exceptions: HashMap<(String, String, String), u64>,
}

/// The column index of each name in a CSV header.
fn columns<const N: usize>(
    file: &str,
    header: &csv::StringRecord,
    names: [&str; N],
) -> Result<[usize; N]> {
    let mut found = [0; N];
    for (slot, name) in found.iter_mut().zip(names) {
        *slot = header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| failed(format!("{file} has no column {name}")))?;
    }
    Ok(found)
}

/// Checks the items against each other, the summary and the exceptions; returns how many
/// items there are.
pub fn reconcile(
    items_csv: &[u8],
    items_jsonl: &str,
    summary: &Summary,
    exceptions_csv: &[u8],
) -> Result<u64> {
    let due_at = instant(&summary.timeliness.due_at)
        .ok_or_else(|| failed("summary.json: timeliness.due_at is not RFC 3339".into()))?;
    let mut reader = csv::Reader::from_reader(items_csv);
    let header = reader
        .headers()
        .map_err(|e| failed(format!("items.csv: {e}")))?
        .clone();
    let [id, outcome, reviewer, last] = columns(
        "items.csv",
        &header,
        ["item_id", "outcome", "reviewer_email", "last_decision_id"],
    )?;
    let mut from_csv = HashMap::new();
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| failed(format!("items.csv row {}: {e}", row + 2)))?;
        let key = cell(&record, id);
        let fields = vec![
            cell(&record, outcome),
            cell(&record, reviewer),
            cell(&record, last),
        ];
        if from_csv.insert(key.clone(), fields).is_some() {
            return Err(failed(format!(
                "items.csv row {}: item {key} is listed twice",
                row + 2
            )));
        }
    }
    let mut tally = Tally::default();
    let mut count = 0u64;
    for (line, text) in items_jsonl.lines().enumerate() {
        let item: ItemRecord = serde_json::from_str(text)
            .map_err(|e| failed(format!("items.jsonl line {}: {e}", line + 1)))?;
        let expected = vec![
            item.outcome.clone(),
            item.reviewer_email.clone(),
            item.last_decision_id.clone().unwrap_or_default(),
        ];
        if from_csv.remove(&item.item_id) != Some(expected) {
            return Err(failed(format!(
                "items.jsonl line {}: item {} differs from items.csv",
                line + 1,
                item.item_id
            )));
        }
        tally.add(&item, due_at);
        count += 1;
    }
    if let Some(extra) = from_csv.keys().next() {
        return Err(failed(format!(
            "items.csv lists item {extra}, items.jsonl does not"
        )));
    }
    check_summary(summary, &tally)?;
    check_exceptions(exceptions_csv, summary, tally.exceptions)?;
    Ok(count)
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
        for (kind, detail) in exceptions_of(
            &item.routing,
            &item.outcome,
            item.no_response_outcome.as_deref(),
            decided_at,
            due_at,
        ) {
            *self
                .exceptions
                .entry((item.item_id.clone(), kind.to_string(), detail))
                .or_insert(0) += 1;
        }
    }
}

fn check_summary(summary: &Summary, tally: &Tally) -> Result<()> {
    let differs = |what: &str, said: &Outcomes, counted: &Outcomes| {
        failed(format!(
            "summary.json: {what} say {said:?}, the items add up to {counted:?}"
        ))
    };
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
    let mut reviewers: BTreeMap<&str, &Outcomes> = BTreeMap::new();
    for r in &summary.by_reviewer {
        if !r.outcomes.reconciles() || reviewers.insert(&r.reviewer_email, &r.outcomes).is_some() {
            return Err(failed(format!(
                "summary.json: reviewer {} is counted twice or does not add up",
                r.reviewer_email
            )));
        }
    }
    for (email, counted) in &tally.by_reviewer {
        match reviewers.remove(email.as_str()) {
            Some(said) if said == counted => {}
            Some(said) => {
                return Err(differs(
                    &format!("reviewer {email}'s counts"),
                    said,
                    counted,
                ));
            }
            None => {
                return Err(failed(format!(
                    "summary.json does not count reviewer {email}"
                )));
            }
        }
    }
    // Left: reviewers listed for their decisions only (their items moved on).
    if let Some((extra, _)) = reviewers.iter().find(|(_, said)| said.items > 0) {
        return Err(failed(format!(
            "summary.json counts items of reviewer {extra}, who has none"
        )));
    }
    let mut groups: BTreeMap<&str, &Outcomes> = BTreeMap::new();
    for g in &summary.by_group {
        if !g.outcomes.reconciles() || groups.insert(&g.group_id, &g.outcomes).is_some() {
            return Err(failed(format!(
                "summary.json: group {} is counted twice or does not add up",
                g.group_id
            )));
        }
    }
    for (group, counted) in &tally.by_group {
        match groups.remove(group.as_str()) {
            Some(said) if said == counted => {}
            Some(said) => return Err(differs(&format!("group {group}'s counts"), said, counted)),
            None => {
                return Err(failed(format!("summary.json does not count group {group}")));
            }
        }
    }
    if let Some(extra) = groups.keys().next() {
        return Err(failed(format!(
            "summary.json counts group {extra}, which has no item"
        )));
    }
    let undecided = tally.totals.pending + tally.totals.no_response;
    if summary.timeliness.items_without_decision != undecided {
        return Err(failed(format!(
            "summary.json: timeliness counts {} items without a decision, the items {undecided}",
            summary.timeliness.items_without_decision
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

/// `exceptions.csv` lists exactly the exceptions the items imply, and the summary counts them.
fn check_exceptions(
    exceptions_csv: &[u8],
    summary: &Summary,
    mut expected: HashMap<(String, String, String), u64>,
) -> Result<()> {
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for ((_, kind, _), n) in &expected {
        *by_kind.entry(kind.clone()).or_insert(0) += n;
    }
    if by_kind != summary.exceptions {
        return Err(failed(format!(
            "summary.json counts exceptions {:?}, the items imply {by_kind:?}",
            summary.exceptions
        )));
    }
    let mut reader = csv::Reader::from_reader(exceptions_csv);
    let header = reader
        .headers()
        .map_err(|e| failed(format!("exceptions.csv: {e}")))?
        .clone();
    let [item, kind, detail] = columns(
        "exceptions.csv",
        &header,
        ["item_id", "exception", "detail"],
    )?;
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| failed(format!("exceptions.csv row {}: {e}", row + 2)))?;
        let key = (
            cell(&record, item),
            cell(&record, kind),
            cell(&record, detail),
        );
        match expected.get_mut(&key) {
            Some(n) if *n > 0 => *n -= 1,
            _ => {
                return Err(failed(format!(
                    "exceptions.csv row {}: item {} has no exception {} ({}) in items.jsonl",
                    row + 2,
                    key.0,
                    key.1,
                    key.2
                )));
            }
        }
    }
    if let Some(((item, kind, _), _)) = expected.iter().find(|(_, n)| **n > 0) {
        return Err(failed(format!(
            "exceptions.csv does not list the {kind} exception of item {item}"
        )));
    }
    Ok(())
}

/// What `decisions.jsonl` says per reviewer: decisions after the due date, first and last.
#[derive(Default)]
pub struct DecisionTally {
    per_reviewer: BTreeMap<String, ReviewerDecisions>,
    after_due: u64,
}

#[derive(Default, PartialEq, Eq, Debug)]
struct ReviewerDecisions {
    after_due: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl DecisionTally {
    /// Counts one listed decision of a campaign due at `due_at`.
    pub fn add(&mut self, decision: &serde_json::Value, due_at: DateTime<Utc>) {
        let email = decision["reviewer_email"].as_str().unwrap_or_default();
        let at = decision["decided_at"].as_str().and_then(instant);
        let reviewer = self.per_reviewer.entry(email.to_string()).or_default();
        if at.is_some_and(|at| at > due_at) {
            reviewer.after_due += 1;
            self.after_due += 1;
        }
        if let Some(at) = at {
            reviewer.first = Some(reviewer.first.map_or(at, |first| first.min(at)));
            reviewer.last = Some(reviewer.last.map_or(at, |last| last.max(at)));
        }
    }

    /// The summary's timeliness says what the decisions say, in total and per reviewer.
    pub fn check(mut self, summary: &Summary) -> Result<()> {
        if self.after_due != summary.timeliness.decisions_after_due {
            return Err(failed(format!(
                "summary.json counts {} decisions after the due date, decisions.jsonl has {}",
                summary.timeliness.decisions_after_due, self.after_due
            )));
        }
        for r in &summary.by_reviewer {
            let said = ReviewerDecisions {
                after_due: r.decisions_after_due,
                first: r.first_decision_at.as_deref().and_then(instant),
                last: r.last_decision_at.as_deref().and_then(instant),
            };
            let listed = self
                .per_reviewer
                .remove(&r.reviewer_email)
                .unwrap_or_default();
            if said != listed {
                return Err(failed(format!(
                    "summary.json: reviewer {}'s decisions (after the due date, first, last) \
                     differ from decisions.jsonl",
                    r.reviewer_email
                )));
            }
        }
        if let Some(email) = self.per_reviewer.keys().next() {
            return Err(failed(format!(
                "decisions.jsonl lists decisions of {email}, whom summary.json does not list"
            )));
        }
        Ok(())
    }
}
