//! `attest source test`: a sync that writes nothing. It connects, binds and reads the whole
//! source exactly as a sync would, expands nested groups in memory and reports what a sync
//! would find: counts, and every problem (members that resolve to nothing, cycles, groups
//! outside the search, privileged groups that match nothing). Only keys are kept in memory.

use std::time::{Duration, Instant};

use crate::config::SourceConfig;
use crate::directory::effective::{DirectoryGraph, GroupKey, PersonKey, Problem, expand};
use crate::directory::sync::{SyncObserver, configuration_problems};
use crate::error::Result;
use crate::sources::{FetchReport, RecordSink, SourceRecord, fetch};

/// What a sync of the source would find now.
#[derive(Debug)]
pub struct SourcePreview {
    pub report: FetchReport,
    pub people: u64,
    pub service_accounts: u64,
    pub disabled: u64,
    pub groups: u64,
    pub memberships: u64,
    pub accesses: u64,
    pub cycles: u64,
    pub problems: Vec<Problem>,
    pub elapsed: Duration,
}

struct GraphSink<'o> {
    graph: DirectoryGraph,
    ids: std::collections::HashSet<String>,
    duplicates: Vec<Problem>,
    service_accounts: u64,
    disabled: u64,
    observer: &'o dyn SyncObserver,
}

impl RecordSink for GraphSink<'_> {
    fn accept(&mut self, record: SourceRecord) -> Result<()> {
        let (kind, id) = match &record {
            SourceRecord::Person(p) => ("person", &p.external_id),
            SourceRecord::Group(g) => ("group", &g.external_id),
        };
        if !self.ids.insert(format!("{kind}:{id}")) {
            self.duplicates.push(Problem {
                kind: "duplicate_id",
                subject: id.clone(),
                detail: format!("two {kind} entries share this id; a sync would stop here"),
            });
        }
        match record {
            SourceRecord::Person(person) => {
                self.service_accounts += u64::from(person.service_account);
                self.disabled += u64::from(person.disabled);
                self.graph.people.push(PersonKey::of(&person));
            }
            SourceRecord::Group(group) => self.graph.groups.push(GroupKey::of(&group)),
        }
        let (people, groups) = (self.graph.people.len(), self.graph.groups.len());
        if (people + groups) % 100 == 0 {
            self.observer.read(people as u64, groups as u64);
        }
        Ok(())
    }
}

/// Reads source `name` and works out what a sync would find, writing nothing. Blocking.
pub fn preview_source(
    name: &str,
    config: &SourceConfig,
    observer: &dyn SyncObserver,
) -> Result<SourcePreview> {
    let started = Instant::now();
    let mut sink = GraphSink {
        graph: DirectoryGraph::default(),
        ids: std::collections::HashSet::new(),
        duplicates: Vec::new(),
        service_accounts: 0,
        disabled: 0,
        observer,
    };
    observer.phase("reading the directory");
    let report = fetch(config, &mut sink).map_err(|e| match e {
        crate::error::Error::Source { message, .. } => crate::error::Error::source(name, message),
        other => other,
    })?;
    observer.phase("expanding nested groups");
    let expansion = expand(&sink.graph);
    let mut problems = sink.duplicates;
    problems.extend(configuration_problems(name, &sink.graph, config));
    problems.extend(report.problems.iter().map(|p| Problem {
        kind: p.kind,
        subject: p.subject.clone(),
        detail: p.detail.clone(),
    }));
    problems.extend(expansion.problems);
    Ok(SourcePreview {
        report,
        people: sink.graph.people.len() as u64,
        service_accounts: sink.service_accounts,
        disabled: sink.disabled,
        groups: sink.graph.groups.len() as u64,
        memberships: expansion.resolved_memberships,
        accesses: expansion.grants.len() as u64,
        cycles: expansion.cycles,
        problems,
        elapsed: started.elapsed(),
    })
}
