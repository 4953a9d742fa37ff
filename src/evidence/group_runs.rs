//! Per-group counts in bounded memory, for `summary.json`'s `by_group`. A campaign can
//! cover tens of thousands of groups, so the counts are not all held: at most
//! `GROUPS_HELD` groups are counted in memory, then written out in group order to a
//! temporary file (a run) and forgotten. At the end the runs are merged in group order, a
//! group counted in several runs adding up, and the merged groups stream into the file.
//! A campaign with few groups never touches the disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Lines, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::campaigns::model::ReviewItem;
use crate::error::{Error, Result};
use crate::evidence::summary::{GroupSummary, Outcomes};

/// Groups counted in memory before they are written out.
const GROUPS_HELD: usize = 8_192;
/// Runs kept open at most: when there are this many, they are merged into one, so that a
/// campaign of any size keeps a few files open and merges a few runs.
const RUNS_AT_MOST: usize = 32;

/// A group's name as the summary gives it, and its items' outcomes.
#[derive(Debug, Clone)]
struct Counted {
    name: String,
    privileged: bool,
    outcomes: Outcomes,
}

/// Counts of a campaign's items by group.
#[derive(Debug)]
pub struct GroupCounts {
    held: HashMap<String, Counted>,
    held_at_most: usize,
    runs: Vec<File>,
    /// Runs written in all, merged ones included.
    runs_written: usize,
    scratch: PathBuf,
}

impl GroupCounts {
    /// Counts with temporary files in `scratch` when there are many groups.
    pub fn new(scratch: &Path) -> GroupCounts {
        GroupCounts::holding(scratch, GROUPS_HELD)
    }

    fn holding(scratch: &Path, held_at_most: usize) -> GroupCounts {
        GroupCounts {
            held: HashMap::new(),
            held_at_most,
            runs: Vec::new(),
            runs_written: 0,
            scratch: scratch.to_path_buf(),
        }
    }

    /// Counts one item.
    pub fn count(&mut self, item: &ReviewItem) -> Result<()> {
        let state = item.state.as_str();
        match self.held.get_mut(&item.entitlement_external_id) {
            Some(group) => {
                group.outcomes.add(state, 1);
                if (item.entitlement_name.as_str(), item.privileged)
                    < (group.name.as_str(), group.privileged)
                {
                    group.name.clone_from(&item.entitlement_name);
                    group.privileged = item.privileged;
                }
            }
            None => {
                if self.held.len() >= self.held_at_most {
                    self.write_run()?;
                }
                let mut outcomes = Outcomes::default();
                outcomes.add(state, 1);
                self.held.insert(
                    item.entitlement_external_id.clone(),
                    Counted {
                        name: item.entitlement_name.clone(),
                        privileged: item.privileged,
                        outcomes,
                    },
                );
            }
        }
        Ok(())
    }

