//! The decisions half of `attest verify`: every row of `decisions.jsonl` is proved by an event
//! that says the same (item, reviewer, outcome, comment, approval end, how its maker
//! authenticated, and when), every decision an event proves is listed, `decisions.csv` is the
//! same rows made spreadsheet-safe, and the summary's timeliness and progress are what the
//! decisions say. The first difference is named by file and line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Read};

use chrono::{DateTime, NaiveDate, Utc};

use crate::error::{Error, Result};
use crate::evidence::decision_records::{CSV_HEADER, DecisionRecord};
use crate::evidence::spreadsheet::next_row_is;
use crate::evidence::summary::{DayProgress, Summary};

fn failed(what: String) -> Error {
    Error::BadRequest(what)
}

pub fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What a proved decision event says of one decision.
pub struct ProvedDecision {
    item: Option<String>,
    reviewer: Option<String>,
    outcome: Option<String>,
    comment: Option<String>,
    approved_until: Option<DateTime<Utc>>,
    auth_method: Option<String>,
    at: Option<DateTime<Utc>>,
}

impl ProvedDecision {
    /// From a `decision.recorded` or `decisions.recorded` event's payload, the item it names,
    /// and the event's time.
    pub fn of(payload: &serde_json::Value, item: &serde_json::Value, at: &str) -> ProvedDecision {
        let text = |value: &serde_json::Value| value.as_str().map(str::to_string);
        ProvedDecision {
            item: text(item),
            reviewer: text(&payload["reviewer"]),
            outcome: text(&payload["outcome"]),
            comment: text(&payload["comment"]),
            approved_until: payload["approved_until"].as_str().and_then(instant),
            auth_method: text(&payload["auth"]["method"]),
            at: instant(at),
        }
    }

    /// The first field of the listed decision that differs from the event, if any.
    fn matches(&self, listed: &DecisionRecord, campaign: &str) -> std::result::Result<(), &str> {
        let differs = [
            ("campaign", listed.campaign_id != campaign),
            ("item", Some(&listed.item_id) != self.item.as_ref()),
            (
                "reviewer",
                Some(&listed.reviewer_id) != self.reviewer.as_ref(),
            ),
            ("outcome", Some(&listed.outcome) != self.outcome.as_ref()),
            ("comment", listed.comment != self.comment),
            (
                "approved_until",
                listed.approved_until.as_deref().and_then(instant) != self.approved_until,
            ),
            (
                "auth_method",
                Some(&listed.auth_method) != self.auth_method.as_ref(),
            ),
            ("decided_at", instant(&listed.decided_at) != self.at),
        ];
        match differs.into_iter().find(|(_, differs)| *differs) {
            Some((field, _)) => Err(field),
            None => Ok(()),
        }
    }
}

/// What the decisions say of one item: its latest decision (in history order: time, then
/// id) and its first approval or revocation.
pub struct ItemDecisions {
    pub latest_at: Option<DateTime<Utc>>,
    pub latest_id: String,
    pub latest_outcome: String,
    /// The latest decision's approval end, if it approved until a date.
    pub latest_approved_until: Option<DateTime<Utc>>,
    pub first_decided: Option<DateTime<Utc>>,
}

/// What the decisions files hold, checked.
pub struct ListedDecisions {
    pub count: u64,
    /// Item id -> what its decisions say; the items' check takes each entry out.
    pub of_item: HashMap<String, ItemDecisions>,
    tally: DecisionTally,
}

/// Checks `decisions.jsonl` against the proved decisions and `decisions.csv` against it.
pub fn check_decisions(
    jsonl: impl BufRead,
    csv_file: impl Read,
    mut proved: HashMap<String, ProvedDecision>,
    campaign: &str,
    due_at: DateTime<Utc>,
) -> Result<ListedDecisions> {
    let mut csv = csv::Reader::from_reader(csv_file);
    let header = csv
        .headers()
        .map_err(|e| failed(format!("decisions.csv: {e}")))?;
    if header.iter().ne(CSV_HEADER) {
        return Err(failed(
            "decisions.csv: its header is not the pack format's".into(),
        ));
    }
    let mut rows = csv.records();
    let mut listed = ListedDecisions {
        count: 0,
        of_item: HashMap::new(),
        tally: DecisionTally::default(),
    };
    let mut seen = HashSet::new();
    for (line, text) in jsonl.lines().enumerate() {
        let at_line = |what: String| failed(format!("decisions.jsonl line {}: {what}", line + 1));
        let text = text.map_err(|e| at_line(e.to_string()))?;
        let decision: DecisionRecord =
            serde_json::from_str(&text).map_err(|e| at_line(e.to_string()))?;
        let id = decision.decision_id.clone();
        if !seen.insert(id.clone()) {
            return Err(at_line(format!("decision {id} is listed twice")));
        }
        let event = proved.remove(&id).ok_or_else(|| {
            at_line(format!(
                "decision {id} is not proved by any event of the pack"
            ))
        })?;
        event.matches(&decision, campaign).map_err(|field| {
            at_line(format!("decision {id}: its {field} differs from its event"))
        })?;
        if !next_row_is(&mut rows, &decision.csv_row(), "decisions.csv", line + 2)
            .map_err(failed)?
        {
            return Err(failed(format!(
                "decisions.csv row {}: differs from decisions.jsonl line {}",
                line + 2,
                line + 1
            )));
        }
        let at = instant(&decision.decided_at);
        let settles = decision.outcome != "dont_know";
        let item = listed
            .of_item
            .entry(decision.item_id.clone())
            .or_insert_with(|| ItemDecisions {
                latest_at: at,
                latest_id: id.clone(),
                latest_outcome: decision.outcome.clone(),
                latest_approved_until: decision.approved_until.as_deref().and_then(instant),
                first_decided: None,
            });
        if (at, &id) > (item.latest_at, &item.latest_id) {
            item.latest_at = at;
            item.latest_id = id;
            item.latest_outcome = decision.outcome.clone();
            item.latest_approved_until = decision.approved_until.as_deref().and_then(instant);
        }
        if settles && let Some(at) = at {
            item.first_decided = Some(item.first_decided.map_or(at, |first| first.min(at)));
        }
        listed.tally.add(&decision, at, due_at);
        listed.count += 1;
    }
    if rows.next().is_some() {
        return Err(failed(
            "decisions.csv has more rows than decisions.jsonl".into(),
        ));
    }
    if let Some(missing) = proved.keys().next() {
        return Err(failed(format!(
            "events.jsonl proves decision {missing}, which decisions.jsonl does not list"
        )));
    }
    Ok(listed)
}

