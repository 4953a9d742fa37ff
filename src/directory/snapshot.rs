//! Reading the directory: sync-run records (the population's provenance, its diff and its
//! problems), which run is current for a source, and the "as of run R" filter every query over
//! the versioned tables uses.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::DbConnection;
use crate::db::schema::{sources, sync_run_problems, sync_runs};
use crate::directory::effective::CONTENT_PROBLEM_KINDS;
use crate::error::{Error, Result};

/// One sync run: where a population came from, with which query, and how it ended.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = sync_runs)]
pub struct SyncRun {
    pub id: String,
    pub source: String,
    /// The run's number within its source; versions are valid from and to run numbers.
    pub seq: i64,
    pub server: String,
    pub bind_identity: Option<String>,
    pub page_size: Option<i64>,
    pub searches: String,
    pub started_at: chrono::NaiveDateTime,
    pub finished_at: Option<chrono::NaiveDateTime>,
    pub pages: i64,
    pub entries: i64,
    pub identities: i64,
    pub entitlements: i64,
    /// Direct member references that resolved to a synced person or group.
    pub memberships: i64,
    /// Effective accesses (person, group), direct or through nested groups.
    pub grants: i64,
    pub unresolved_members: i64,
    pub cycles: i64,
    pub raw_sha256: Option<String>,
    pub status: String,
    pub error: Option<String>,
    /// [`SyncDiff`] as JSON.
    pub diff: String,
    /// For an unchanged run: the earlier run whose content problems apply to it too.
    pub problems_from: Option<String>,
    /// How its accesses were derived (`directory::effective::DERIVATION`).
    pub derivation: String,
}

impl SyncRun {
    pub fn diff(&self) -> SyncDiff {
        serde_json::from_str(&self.diff).unwrap_or_default()
    }
}

pub const STATUS_RUNNING: &str = "running";
pub const STATUS_SUCCEEDED: &str = "succeeded";
pub const STATUS_FAILED: &str = "failed";

/// What changed since the previous successful run of the source.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct SyncDiff {
    /// People seen for the first time.
    pub joiners: u64,
    /// People no longer in the directory.
    pub leavers: u64,
    /// People whose entry changed (name, DN, manager, state...).
    pub movers: u64,
    pub groups_added: u64,
    pub groups_removed: u64,
    pub groups_changed: u64,
    pub memberships_added: u64,
    pub memberships_removed: u64,
    pub grants_added: u64,
    pub grants_removed: u64,
    /// Accesses that remain but now come through another chain of groups.
    pub grants_rerouted: u64,
    /// People whose last logon changed (recorded in place, not as a new version).
    pub logons_updated: u64,
}

impl SyncDiff {
    /// Whether the directory's people, groups or memberships changed at all.
    pub fn directory_changed(&self) -> bool {
        self.joiners
            + self.leavers
            + self.movers
            + self.groups_added
            + self.groups_removed
            + self.groups_changed
            + self.memberships_added
            + self.memberships_removed
            > 0
    }
}

/// One thing a sync run could not place (see `directory::effective::Problem`).
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = sync_run_problems)]
pub struct SyncProblem {
    pub kind: String,
    pub subject: String,
    pub detail: String,
}

/// Rows of a versioned table (`identity_versions`, ...) valid in run `run`.
#[macro_export]
macro_rules! as_of {
    ($table:ident, $run:expr) => {
        $crate::db::schema::$table::valid_from.le($run).and(
            $crate::db::schema::$table::valid_to
                .is_null()
                .or($crate::db::schema::$table::valid_to.gt($run)),
        )
    };
}

/// Whether a group named in configuration (by DN or by name, any case) is this group.
pub fn names_group(wanted: &str, dn_norm: &str, name: &str) -> bool {
    crate::sources::normalize_dn(wanted) == dn_norm || wanted.eq_ignore_ascii_case(name)
}

/// The names among `wanted` (DNs or group names) that match no group of `source` as of run
/// `seq`.
pub fn unmatched_group_names(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    wanted: &[String],
) -> Result<Vec<String>> {
    use crate::db::schema::entitlement_versions;
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let groups: Vec<(String, String)> = entitlement_versions::table
        .filter(entitlement_versions::source.eq(source))
        .filter(crate::as_of!(entitlement_versions, seq))
        .select((entitlement_versions::dn_norm, entitlement_versions::name))
        .load(conn)?;
    Ok(wanted
        .iter()
        .filter(|w| !groups.iter().any(|(dn, name)| names_group(w, dn, name)))
        .cloned()
        .collect())
}

