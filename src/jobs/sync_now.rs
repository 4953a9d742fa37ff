//! "Sync now" from the console or the API: a job that syncs one source at the scheduler's
//! next tick (the request does not wait for a long sync, and one instance runs it), recorded
//! as its asker's (the sync's start event names them). A source with a sync already waiting
//! or running gets no second one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::config::Config;
use crate::db::schema::jobs;
use crate::db::{Database, DbConnection, write_tx};
use crate::directory::sync_source;
use crate::error::Result;
use crate::jobs::queue::{self, Job};

pub const KIND_SYNC_SOURCE: &str = "sync_source";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SyncSource {
    source: String,
    /// Who asked (`staff:ID`, `api_token:ID`); jobs queued before this was kept say
    /// `console`.
    #[serde(default = "console")]
    requested_by: String,
}

fn console() -> String {
    "console".to_string()
}

/// Whether a sync of `source` waits or runs.
pub fn sync_waiting(conn: &mut DbConnection, source: &str) -> Result<bool> {
    let waiting: i64 = jobs::table
        .filter(jobs::kind.eq(KIND_SYNC_SOURCE))
        .filter(jobs::dedupe_key.like(dedupe_prefix(source)).escape('\\'))
        .filter(jobs::state.eq_any([queue::STATE_PENDING, queue::STATE_RUNNING]))
        .count()
        .get_result(conn)?;
    Ok(waiting > 0)
}

/// Queues a sync of `source`, asked by `actor`, unless one waits or runs; returns whether it
/// queued one. The job's key counts the source's earlier syncs asked for, so two requests at
/// once (two admins, two instances) make one job.
pub fn request_sync(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    source: &str,
    actor: &str,
) -> Result<bool> {
    write_tx(conn, |conn| {
        if sync_waiting(conn, source)? {
            return Ok(false);
        }
        let earlier: i64 = jobs::table
            .filter(jobs::kind.eq(KIND_SYNC_SOURCE))
            .filter(jobs::dedupe_key.like(dedupe_prefix(source)).escape('\\'))
            .count()
            .get_result(conn)?;
        let key = format!("{KIND_SYNC_SOURCE}:{source}:{}", earlier + 1);
        let payload = serde_json::to_value(SyncSource {
            source: source.to_string(),
            requested_by: actor.to_string(),
        })?;
        let added = queue::enqueue(conn, now, KIND_SYNC_SOURCE, &key, &payload)?;
        if added {
            tracing::info!(source, by = actor, "sync asked for");
        }
        Ok(added)
    })
}

/// The `LIKE` pattern (escaped with `\`) of the dedupe keys of `source`'s syncs asked for.
fn dedupe_prefix(source: &str) -> String {
    let mut pattern = format!("{KIND_SYNC_SOURCE}:");
    for c in source.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str(":%");
    pattern
}

/// Runs a queued sync.
pub fn run(db: &Database, clock: &dyn Clock, config: &Config, job: &Job) -> Result<()> {
    let task: SyncSource = serde_json::from_str(&job.payload)?;
    let source = config.source(&task.source)?;
    let outcome = sync_source(db, clock, &task.source, source, &task.requested_by)?;
    tracing::info!(source = %task.source, sync_run = %outcome.sync_run_id, "sync asked for ran");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sources_key_pattern_matches_only_its_own_keys() {
        assert_eq!(dedupe_prefix("corp"), "sync_source:corp:%");
        assert_eq!(dedupe_prefix("corp_ad%"), "sync_source:corp\\_ad\\%:%");
        assert_eq!(dedupe_prefix("a\\b"), "sync_source:a\\\\b:%");
    }

    #[test]
    fn a_job_queued_before_the_asker_was_kept_runs_as_the_consoles() {
        let task: SyncSource = serde_json::from_str(r#"{"source":"corp"}"#).unwrap();
        assert_eq!(task.requested_by, "console");
    }
}
