//! Each reviewer's figures for the evidence pack: what they were asked to review, how it
//! ended, and when they decided. A campaign can have tens of thousands of reviewers, so the
//! entries of `summary.json`'s `by_reviewer` are made one at a time from the counts the
//! export took (`tally`) as the document is written, never all held; the SOC 2 mapping and the
//! report take their figures from the same counts.

use serde::ser::SerializeSeq;
use serde::{Serialize, Serializer};

use crate::db::time::rfc3339;
use crate::evidence::summary::{Outcomes, ReviewerSummary};
use crate::evidence::tally::{DecisionSpan, Reviewers};

/// The campaign's reviewers with their counts, in `summary.json`'s order (email, then id:
/// the order `Reviewers` numbers them in).
#[derive(Debug, Default)]
pub struct ReviewerFigures {
    reviewers: Reviewers,
    /// By reviewer number.
    items: Vec<Outcomes>,
    /// By reviewer number; none for a reviewer who made no decision.
    decisions: Vec<Option<DecisionSpan>>,
}

impl ReviewerFigures {
    pub fn new(
        reviewers: Reviewers,
        items: Vec<Outcomes>,
        decisions: Vec<Option<DecisionSpan>>,
    ) -> ReviewerFigures {
        ReviewerFigures {
            reviewers,
            items,
            decisions,
        }
    }

    /// The entry of reviewer number `n`; none for a reviewer with neither items nor
    /// decisions (every route's reviewer has items; one whose items all moved on after
    /// "don't know" still has decisions).
    fn entry(&self, n: usize) -> Option<ReviewerSummary> {
        let outcomes = self.items.get(n).cloned().unwrap_or_default();
        let span = self.decisions.get(n).copied().flatten();
        if outcomes.items == 0 && span.is_none() {
            return None;
        }
        let (email, name) = self.reviewers.person(n)?;
        Some(ReviewerSummary {
            reviewer_email: email.to_string(),
            reviewer_name: name.to_string(),
            outcomes,
            decisions_after_due: span.map_or(0, |span| span.after_due),
            first_decision_at: span.map(|span| rfc3339(span.first)),
            last_decision_at: span.map(|span| rfc3339(span.last)),
        })
    }

    /// Every reviewer's entry, by email then id.
    pub fn entries(&self) -> impl Iterator<Item = ReviewerSummary> + '_ {
        (0..self.reviewers.len()).filter_map(|n| self.entry(n))
    }

    /// Reviewers who were asked to review at least one item.
    pub fn asked(&self) -> usize {
        self.items.iter().filter(|o| o.items > 0).count()
    }

    /// Reviewers who made at least one decision.
    pub fn deciding(&self) -> usize {
        self.decisions.iter().flatten().count()
    }

    /// The `rows` reviewers with the most items (ties by email, then id), and how many
    /// reviewers are left out.
    pub fn busiest(&self, rows: usize) -> (Vec<ReviewerSummary>, usize) {
        let mut listed: Vec<(u64, usize)> = (0..self.reviewers.len())
            .filter(|&n| {
                self.items.get(n).is_some_and(|o| o.items > 0)
                    || self.decisions.get(n).is_some_and(Option::is_some)
            })
            .map(|n| (self.items.get(n).map_or(0, |o| o.items), n))
            .collect();
        listed.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let left_out = listed.len().saturating_sub(rows);
        let top = listed
            .into_iter()
            .take(rows)
            .filter_map(|(_, n)| self.entry(n))
            .collect();
        (top, left_out)
    }
}

/// `summary.json`'s `by_reviewer`, made entry by entry as it is written.
pub struct StreamedReviewers<'a>(pub &'a ReviewerFigures);

impl Serialize for StreamedReviewers<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(None)?;
        for entry in self.0.entries() {
            list.serialize_element(&entry)?;
        }
        list.end()
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn at(day: u32) -> chrono::NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 1, day)
            .and_then(|d| d.and_hms_opt(9, 0, 0))
            .unwrap()
    }

    fn asked(n: u64) -> Outcomes {
        let mut outcomes = Outcomes::default();
        outcomes.add("approved", n);
        outcomes
    }

    /// Four reviewers given out of order: two share an email (ordered by id), one has
    /// nothing (left out), one only decided (kept).
    fn figures() -> ReviewerFigures {
        let reviewers = Reviewers::numbered(vec![
            ("r-9".into(), "b@example.com".into(), "B".into()),
            ("r-2".into(), "b@example.com".into(), "B too".into()),
            ("r-5".into(), "a@example.com".into(), "A".into()),
            ("r-1".into(), "c@example.com".into(), "C".into()),
            ("r-7".into(), "d@example.com".into(), "D".into()),
        ])
        .unwrap();
        let number = |id: &str| reviewers.number(id).unwrap();
        let mut items = vec![Outcomes::default(); reviewers.len()];
        let mut decisions = vec![None; reviewers.len()];
        items[number("r-5")] = asked(2);
        items[number("r-2")] = asked(5);
        items[number("r-9")] = asked(5);
        decisions[number("r-9")] = Some(DecisionSpan {
            first: at(2),
            last: at(4),
            after_due: 1,
        });
        decisions[number("r-7")] = Some(DecisionSpan {
            first: at(3),
            last: at(3),
            after_due: 0,
        });
        ReviewerFigures::new(reviewers, items, decisions)
    }

    #[test]
    fn entries_come_by_email_then_id_and_leave_out_reviewers_with_nothing() {
        let figures = figures();
        let listed: Vec<(String, String, u64)> = figures
            .entries()
            .map(|e| (e.reviewer_email, e.reviewer_name, e.outcomes.items))
            .collect();
        let expected = [
            ("a@example.com", "A", 2),
            ("b@example.com", "B too", 5),
            ("b@example.com", "B", 5),
            ("d@example.com", "D", 0),
        ];
        assert_eq!(
            listed,
            expected.map(|(e, n, i)| (e.to_string(), n.to_string(), i))
        );
        let b = figures.entries().nth(2).unwrap();
        assert_eq!(b.decisions_after_due, 1);
        assert_eq!(b.first_decision_at, Some(rfc3339(at(2))));
        assert_eq!(b.last_decision_at, Some(rfc3339(at(4))));
        assert_eq!((figures.asked(), figures.deciding()), (3, 2));
    }

    #[test]
    fn busiest_ranks_by_items_then_email_and_id_and_counts_the_rest() {
        let (top, left_out) = figures().busiest(2);
        let names: Vec<&str> = top.iter().map(|e| e.reviewer_name.as_str()).collect();
        assert_eq!(names, ["B too", "B"]);
        assert_eq!(left_out, 2);
        let (all, none_left) = figures().busiest(10);
        let names: Vec<&str> = all.iter().map(|e| e.reviewer_name.as_str()).collect();
        assert_eq!(names, ["B too", "B", "A", "D"]);
        assert_eq!(none_left, 0);
    }

    #[test]
    fn the_streamed_list_is_the_entries_as_json() {
        let figures = figures();
        let streamed = serde_json::to_string(&StreamedReviewers(&figures)).unwrap();
        let whole: Vec<ReviewerSummary> = figures.entries().collect();
        assert_eq!(streamed, serde_json::to_string(&whole).unwrap());
    }
}
