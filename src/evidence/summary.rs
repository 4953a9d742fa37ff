//! The campaign in figures for the evidence pack (`summary.json`): outcomes for the whole
//! population, per reviewer and per group, so that population = items = decided + undecided
//! reconciles at every level; timeliness (opened, due, closed, decisions after the due date,
//! items nobody decided); progress day by day; what the no-response policy did; and how many
//! events of each kind the campaign wrote. Everything is counted by the database (grouped
//! queries), never by holding the items; `attest verify` recounts it from the item rows.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::dsl::{count_star, max, min};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::{Deserialize, Serialize};

use crate::campaigns::model::{Campaign, ITEM_APPROVED, ITEM_NO_RESPONSE, ITEM_REVOKED};
use crate::db::schema::{decisions, events, review_items, reviewers};
use crate::db::time::rfc3339;
use crate::db::{DbConnection, is_postgres};
use crate::error::Result;

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

impl ReviewerSummary {
    /// A reviewer with nothing counted yet.
    fn named(reviewer_email: String, reviewer_name: String) -> ReviewerSummary {
        ReviewerSummary {
            reviewer_email,
            reviewer_name,
            outcomes: Outcomes::default(),
            decisions_after_due: 0,
            first_decision_at: None,
            last_decision_at: None,
        }
    }
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

/// Counts the campaign. `exceptions` and `events_by_kind` come from what the pack lists.
pub fn summarize_campaign(
    conn: &mut DbConnection,
    campaign: &Campaign,
    exceptions: BTreeMap<String, u64>,
    events_by_kind: BTreeMap<String, u64>,
) -> Result<Summary> {
    let id = campaign.id.as_str();
    let due = campaign.due_at;
    let mut totals = Outcomes::default();
    let mut privileged = Outcomes::default();

    let people: BTreeMap<String, (String, String)> = reviewers::table
        .filter(reviewers::campaign_id.eq(id))
        .select((reviewers::id, reviewers::email, reviewers::display_name))
        .load::<(String, String, String)>(conn)?
        .into_iter()
        .map(|(id, email, name)| (id, (email, name)))
        .collect();
    let mut by_reviewer: BTreeMap<String, ReviewerSummary> = BTreeMap::new();
    let per_reviewer: Vec<(String, String, i64)> = review_items::table
        .filter(review_items::campaign_id.eq(id))
        .group_by((review_items::reviewer_id, review_items::state))
        .select((review_items::reviewer_id, review_items::state, count_star()))
        .load(conn)?;
    for (reviewer_id, state, n) in per_reviewer {
        let (email, name) = people.get(&reviewer_id).cloned().unwrap_or_default();
        by_reviewer
            .entry(reviewer_id)
            .or_insert_with(|| ReviewerSummary::named(email, name))
            .outcomes
            .add(&state, count(n));
        totals.add(&state, count(n));
    }
    let spans: Vec<(String, Option<NaiveDateTime>, Option<NaiveDateTime>)> = decisions::table
        .filter(decisions::campaign_id.eq(id))
        .group_by(decisions::reviewer_id)
        .select((
            decisions::reviewer_id,
            min(decisions::decided_at),
            max(decisions::decided_at),
        ))
        .load(conn)?;
    for (reviewer_id, first, last) in spans {
        // A reviewer whose items all moved on after deciding ("don't know") has no item
        // left, and is listed for their decisions.
        let (email, name) = people.get(&reviewer_id).cloned().unwrap_or_default();
        let summary = by_reviewer
            .entry(reviewer_id)
            .or_insert_with(|| ReviewerSummary::named(email, name));
        summary.first_decision_at = first.map(rfc3339);
        summary.last_decision_at = last.map(rfc3339);
    }
    let late: Vec<(String, i64)> = decisions::table
        .filter(decisions::campaign_id.eq(id))
        .filter(decisions::decided_at.gt(due))
        .group_by(decisions::reviewer_id)
        .select((decisions::reviewer_id, count_star()))
        .load(conn)?;
    let mut decisions_after_due = 0;
    for (reviewer_id, n) in late {
        decisions_after_due += count(n);
        if let Some(summary) = by_reviewer.get_mut(&reviewer_id) {
            summary.decisions_after_due = count(n);
        }
    }
    let mut by_reviewer: Vec<ReviewerSummary> = by_reviewer.into_values().collect();
    by_reviewer.sort_by(|a, b| a.reviewer_email.cmp(&b.reviewer_email));

    let per_group: Vec<(String, String, bool, String, i64)> = review_items::table
        .filter(review_items::campaign_id.eq(id))
        .group_by((
            review_items::entitlement_external_id,
            review_items::entitlement_name,
            review_items::privileged,
            review_items::state,
        ))
        .select((
            review_items::entitlement_external_id,
            review_items::entitlement_name,
            review_items::privileged,
            review_items::state,
            count_star(),
        ))
        .load(conn)?;
    let mut by_group: BTreeMap<String, GroupSummary> = BTreeMap::new();
    for (group_id, group_name, is_privileged, state, n) in per_group {
        if is_privileged {
            privileged.add(&state, count(n));
        }
        by_group
            .entry(group_id.clone())
            .or_insert_with(|| GroupSummary {
                group_id,
                group_name,
                privileged: is_privileged,
                outcomes: Outcomes::default(),
            })
            .outcomes
            .add(&state, count(n));
    }

    let items_decided_after_due: i64 = review_items::table
        .filter(review_items::campaign_id.eq(id))
        .filter(review_items::decided_at.gt(due))
        .count()
        .get_result(conn)?;
    let no_response_policy: BTreeMap<String, u64> = review_items::table
        .filter(review_items::campaign_id.eq(id))
        .filter(review_items::state.eq(ITEM_NO_RESPONSE))
        .group_by(review_items::no_response_outcome)
        .select((review_items::no_response_outcome, count_star()))
        .load::<(Option<String>, i64)>(conn)?
        .into_iter()
        .map(|(outcome, n)| (outcome.unwrap_or_else(|| "none".into()), count(n)))
        .collect();

    Ok(Summary {
        campaign: id.to_string(),
        timeliness: Timeliness {
            opened_at: rfc3339(campaign.opened_at),
            due_at: rfc3339(due),
            closed_at: campaign.closed_at.map(rfc3339),
            opened_late: campaign.late,
            closed_after_due: campaign.closed_at.is_some_and(|closed| closed > due),
            decisions_after_due,
            items_decided_after_due: count(items_decided_after_due),
            items_without_decision: totals.pending + totals.no_response,
        },
        progress: daily_progress(conn, id)?,
        totals,
        privileged,
        by_reviewer,
        by_group: by_group.into_values().collect(),
        no_response_policy,
        exceptions,
        events_by_kind,
    })
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

/// Per UTC day: decisions made ("don't know" included), and items approved or revoked for
/// the first time.
/// The campaign's decisions day by day (UTC): how many, and how many items were decided by
/// the end of each day.
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