/// Configuration that names groups (`privileged_groups`, campaign `groups`) checked against
/// each source's current snapshot; sources never synced are skipped.
pub fn configured_group_problems(
    conn: &mut DbConnection,
    config: &crate::config::Config,
) -> Result<Vec<crate::error::ConfigProblem>> {
    let mut problems = Vec::new();
    let mut check = |conn: &mut DbConnection, key: String, source: &str, names: &[String]| {
        let Some(run) = current_sync_run(conn, source)? else {
            return Ok::<(), Error>(());
        };
        for name in unmatched_group_names(conn, source, run.seq, names)? {
            problems.push(crate::error::ConfigProblem::new(
                &key,
                format!(
                    "`{name}` matches no group of source `{source}` as of its current sync \
                     (run {})",
                    run.seq
                ),
            ));
        }
        Ok(())
    };
    for (name, source) in &config.sources {
        let key = format!("sources.{name}.privileged_groups");
        check(conn, key, name, source.privileged_groups())?;
    }
    for (name, definition) in &config.campaigns {
        let key = format!("campaigns.{name}.groups");
        check(conn, key, &definition.source, &definition.groups)?;
    }
    Ok(problems)
}

pub fn sync_run(conn: &mut DbConnection, id: &str) -> Result<SyncRun> {
    sync_runs::table
        .find(id)
        .select(SyncRun::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("sync run {id} not found")))
}

/// The run whose snapshot is current for `source`, if it ever synced successfully.
pub fn current_sync_run(conn: &mut DbConnection, source: &str) -> Result<Option<SyncRun>> {
    let current: Option<Option<String>> = sources::table
        .find(source)
        .select(sources::current_sync_run_id)
        .first(conn)
        .optional()?;
    match current.flatten() {
        Some(id) => Ok(Some(sync_run(conn, &id)?)),
        None => Ok(None),
    }
}

/// Every run of a source, newest first.
pub fn sync_runs_of(conn: &mut DbConnection, source: &str) -> Result<Vec<SyncRun>> {
    Ok(sync_runs::table
        .filter(sync_runs::source.eq(source))
        .order(sync_runs::started_at.desc())
        .then_order_by(sync_runs::seq.desc())
        .select(SyncRun::as_select())
        .load(conn)?)
}

/// What a run could not place, by kind and group: its own problems, and for an unchanged run
/// the content problems of the run it names.
pub fn problems_of(conn: &mut DbConnection, sync_run_id: &str) -> Result<Vec<SyncProblem>> {
    let inherited_from: Option<Option<String>> = sync_runs::table
        .find(sync_run_id)
        .select(sync_runs::problems_from)
        .first(conn)
        .optional()?;
    let mut problems: Vec<SyncProblem> = sync_run_problems::table
        .filter(sync_run_problems::sync_run_id.eq(sync_run_id))
        .select(SyncProblem::as_select())
        .load(conn)?;
    if let Some(from) = inherited_from.flatten() {
        problems.extend(
            sync_run_problems::table
                .filter(sync_run_problems::sync_run_id.eq(from))
                .filter(sync_run_problems::kind.eq_any(CONTENT_PROBLEM_KINDS))
                .select(SyncProblem::as_select())
                .load(conn)?,
        );
    }
    problems
        .sort_by(|a, b| (&a.kind, &a.subject, &a.detail).cmp(&(&b.kind, &b.subject, &b.detail)));
    Ok(problems)
}

/// Per configured source: when its current snapshot was taken, and how its latest run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFreshness {
    pub source: String,
    /// When the run whose snapshot is current finished (none if it never synced).
    pub current_finished_at: Option<chrono::NaiveDateTime>,
    /// The status of the latest run that ended (`succeeded`, `failed`), if any.
    pub latest_status: Option<String>,
}

pub fn source_freshness(conn: &mut DbConnection, source: &str) -> Result<SourceFreshness> {
    let current_finished_at = current_sync_run(conn, source)?.and_then(|r| r.finished_at);
    let latest_status: Option<String> = sync_runs::table
        .filter(sync_runs::source.eq(source))
        .filter(sync_runs::finished_at.is_not_null())
        .order((sync_runs::finished_at.desc(), sync_runs::seq.desc()))
        .select(sync_runs::status)
        .first(conn)
        .optional()?;
    Ok(SourceFreshness {
        source: source.to_string(),
        current_finished_at,
        latest_status,
    })
}
