//! The campaign in figures for the evidence pack (`summary.json`): outcomes for the whole
//! population, per reviewer and per group, so that population = items = decided + undecided
//! reconciles at every level; timeliness (opened, due, closed, decisions after the due date,
//! items nobody decided); progress day by day; what the no-response policy did; and how many
//! events of each kind the campaign wrote. The counts are taken as the pack's rows are
//! written (`tally`), never by holding the items; `attest verify` recounts them from the
//! item rows. The console's progress chart counts by day with grouped queries.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use crate::campaigns::model::{Campaign, ITEM_APPROVED, ITEM_NO_RESPONSE, ITEM_REVOKED};
use crate::db::schema::events;
use crate::db::time::rfc3339;
use crate::db::{DbConnection, is_postgres};
use crate::error::Result;
use crate::evidence::charts::LargestGroups;
use crate::evidence::group_runs::MergedGroups;
use crate::evidence::reviewer_figures::{ReviewerFigures, StreamedReviewers};
use crate::evidence::tally::{DecisionTally, ItemTally, Reviewers};

/// How a set of items ended. `items` is always the sum of the others.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcomes {
    pub items: u64,
    pub approved: u64,
    pub revoked: u64,
    pub pending: u64,
    pub no_response: u64,
}

impl Outcomes {
    /// Counts one item with this outcome (state); an unknown state counts as pending.
    pub fn add(&mut self, outcome: &str, n: u64) {
        self.items += n;
        match outcome {
            ITEM_APPROVED => self.approved += n,
            ITEM_REVOKED => self.revoked += n,
            ITEM_NO_RESPONSE => self.no_response += n,
            _ => self.pending += n,
        }
    }

    /// Adds another set's counts.
    pub fn add_all(&mut self, other: &Outcomes) {
        self.items += other.items;
        self.approved += other.approved;
        self.revoked += other.revoked;
        self.pending += other.pending;
        self.no_response += other.no_response;
    }

    pub fn decided(&self) -> u64 {
        self.approved + self.revoked
    }

