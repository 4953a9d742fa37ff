//! The campaign's figures counted while the pack's rows are written: each item and each
//! decision passes through the export once, so `summary.json`'s counts per reviewer and per
//! day are taken on the way rather than by grouped queries that would read the campaign
//! again (per group: `group_runs`, which bounds what it holds). What is held grows with the
//! number of reviewers and days, never with the number of items. `attest verify` recounts
//! the same figures from the rows.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, NaiveDateTime, SubsecRound};

use diesel::prelude::*;

use crate::campaigns::model::{ITEM_NO_RESPONSE, ReviewItem};
use crate::db::DbConnection;
use crate::db::schema::reviewers;
use crate::error::Result;
use crate::evidence::summary::Outcomes;

/// The campaign's reviewers, numbered: items and decisions name their reviewer by id, and the
/// counts are kept by number, so that each id is held once.
#[derive(Debug, Default)]
pub struct Reviewers {
    numbers: HashMap<String, usize>,
    /// (email, name) by number.
    people: Vec<(String, String)>,
}

impl Reviewers {
    /// The reviewers of `campaign_id`, numbered by email, then id (`summary.json`'s order).
    pub fn of_campaign(conn: &mut DbConnection, campaign_id: &str) -> Result<Reviewers> {
        let rows: Vec<(String, String, String)> = reviewers::table
            .filter(reviewers::campaign_id.eq(campaign_id))
            .select((reviewers::id, reviewers::email, reviewers::display_name))
            .load(conn)?;
        Ok(Reviewers::numbered(rows))
    }

    /// Reviewers (id, email, name) numbered by email, then id, compared byte by byte
    /// whatever the database's collation.
    pub fn numbered(mut rows: Vec<(String, String, String)>) -> Reviewers {
        rows.sort_unstable_by(|(a_id, a_email, _), (b_id, b_email, _)| {
            a_email.cmp(b_email).then_with(|| a_id.cmp(b_id))
        });
        let mut known = Reviewers {
            numbers: HashMap::with_capacity(rows.len()),
            people: Vec::with_capacity(rows.len()),
        };
        for (id, email, name) in rows {
            known.numbers.insert(id, known.people.len());
            known.people.push((email, name));
        }
        known
    }

    /// The number of reviewer `id`, if of the campaign.
    pub fn number(&self, id: &str) -> Option<usize> {
        self.numbers.get(id).copied()
    }

    /// The number of reviewer `id` with their (email, name), if of the campaign.
    pub fn find(&self, id: &str) -> Option<(usize, &(String, String))> {
        let n = self.number(id)?;
        Some((n, self.people.get(n)?))
    }

    /// How many reviewers the campaign has.
    pub fn len(&self) -> usize {
        self.people.len()
    }

    /// Whether the campaign has no reviewer.
    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// The (email, name) of reviewer number `n`.
    pub fn person(&self, n: usize) -> Option<&(String, String)> {
        self.people.get(n)
    }
}

/// What the items of a campaign add up to.
#[derive(Debug, Default)]
pub struct ItemTally {
    pub totals: Outcomes,
    pub privileged: Outcomes,
    /// By reviewer number (`Reviewers`).
    pub by_reviewer: Vec<Outcomes>,
    /// Items whose final decision came after the due date.
    pub items_decided_after_due: u64,
    /// Items nobody decided at close, by what the no-response policy did.
    pub no_response_policy: BTreeMap<String, u64>,
    /// Items approved or revoked for the first time, by UTC day.
    pub first_decided_by_day: BTreeMap<NaiveDate, u64>,
}

impl ItemTally {
    /// Counts one item, reviewed by reviewer number `reviewer`, first approved or revoked at
    /// `first_decided_at`, of a campaign due at `due_at`.
    pub fn count(
        &mut self,
        item: &ReviewItem,
        reviewer: usize,
        first_decided_at: Option<NaiveDateTime>,
        due_at: NaiveDateTime,
    ) {
        let state = item.state.as_str();
        self.totals.add(state, 1);
        if item.privileged {
            self.privileged.add(state, 1);
        }
        if self.by_reviewer.len() <= reviewer {
            self.by_reviewer.resize(reviewer + 1, Outcomes::default());
        }
        self.by_reviewer[reviewer].add(state, 1);
        // Compared as the pack writes times (microseconds), as `attest verify` compares them.
        if item
            .decided_at
            .is_some_and(|at| at.trunc_subsecs(6) > due_at)
        {
            self.items_decided_after_due += 1;
        }
        if state == ITEM_NO_RESPONSE {
            let policy = item.no_response_outcome.as_deref().unwrap_or("none");
            *self
                .no_response_policy
                .entry(policy.to_string())
                .or_insert(0) += 1;
        }
        if let Some(first) = first_decided_at {
            *self.first_decided_by_day.entry(first.date()).or_insert(0) += 1;
        }
    }
}

/// When one reviewer decided.
#[derive(Debug, Clone, Copy)]
pub struct DecisionSpan {
    pub first: NaiveDateTime,
    pub last: NaiveDateTime,
    /// Decisions made after the due date.
    pub after_due: u64,
}

/// What the decisions of a campaign add up to.
#[derive(Debug, Default)]
pub struct DecisionTally {
    /// By reviewer number (`Reviewers`); none for a reviewer who made no decision.
    pub by_reviewer: Vec<Option<DecisionSpan>>,
    /// Decisions ("don't know" and changes of mind included) by UTC day.
    pub by_day: BTreeMap<NaiveDate, u64>,
}

impl DecisionTally {
    /// Counts one decision by reviewer number `reviewer` at `decided_at`, in a campaign due
    /// at `due_at`.
    pub fn count(&mut self, reviewer: usize, decided_at: NaiveDateTime, due_at: NaiveDateTime) {
        let late = u64::from(decided_at.trunc_subsecs(6) > due_at);
        if self.by_reviewer.len() <= reviewer {
            self.by_reviewer.resize(reviewer + 1, None);
        }
        let span = &mut self.by_reviewer[reviewer];
        *span = Some(match *span {
            Some(span) => DecisionSpan {
                first: span.first.min(decided_at),
                last: span.last.max(decided_at),
                after_due: span.after_due + late,
            },
            None => DecisionSpan {
                first: decided_at,
                last: decided_at,
                after_due: late,
            },
        });
        *self.by_day.entry(decided_at.date()).or_insert(0) += 1;
    }

    /// Decisions made after the due date, by every reviewer.
    pub fn after_due(&self) -> u64 {
        self.by_reviewer
            .iter()
            .flatten()
            .map(|span| span.after_due)
            .sum()
    }
}
