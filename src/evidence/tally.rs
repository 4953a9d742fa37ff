//! The campaign's figures counted while the pack's rows are written: each item and each
//! decision passes through the export once, so `summary.json`'s counts per reviewer, per
//! group and per day are taken on the way rather than by grouped queries that would read
//! the campaign again. What is held grows with the number of reviewers, groups and days,
//! never with the number of items. `attest verify` recounts the same figures from the rows.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, NaiveDateTime};

use crate::campaigns::model::{ITEM_NO_RESPONSE, ReviewItem};
use crate::evidence::summary::Outcomes;

/// A group as the summary names it, with its items' outcomes.
#[derive(Debug, Clone)]
pub struct GroupCount {
    pub name: String,
    pub privileged: bool,
    pub outcomes: Outcomes,
}

/// What the items of a campaign add up to.
#[derive(Debug, Default)]
pub struct ItemTally {
    pub totals: Outcomes,
    pub privileged: Outcomes,
    /// By reviewer id.
    pub by_reviewer: HashMap<String, Outcomes>,
    /// By group id.
    pub by_group: HashMap<String, GroupCount>,
    /// Items whose final decision came after the due date.
    pub items_decided_after_due: u64,
    /// Items nobody decided at close, by what the no-response policy did.
    pub no_response_policy: BTreeMap<String, u64>,
    /// Items approved or revoked for the first time, by UTC day.
    pub first_decided_by_day: BTreeMap<NaiveDate, u64>,
}

impl ItemTally {
    /// Counts one item, first approved or revoked at `first_decided_at`, of a campaign due
    /// at `due_at`.
    pub fn count(
        &mut self,
        item: &ReviewItem,
        first_decided_at: Option<NaiveDateTime>,
        due_at: NaiveDateTime,
    ) {
        let state = item.state.as_str();
        self.totals.add(state, 1);
        if item.privileged {
            self.privileged.add(state, 1);
        }
        match self.by_reviewer.get_mut(&item.reviewer_id) {
            Some(outcomes) => outcomes.add(state, 1),
            None => {
                let mut outcomes = Outcomes::default();
                outcomes.add(state, 1);
                self.by_reviewer.insert(item.reviewer_id.clone(), outcomes);
            }
        }
        match self.by_group.get_mut(&item.entitlement_external_id) {
            Some(group) => {
                group.outcomes.add(state, 1);
                // One name per group id whatever the item order: the least, as sorted.
                if (item.entitlement_name.as_str(), item.privileged)
                    < (group.name.as_str(), group.privileged)
                {
                    group.name.clone_from(&item.entitlement_name);
                    group.privileged = item.privileged;
                }
            }
            None => {
                let mut outcomes = Outcomes::default();
                outcomes.add(state, 1);
                self.by_group.insert(
                    item.entitlement_external_id.clone(),
                    GroupCount {
                        name: item.entitlement_name.clone(),
                        privileged: item.privileged,
                        outcomes,
                    },
                );
            }
        }
        if item.decided_at.is_some_and(|at| at > due_at) {
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
    /// By reviewer id.
    pub by_reviewer: HashMap<String, DecisionSpan>,
    /// Decisions ("don't know" and changes of mind included) by UTC day.
    pub by_day: BTreeMap<NaiveDate, u64>,
}

impl DecisionTally {
    /// Counts one decision by `reviewer_id` at `decided_at`, in a campaign due at `due_at`.
    pub fn count(&mut self, reviewer_id: &str, decided_at: NaiveDateTime, due_at: NaiveDateTime) {
        let late = u64::from(decided_at > due_at);
        match self.by_reviewer.get_mut(reviewer_id) {
            Some(span) => {
                span.first = span.first.min(decided_at);
                span.last = span.last.max(decided_at);
                span.after_due += late;
            }
            None => {
                self.by_reviewer.insert(
                    reviewer_id.to_string(),
                    DecisionSpan {
                        first: decided_at,
                        last: decided_at,
                        after_due: late,
                    },
                );
            }
        }
        *self.by_day.entry(decided_at.date()).or_insert(0) += 1;
    }

    /// Decisions made after the due date, by every reviewer.
    pub fn after_due(&self) -> u64 {
        self.by_reviewer.values().map(|span| span.after_due).sum()
    }
}