    /// Whether the parts add up to the whole.
    pub fn reconciles(&self) -> bool {
        self.items == self.approved + self.revoked + self.pending + self.no_response
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewerSummary {
    pub reviewer_email: String,
    pub reviewer_name: String,
    pub outcomes: Outcomes,
    /// Decisions this reviewer made after the campaign's due date.
    pub decisions_after_due: u64,
    pub first_decision_at: Option<String>,
    pub last_decision_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupSummary {
    pub group_id: String,
    pub group_name: String,
    pub privileged: bool,
    pub outcomes: Outcomes,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Timeliness {
    pub opened_at: String,
    pub due_at: String,
    pub closed_at: Option<String>,
    /// The campaign opened well after its period began (the service was down).
    pub opened_late: bool,
    pub closed_after_due: bool,
    /// Decisions (changes of mind included) made after the due date.
    pub decisions_after_due: u64,
    /// Items whose final decision came after the due date.
    pub items_decided_after_due: u64,
    /// Items nobody decided: pending while open, no response once closed.
    pub items_without_decision: u64,
}

/// One day of the campaign's progress (UTC days).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DayProgress {
    pub day: String,
    /// Decisions made that day, changes of mind included.
    pub decisions: u64,
    /// Items decided for the first time that day.
    pub items_first_decided: u64,
    /// Items decided at least once by the end of that day.
    pub items_decided_so_far: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Summary {
    pub campaign: String,
    pub totals: Outcomes,
    pub privileged: Outcomes,
    pub by_reviewer: Vec<ReviewerSummary>,
    pub by_group: Vec<GroupSummary>,
    pub timeliness: Timeliness,
    pub progress: Vec<DayProgress>,
    /// For items nobody decided at close: what the no-response policy did, and how often.
    pub no_response_policy: BTreeMap<String, u64>,
    /// Exceptions (`exceptions.csv`) by kind.
    pub exceptions: BTreeMap<String, u64>,
    /// The campaign's events in the pack, by kind.
    pub events_by_kind: BTreeMap<String, u64>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// The campaign's figures from what its items and decisions added up to as the pack's rows
/// were written. `exceptions` and `events_by_kind` come from what the pack lists. Its
/// `by_reviewer` and `by_group` are empty: `write_summary` streams them into `summary.json`,
/// the reviewers' entries from the figures returned beside the summary.
pub fn summarize_campaign(
    campaign: &Campaign,
    reviewers: Reviewers,
    mut items: ItemTally,
    mut decisions: DecisionTally,
    exceptions: BTreeMap<String, u64>,
    events_by_kind: BTreeMap<String, u64>,
) -> Result<(Summary, ReviewerFigures)> {
    let id = campaign.id.as_str();
    let due = campaign.due_at;
    let decisions_after_due = decisions.after_due();
    let totals = items.totals;
    let summary = Summary {
        campaign: id.to_string(),
        timeliness: Timeliness {
            opened_at: rfc3339(campaign.opened_at),
            due_at: rfc3339(due),
            closed_at: campaign.closed_at.map(rfc3339),
            opened_late: campaign.late,
            closed_after_due: campaign.closed_at.is_some_and(|closed| closed > due),
            decisions_after_due,
            items_decided_after_due: items.items_decided_after_due,
            items_without_decision: totals.pending + totals.no_response,
        },
        progress: progress_by_day(&decisions.by_day, &items.first_decided_by_day),
        totals,
        privileged: items.privileged,
        // Streamed into the file by `write_summary`, never held.
        by_reviewer: Vec::new(),
        by_group: Vec::new(),
        no_response_policy: items.no_response_policy,
        exceptions,
        events_by_kind,
    };
    let figures = ReviewerFigures::new(
        reviewers,
        std::mem::take(&mut items.by_reviewer),
        std::mem::take(&mut decisions.by_reviewer),
    );
    Ok((summary, figures))
}

/// Day by day: decisions made, items first decided, and items decided so far.
fn progress_by_day(
    decisions: &BTreeMap<NaiveDate, u64>,
    first_decided: &BTreeMap<NaiveDate, u64>,
) -> Vec<DayProgress> {
    let mut days: BTreeMap<NaiveDate, (u64, u64)> = BTreeMap::new();
    for (day, n) in decisions {
        days.entry(*day).or_default().0 = *n;
    }
    for (day, n) in first_decided {
        days.entry(*day).or_default().1 = *n;
    }
    let mut so_far = 0;
    days.into_iter()
        .map(|(day, (decisions, items_first_decided))| {
            so_far += items_first_decided;
            DayProgress {
                day: day.format("%Y-%m-%d").to_string(),
                decisions,
                items_first_decided,
                items_decided_so_far: so_far,
            }
        })
        .collect()
}

/// `summary.json` as written: the summary's fields, with the per-reviewer list made entry by
/// entry from the reviewers' counts and the per-group list streamed from the merged group
/// counts (neither ever all held).
#[derive(Serialize)]
struct SummaryDocument<'a> {
    campaign: &'a str,
    totals: &'a Outcomes,
    privileged: &'a Outcomes,
    by_reviewer: StreamedReviewers<'a>,
    by_group: StreamedGroups<'a>,
    timeliness: &'a Timeliness,
    progress: &'a [DayProgress],
    no_response_policy: &'a BTreeMap<String, u64>,
    exceptions: &'a BTreeMap<String, u64>,
    events_by_kind: &'a BTreeMap<String, u64>,
}

struct StreamedGroups<'a> {
    groups: RefCell<MergedGroups>,
    largest: &'a RefCell<LargestGroups>,
}

impl Serialize for StreamedGroups<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut groups = self.groups.borrow_mut();
        let mut list = serializer.serialize_seq(None)?;
        while let Some(group) = groups.next_group().map_err(serde::ser::Error::custom)? {
            list.serialize_element(&group)?;
            self.largest.borrow_mut().add(&group);
        }
        list.end()
    }
}

/// Writes `summary.json` to `out`: `summary` (whose own `by_reviewer` and `by_group` are left
/// out) with the entries of `reviewers` and the groups of `groups` in group order; returns the
/// groups the report's chart draws.
pub fn write_summary(
    out: &mut impl Write,
    summary: &Summary,
    reviewers: &ReviewerFigures,
    groups: MergedGroups,
) -> Result<LargestGroups> {
    let largest = RefCell::new(LargestGroups::default());
    let document = SummaryDocument {
        campaign: &summary.campaign,
        totals: &summary.totals,
        privileged: &summary.privileged,
        by_reviewer: StreamedReviewers(reviewers),
        by_group: StreamedGroups {
            groups: RefCell::new(groups),
            largest: &largest,
        },
        timeliness: &summary.timeliness,
        progress: &summary.progress,
        no_response_policy: &summary.no_response_policy,
        exceptions: &summary.exceptions,
        events_by_kind: &summary.events_by_kind,
    };
    serde_json::to_writer_pretty(out, &document)?;
    Ok(largest.into_inner())
}

/// The campaign's events up to `size` (the pack's checkpoint), by kind.
pub fn events_by_kind(
    conn: &mut DbConnection,
    campaign_id: &str,
    size: i64,
) -> Result<BTreeMap<String, u64>> {
    Ok(events::table
        .filter(events::subject.eq(campaign_id))
        .filter(events::seq.le(size))
        .group_by(events::kind)
        .select((events::kind, count_star()))
        .load::<(String, i64)>(conn)?
        .into_iter()
        .map(|(kind, n)| (kind, count(n)))
        .collect())
}

#[derive(QueryableByName)]
struct DayCount {
    #[diesel(sql_type = Text)]
    day: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The campaign's decisions day by day (UTC), by grouped queries (the console's chart): how
/// many ("don't know" included), how many items were approved or revoked for the first time,
/// and how many were decided by the end of each day.
pub fn daily_progress(conn: &mut DbConnection, campaign_id: &str) -> Result<Vec<DayProgress>> {
    // The day as YYYY-MM-DD whatever the server's date style.
    let (param, day_of) = if is_postgres(conn) {
        ("$1", "to_char({}, 'YYYY-MM-DD')")
    } else {
        ("?", "strftime('%Y-%m-%d', {})")
    };
    let day = |column: &str| day_of.replace("{}", column);
    let decisions_sql = format!(
        "SELECT {} AS day, COUNT(*) AS n FROM decisions WHERE campaign_id = {param} \
         GROUP BY 1 ORDER BY 1",
        day("decided_at")
    );
    let first_sql = format!(
        "SELECT {} AS day, COUNT(*) AS n FROM \
         (SELECT MIN(decided_at) AS first_at FROM decisions WHERE campaign_id = {param} \
         AND outcome <> 'dont_know' GROUP BY item_id) firsts GROUP BY 1 ORDER BY 1",
        day("first_at")
    );
    let per_day = |conn: &mut DbConnection, sql: &str| -> Result<Vec<DayCount>> {
        let query = diesel::sql_query(sql).bind::<Text, _>(campaign_id);
        Ok(match conn {
            DbConnection::Postgres(pg) => query.load(pg)?,
            DbConnection::Sqlite(sqlite) => query.load(sqlite)?,
        })
    };
    let mut days: BTreeMap<String, DayProgress> = BTreeMap::new();
    let blank = |day: &str| DayProgress {
        day: day.to_string(),
        decisions: 0,
        items_first_decided: 0,
        items_decided_so_far: 0,
    };
    for row in per_day(conn, &decisions_sql)? {
        days.entry(row.day.clone())
            .or_insert_with(|| blank(&row.day))
            .decisions = count(row.n);
    }
    for row in per_day(conn, &first_sql)? {
        days.entry(row.day.clone())
            .or_insert_with(|| blank(&row.day))
            .items_first_decided = count(row.n);
    }
    let mut so_far = 0;
    Ok(days
        .into_values()
        .map(|mut day| {
            so_far += day.items_first_decided;
            day.items_decided_so_far = so_far;
            day
        })
        .collect())
}

/// When evidence of a campaign closed (or, while open, due) at `end` may be removed.
pub fn keep_until(end: DateTime<Utc>, retention_years: u32) -> DateTime<Utc> {
    let months = chrono::Months::new(retention_years.saturating_mul(12));
    end.checked_add_months(months).unwrap_or(end)
}
