//! Effective access as versions: the expansion of this run's memberships is compared with the
//! accesses current before it, and only the difference is written (new accesses valid from
//! this run, vanished ones closed at it, an access whose chain of groups changed closed and
//! reopened with its original "first seen"). The current accesses are read in pages and the
//! writes go out in short batches.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::clock::Clock;
use crate::db::schema::grant_versions;
use crate::db::time::to_db;
use crate::db::{DbConnection, relax_commit_durability, write_tx};
use crate::directory::effective::{DirectoryGraph, Expansion};
use crate::directory::import::still_running;
use crate::error::Result;

const READ_PAGE: i64 = 10_000;
/// Grant rows have 6 columns.
const ROWS_PER_STATEMENT: usize = 4_000;
const ROWS_PER_FLUSH: usize = 20_000;

#[derive(Insertable)]
#[diesel(table_name = grant_versions)]
#[diesel(treat_none_as_default_value = false)]
struct NewGrantVersion {
    source: String,
    identity_external_id: String,
    entitlement_external_id: String,
    via: Option<String>,
    valid_from: i64,
    first_seen_at: chrono::NaiveDateTime,
}

/// How the run's accesses differ from the previous run's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct GrantChanges {
    pub added: u64,
    pub removed: u64,
    pub rerouted: u64,
    pub total: u64,
}

struct Writer<'c> {
    conn: &'c mut DbConnection,
    clock: &'c dyn Clock,
    sync_run_id: &'c str,
    run: i64,
    new: Vec<NewGrantVersion>,
    closed: Vec<i64>,
}

impl Writer<'_> {
    fn flush_if_full(&mut self) -> Result<()> {
        if self.new.len() + self.closed.len() >= ROWS_PER_FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let (new, closed, run) = (
            std::mem::take(&mut self.new),
            std::mem::take(&mut self.closed),
            self.run,
        );
        if new.is_empty() && closed.is_empty() {
            return Ok(());
        }
        let (sync_run_id, now) = (self.sync_run_id, to_db(self.clock.now()));
        write_tx(self.conn, |conn| {
            relax_commit_durability(conn)?;
            still_running(conn, sync_run_id, now)?;
            crate::bulk_insert!(conn, grant_versions::table, &new, ROWS_PER_STATEMENT)?;
            for chunk in closed.chunks(ROWS_PER_STATEMENT) {
                diesel::update(grant_versions::table.filter(grant_versions::id.eq_any(chunk)))
                    .set(grant_versions::valid_to.eq(Some(run)))
                    .execute(conn)?;
            }
            Ok(())
        })
    }
}

/// Writes the difference between `expansion` and the accesses current before run `run`.
pub(crate) fn apply(
    conn: &mut DbConnection,
    clock: &dyn Clock,
    (source, sync_run_id, run): (&str, &str, i64),
    first_seen_now: chrono::NaiveDateTime,
    graph: &DirectoryGraph,
    expansion: &Expansion,
) -> Result<GrantChanges> {
    let person_index: HashMap<&str, u32> = graph
        .people
        .iter()
        .enumerate()
        .map(|(i, p)| (p.external_id.as_str(), i as u32))
        .collect();
    let group_index: HashMap<&str, u32> = graph
        .groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.external_id.as_str(), i as u32))
        .collect();
    // (person, group) -> chain, for every access of this run not yet matched to a current one.
    let mut pending: HashMap<(u32, u32), Option<&str>> = expansion
        .grants
        .iter()
        .map(|g| ((g.person, g.group), g.via.as_deref()))
        .collect();
    let mut changes = GrantChanges {
        total: pending.len() as u64,
        ..GrantChanges::default()
    };
    let mut writer = Writer {
        conn,
        clock,
        sync_run_id,
        run,
        new: Vec::new(),
        closed: Vec::new(),
    };

    let mut after = 0i64;
    loop {
        type Row = (i64, String, String, Option<String>, chrono::NaiveDateTime);
        let page: Vec<Row> = grant_versions::table
            .filter(grant_versions::source.eq(source))
            .filter(grant_versions::valid_to.is_null())
            .filter(grant_versions::valid_from.lt(run))
            .filter(grant_versions::id.gt(after))
            .order(grant_versions::id.asc())
            .limit(READ_PAGE)
            .select((
                grant_versions::id,
                grant_versions::identity_external_id,
                grant_versions::entitlement_external_id,
                grant_versions::via,
                grant_versions::first_seen_at,
            ))
            .load(writer.conn)?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (id, person, group, via, first_seen_at) in page {
            let key = person_index
                .get(person.as_str())
                .zip(group_index.get(group.as_str()))
                .map(|(p, g)| (*p, *g));
            match key.and_then(|k| pending.remove(&k).map(|now| (k, now))) {
                Some((_, now_via)) if now_via == via.as_deref() => {}
                Some(((p, g), now_via)) => {
                    changes.rerouted += 1;
                    writer.closed.push(id);
                    writer.new.push(NewGrantVersion {
                        source: source.to_string(),
                        identity_external_id: graph.people[p as usize].external_id.clone(),
                        entitlement_external_id: graph.groups[g as usize].external_id.clone(),
                        via: now_via.map(str::to_string),
                        valid_from: run,
                        first_seen_at,
                    });
                }
                None => {
                    changes.removed += 1;
                    writer.closed.push(id);
                }
            }
            writer.flush_if_full()?;
        }
    }

    // What is left is new. In graph order, so that a first sync writes predictably.
    for grant in &expansion.grants {
        let Some(via) = pending.remove(&(grant.person, grant.group)) else {
            continue;
        };
        changes.added += 1;
        writer.new.push(NewGrantVersion {
            source: source.to_string(),
            identity_external_id: graph.people[grant.person as usize].external_id.clone(),
            entitlement_external_id: graph.groups[grant.group as usize].external_id.clone(),
            via: via.map(str::to_string),
            valid_from: run,
            first_seen_at: first_seen_now,
        });
        writer.flush_if_full()?;
    }
    writer.flush()?;
    Ok(changes)
}