impl ListedDecisions {
    /// The summary's timeliness and progress are what the decisions say (before the items'
    /// check takes the per-item entries out).
    pub fn check_summary(&self, summary: &Summary) -> Result<()> {
        self.tally.check(summary, &self.of_item)
    }
}

/// What `decisions.jsonl` says per reviewer and per day.
#[derive(Default)]
struct DecisionTally {
    per_reviewer: BTreeMap<String, ReviewerDecisions>,
    after_due: u64,
    per_day: BTreeMap<NaiveDate, u64>,
}

#[derive(Default, PartialEq, Eq, Debug)]
struct ReviewerDecisions {
    after_due: u64,
    first: Option<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

impl DecisionTally {
    fn add(&mut self, decision: &DecisionRecord, at: Option<DateTime<Utc>>, due_at: DateTime<Utc>) {
        let reviewer = self
            .per_reviewer
            .entry(decision.reviewer_email.clone())
            .or_default();
        let Some(at) = at else { return };
        if at > due_at {
            reviewer.after_due += 1;
            self.after_due += 1;
        }
        reviewer.first = Some(reviewer.first.map_or(at, |first| first.min(at)));
        reviewer.last = Some(reviewer.last.map_or(at, |last| last.max(at)));
        *self.per_day.entry(at.date_naive()).or_insert(0) += 1;
    }

    fn progress(&self, of_item: &HashMap<String, ItemDecisions>) -> Vec<DayProgress> {
        let mut firsts: BTreeMap<NaiveDate, u64> = BTreeMap::new();
        for at in of_item.values().filter_map(|item| item.first_decided) {
            *firsts.entry(at.date_naive()).or_insert(0) += 1;
        }
        let mut so_far = 0;
        self.per_day
            .iter()
            .map(|(day, decisions)| {
                let first = firsts.get(day).copied().unwrap_or(0);
                so_far += first;
                DayProgress {
                    day: day.to_string(),
                    decisions: *decisions,
                    items_first_decided: first,
                    items_decided_so_far: so_far,
                }
            })
            .collect()
    }

    fn check(&self, summary: &Summary, of_item: &HashMap<String, ItemDecisions>) -> Result<()> {
        if self.after_due != summary.timeliness.decisions_after_due {
            return Err(failed(format!(
                "summary.json counts {} decisions after the due date, decisions.jsonl has {}",
                summary.timeliness.decisions_after_due, self.after_due
            )));
        }
        let mut per_reviewer: BTreeMap<&str, &ReviewerDecisions> = self
            .per_reviewer
            .iter()
            .map(|(email, d)| (email.as_str(), d))
            .collect();
        let none = ReviewerDecisions::default();
        for r in &summary.by_reviewer {
            let said = ReviewerDecisions {
                after_due: r.decisions_after_due,
                first: r.first_decision_at.as_deref().and_then(instant),
                last: r.last_decision_at.as_deref().and_then(instant),
            };
            let listed = per_reviewer.remove(r.reviewer_email.as_str());
            if listed.is_none() && r.outcomes.items == 0 {
                return Err(failed(format!(
                    "summary.json lists reviewer {}, who has no item and no decision",
                    r.reviewer_email
                )));
            }
            if &said != listed.unwrap_or(&none) {
                return Err(failed(format!(
                    "summary.json: reviewer {}'s decisions (after the due date, first, last) \
                     differ from decisions.jsonl",
                    r.reviewer_email
                )));
            }
        }
        if let Some(email) = per_reviewer.keys().next() {
            return Err(failed(format!(
                "decisions.jsonl lists decisions of {email}, whom summary.json does not list"
            )));
        }
        if self.progress(of_item) != summary.progress {
            return Err(failed(
                "summary.json: the progress by day differs from decisions.jsonl".into(),
            ));
        }
        Ok(())
    }
}
