//! The campaign's figures counted while the pack's rows are written: each item and each
//! decision passes through the export once, so `summary.json`'s counts per reviewer and per
//! day are taken on the way rather than by grouped queries that would read the campaign
//! again (per group: `group_runs`, which bounds what it holds). What is held grows with the
//! number of reviewers and days, never with the number of items. `attest verify` recounts
//! the same figures from the rows.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use chrono::{NaiveDate, NaiveDateTime, SubsecRound};

use diesel::prelude::*;

use crate::campaigns::model::{ITEM_NO_RESPONSE, ReviewItem};
use crate::db::DbConnection;
use crate::db::schema::reviewers;
use crate::error::{Error, Result};
use crate::evidence::summary::Outcomes;

/// The campaign's reviewers, numbered: items and decisions name their reviewer by id, and the
/// counts are kept by number. Held compactly, since a large campaign has tens of thousands of
/// reviewers and the export's memory should grow with them as little as it can: every id,
/// email and name in one string, and a table of numbers keyed by a hash of the id.
#[derive(Debug, Default)]
pub struct Reviewers {
    /// Each reviewer's id, email and name, one after another, by number.
    text: String,
    /// Where reviewer number n's id, email and name start in `text` (three per reviewer,
    /// then the end of `text`).
    starts: Vec<u32>,
    /// Reviewer numbers, found by a hash of their id (`hasher`).
    by_id: HashTable<u32>,
    hasher: RandomState,
}

impl Reviewers {
    /// The reviewers of `campaign_id`, numbered by email, then id (`summary.json`'s order).
    pub fn of_campaign(conn: &mut DbConnection, campaign_id: &str) -> Result<Reviewers> {
        let rows: Vec<(String, String, String)> = reviewers::table
            .filter(reviewers::campaign_id.eq(campaign_id))
            .select((reviewers::id, reviewers::email, reviewers::display_name))
            .load(conn)?;
        Reviewers::numbered(rows)
    }

    /// Reviewers (id, email, name) numbered by email, then id, compared byte by byte
    /// whatever the database's collation.
    pub fn numbered(mut rows: Vec<(String, String, String)>) -> Result<Reviewers> {
        rows.sort_unstable_by(|(a_id, a_email, _), (b_id, b_email, _)| {
            a_email.cmp(b_email).then_with(|| a_id.cmp(b_id))
        });
        let length: usize = rows
            .iter()
            .map(|(id, email, name)| id.len() + email.len() + name.len())
            .sum();
        let too_many = || Error::Internal("too many reviewers to number".into());
        u32::try_from(length).map_err(|_| too_many())?;
        let mut known = Reviewers {
            text: String::with_capacity(length),
            starts: Vec::with_capacity(rows.len() * 3 + 1),
            by_id: HashTable::new(),
            hasher: RandomState::new(),
        };
        for (id, email, name) in &rows {
            for part in [id, email, name] {
                known.starts.push(known.text.len() as u32);
                known.text.push_str(part);
            }
        }
        known.starts.push(known.text.len() as u32);
        let mut by_id = HashTable::with_capacity(rows.len());
        drop(rows);
        let hash_of = |n: u32| known.hasher.hash_one(known.part(n as usize, 0));
        for n in 0..u32::try_from(known.len()).map_err(|_| too_many())? {
            by_id.insert_unique(hash_of(n), n, |&m| hash_of(m));
        }
        known.by_id = by_id;
        Ok(known)
    }

    /// Part `k` (0 id, 1 email, 2 name) of reviewer number `n`.
    fn part(&self, n: usize, k: usize) -> &str {
        let at = n * 3 + k;
        match (self.starts.get(at), self.starts.get(at + 1)) {
            (Some(&from), Some(&to)) => self.text.get(from as usize..to as usize).unwrap_or(""),
            _ => "",
        }
    }

    /// The number of reviewer `id`, if of the campaign.
    pub fn number(&self, id: &str) -> Option<usize> {
        self.by_id
            .find(self.hasher.hash_one(id), |&n| {
                self.part(n as usize, 0) == id
            })
            .map(|&n| n as usize)
    }

    /// The number of reviewer `id` with their (email, name), if of the campaign.
    pub fn find(&self, id: &str) -> Option<(usize, (&str, &str))> {
        let n = self.number(id)?;
        Some((n, self.person(n)?))
    }

    /// How many reviewers the campaign has.
    pub fn len(&self) -> usize {
        self.starts.len() / 3
    }

    /// Whether the campaign has no reviewer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The (email, name) of reviewer number `n`.
    pub fn person(&self, n: usize) -> Option<(&str, &str)> {
        (n < self.len()).then(|| (self.part(n, 1), self.part(n, 2)))
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
    /// No items yet, of a campaign with `reviewers` reviewers.
    pub fn for_reviewers(reviewers: usize) -> ItemTally {
        ItemTally {
            by_reviewer: vec![Outcomes::default(); reviewers],
            ..ItemTally::default()
        }
    }

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
    /// No decisions yet, of a campaign with `reviewers` reviewers.
    pub fn for_reviewers(reviewers: usize) -> DecisionTally {
        DecisionTally {
            by_reviewer: vec![None; reviewers],
            ..DecisionTally::default()
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviewers_are_numbered_by_email_then_id_and_found_by_id() {
        let rows: Vec<(String, String, String)> = [
            ("r-30", "z@example.com", "Zed"),
            ("r-4", "a@example.com", "Ann"),
            ("r-10", "a@example.com", "Ann again"),
            ("r-2", "m@example.com", ""),
        ]
        .iter()
        .map(|(id, email, name)| (id.to_string(), email.to_string(), name.to_string()))
        .collect();
        let reviewers = Reviewers::numbered(rows).unwrap();
        assert_eq!(reviewers.len(), 4);
        // "r-10" < "r-4" byte by byte.
        assert_eq!(
            reviewers.find("r-10"),
            Some((0, ("a@example.com", "Ann again")))
        );
        assert_eq!(reviewers.find("r-4"), Some((1, ("a@example.com", "Ann"))));
        assert_eq!(reviewers.find("r-2"), Some((2, ("m@example.com", ""))));
        assert_eq!(reviewers.find("r-30"), Some((3, ("z@example.com", "Zed"))));
        assert_eq!(reviewers.number("r-3"), None);
        assert_eq!(reviewers.number(""), None);
        assert_eq!(reviewers.person(4), None);
    }

    #[test]
    fn no_reviewers() {
        let reviewers = Reviewers::numbered(Vec::new()).unwrap();
        assert!(reviewers.is_empty());
        assert_eq!(reviewers.number("r-1"), None);
        assert!(Reviewers::default().is_empty());
    }
}