    /// The held groups in group order.
    fn drain_sorted(&mut self) -> Vec<GroupSummary> {
        let mut groups: Vec<GroupSummary> = self
            .held
            .drain()
            .map(|(group_id, counted)| GroupSummary {
                group_id,
                group_name: counted.name,
                privileged: counted.privileged,
                outcomes: counted.outcomes,
            })
            .collect();
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    /// Writes the held groups out as one run, in group order.
    fn write_run(&mut self) -> Result<()> {
        let mut held = self.drain_sorted().into_iter();
        let run = run_of(&self.scratch, || Ok(held.next()))?;
        self.runs.push(run);
        self.runs_written += 1;
        if self.runs.len() >= RUNS_AT_MOST {
            // The runs so far become one.
            let mut merged = MergedGroups::of_runs(std::mem::take(&mut self.runs));
            let run = run_of(&self.scratch, || merged.next_group())?;
            self.runs.push(run);
        }
        Ok(())
    }

    /// Every group counted, in group order, each once.
    pub fn merged(mut self) -> Result<MergedGroups> {
        if self.runs.is_empty() {
            let held = self.drain_sorted();
            return Ok(MergedGroups {
                runs: vec![Run::Held(held.into_iter())],
                heads: Vec::new(),
            });
        }
        if !self.held.is_empty() {
            self.write_run()?;
        }
        Ok(MergedGroups::of_runs(self.runs))
    }
}

/// A run in a temporary file in `scratch`: the groups `next` gives, one JSON line each,
/// read back from the start.
fn run_of(scratch: &Path, mut next: impl FnMut() -> Result<Option<GroupSummary>>) -> Result<File> {
    let io = |e: std::io::Error| {
        Error::Io(format!(
            "cannot write a temporary file in {}: {e}",
            scratch.display()
        ))
    };
    let mut run = BufWriter::new(tempfile::tempfile_in(scratch).map_err(io)?);
    while let Some(group) = next()? {
        serde_json::to_writer(&mut run, &group)
            .map_err(|e| Error::Io(format!("cannot write a temporary file: {e}")))?;
        run.write_all(b"\n").map_err(io)?;
    }
    let mut file = run.into_inner().map_err(|e| io(e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok(file)
}

enum Run {
    Held(std::vec::IntoIter<GroupSummary>),
    Written(Lines<BufReader<File>>),
}

impl Run {
    fn next_group(&mut self) -> Result<Option<GroupSummary>> {
        match self {
            Run::Held(groups) => Ok(groups.next()),
            Run::Written(lines) => match lines.next() {
                None => Ok(None),
                Some(line) => {
                    let line = line.map_err(|e| {
                        Error::Io(format!("cannot read back a temporary file: {e}"))
                    })?;
                    Ok(Some(serde_json::from_str(&line)?))
                }
            },
        }
    }
}

/// The groups of every run merged in group order.
pub struct MergedGroups {
    runs: Vec<Run>,
    /// The next group of each run (filled on the first call).
    heads: Vec<Option<GroupSummary>>,
}

impl MergedGroups {
    fn of_runs(runs: Vec<File>) -> MergedGroups {
        MergedGroups {
            runs: runs
                .into_iter()
                .map(|file| Run::Written(BufReader::new(file).lines()))
                .collect(),
            heads: Vec::new(),
        }
    }

    /// The next group in group order, with the counts of every run added up.
    pub fn next_group(&mut self) -> Result<Option<GroupSummary>> {
        if self.heads.is_empty() {
            for run in &mut self.runs {
                let head = run.next_group()?;
                self.heads.push(head);
            }
        }
        let Some(least) = self
            .heads
            .iter()
            .flatten()
            .map(|g| g.group_id.as_str())
            .min()
            .map(str::to_string)
        else {
            return Ok(None);
        };
        let mut merged: Option<GroupSummary> = None;
        for (head, run) in self.heads.iter_mut().zip(self.runs.iter_mut()) {
            if head.as_ref().is_some_and(|g| g.group_id == least) {
                let group = std::mem::replace(head, run.next_group()?);
                let Some(group) = group else { continue };
                merged = Some(match merged {
                    None => group,
                    Some(mut sum) => {
                        sum.outcomes.add_all(&group.outcomes);
                        if (group.group_name.as_str(), group.privileged)
                            < (sum.group_name.as_str(), sum.privileged)
                        {
                            sum.group_name = group.group_name;
                            sum.privileged = group.privileged;
                        }
                        sum
                    }
                });
            }
        }
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn item(group: &str, name: &str, state: &str) -> ReviewItem {
        let at = NaiveDate::from_ymd_opt(2026, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap();
        ReviewItem {
            id: String::new(),
            campaign_id: String::new(),
            reviewer_id: String::new(),
            routing: "manager".into(),
            identity_external_id: String::new(),
            identity_login: String::new(),
            identity_name: String::new(),
            identity_email: None,
            identity_status: "active".into(),
            entitlement_external_id: group.into(),
            entitlement_name: name.into(),
            entitlement_dn: String::new(),
            privileged: false,
            via: None,
            granted_since: at,
            stage: 1,
            state: state.into(),
            decided_at: None,
            no_response_outcome: None,
            approved_until: None,
            expired_at: None,
        }
    }

    fn all(mut merged: MergedGroups) -> Vec<(String, String, u64, u64)> {
        let mut out = Vec::new();
        while let Some(g) = merged.next_group().unwrap() {
            out.push((
                g.group_id,
                g.group_name,
                g.outcomes.items,
                g.outcomes.approved,
            ));
        }
        out
    }

    #[test]
    fn runs_written_out_merge_to_what_memory_would_count() {
        let scratch = tempfile::tempdir().unwrap();
        let items: Vec<ReviewItem> = (0..500)
            .map(|i| {
                let group = format!("g{:03}", (i * 7) % 37);
                let name = if i % 5 == 0 { "a-name" } else { "b-name" };
                let state = if i % 2 == 0 { "approved" } else { "revoked" };
                item(&group, name, state)
            })
            .collect();
        let mut in_memory = GroupCounts::new(scratch.path());
        let mut spilled = GroupCounts::holding(scratch.path(), 2);
        for item in &items {
            in_memory.count(item).unwrap();
            spilled.count(item).unwrap();
        }
        assert!(in_memory.runs.is_empty());
        assert!(
            spilled.runs_written > RUNS_AT_MOST && spilled.runs.len() < RUNS_AT_MOST,
            "the small bound wrote {} runs, merged as they piled up into {}",
            spilled.runs_written,
            spilled.runs.len()
        );
        let expected = all(in_memory.merged().unwrap());
        assert_eq!(expected.len(), 37);
        assert_eq!(expected.iter().map(|g| g.2).sum::<u64>(), 500);
        assert!(expected.windows(2).all(|w| w[0].0 < w[1].0), "group order");
        assert_eq!(all(spilled.merged().unwrap()), expected);
    }

    #[test]
    fn summary_json_with_streamed_groups_reads_as_the_whole_summary() {
        use crate::evidence::reviewer_figures::ReviewerFigures;
        use crate::evidence::summary::{Summary, Timeliness, write_summary};
        let scratch = tempfile::tempdir().unwrap();
        let mut counts = GroupCounts::holding(scratch.path(), 2);
        let mut again = GroupCounts::new(scratch.path());
        for (group, state) in [("g2", "approved"), ("g1", "revoked"), ("g3", "pending")] {
            counts.count(&item(group, group, state)).unwrap();
            again.count(&item(group, group, state)).unwrap();
        }
        let mut groups = Vec::new();
        let mut merged = again.merged().unwrap();
        while let Some(group) = merged.next_group().unwrap() {
            groups.push(group);
        }
        let mut totals = Outcomes::default();
        totals.add("approved", 1);
        let summary = Summary {
            campaign: "c".into(),
            totals: totals.clone(),
            privileged: Outcomes::default(),
            by_reviewer: Vec::new(),
            by_group: Vec::new(),
            timeliness: Timeliness {
                opened_at: "2026-01-01T00:00:00.000000Z".into(),
                due_at: "2026-01-15T00:00:00.000000Z".into(),
                closed_at: None,
                opened_late: false,
                closed_after_due: false,
                decisions_after_due: 0,
                items_decided_after_due: 0,
                items_without_decision: 2,
            },
            progress: Vec::new(),
            no_response_policy: Default::default(),
            exceptions: Default::default(),
            events_by_kind: Default::default(),
        };
        let mut written = Vec::new();
        let reviewers = ReviewerFigures::default();
        let largest =
            write_summary(&mut written, &summary, &reviewers, counts.merged().unwrap()).unwrap();
        assert_eq!(largest.total(), 3);
        let read: Summary = serde_json::from_slice(&written).unwrap();
        let whole = Summary {
            by_group: groups,
            ..summary
        };
        assert_eq!(read, whole);
        assert_eq!(
            serde_json::to_string_pretty(&whole).unwrap(),
            String::from_utf8(written).unwrap(),
            "the same document, field for field"
        );
    }
}
