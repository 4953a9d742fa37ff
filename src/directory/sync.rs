//! One sync of one source, start to end: the run is recorded (one at a time per source), the
//! source streams into the import, nested groups are expanded if anything changed, and the
//! final transaction records counts, diff and problems and makes the run current. On any
//! failure the run's versions are removed and the versions it closed reopened, so the previous
//! state stays current and nothing of the failed run is visible.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::clock::Clock;
use crate::config::SourceConfig;
use crate::db::schema::{identity_versions, sources, sync_run_problems, sync_runs};
use crate::db::time::to_db;
use crate::db::{Database, DbConnection, new_id, write_tx};
use crate::directory::effective::{DERIVATION, DirectoryGraph, Expansion, Problem, expand};
use crate::directory::failed_runs::{ABANDONED_AFTER_MINUTES, fail_run, sweep_abandoned_runs};
use crate::directory::grants::{self, GrantChanges};
use crate::directory::import::{DirectoryImport, Imported};
use crate::directory::snapshot::{
    STATUS_RUNNING, STATUS_SUCCEEDED, SyncDiff, SyncRun, current_sync_run, names_group,
};
use crate::error::{Error, Result};
use crate::ledger::{EventKind, append};
use crate::sources::{FetchReport, fetch, server_of};

/// Problem kind of a `privileged_groups` name that matches no synced group.
pub const PRIVILEGED_GROUP_MISSING: &str = "privileged_group_missing";

/// What a successful sync found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub sync_run_id: String,
    pub entries: u64,
    pub identities: i64,
    pub entitlements: i64,
    pub memberships: i64,
    pub grants: i64,
    pub unresolved_members: i64,
    pub cycles: i64,
    /// `privileged_groups` names that match no synced group.
    pub privileged_groups_missing: Vec<String>,
    pub diff: SyncDiff,
}

/// Told how a sync is going, for a progress display. Calls are frequent and must be cheap.
pub trait SyncObserver {
    /// Entries read so far.
    fn read(&self, _people: u64, _groups: u64) {}
    /// The sync moved on to another step.
    fn phase(&self, _phase: &'static str) {}
}

/// An observer that shows nothing.
pub struct Quiet;

impl SyncObserver for Quiet {}

impl SyncOutcome {
    /// One line for people: what the directory holds, what changed, what could not be placed.
    pub fn summary(&self) -> String {
        let d = &self.diff;
        let holds = format!(
            "{} people, {} groups, {} accesses ({} direct memberships)",
            self.identities, self.entitlements, self.grants, self.memberships
        );
        let changes = if d.directory_changed() {
            format!(
                "{} joined, {} left, {} changed; groups +{} -{} ~{}; accesses +{} -{} ~{}",
                d.joiners,
                d.leavers,
                d.movers,
                d.groups_added,
                d.groups_removed,
                d.groups_changed,
                d.grants_added,
                d.grants_removed,
                d.grants_rerouted
            )
        } else {
            "unchanged since the last sync, nothing written".to_string()
        };
        let mut line = format!("{holds}; {changes}");
        if self.unresolved_members > 0 || self.cycles > 0 {
            line.push_str(&format!(
                "; {} unresolved member(s), {} nesting cycle(s)",
                self.unresolved_members, self.cycles
            ));
        }
        if !self.privileged_groups_missing.is_empty() {
            line.push_str(&format!(
                "; privileged group(s) not found: {}",
                self.privileged_groups_missing.join(", ")
            ));
        }
        line.push_str(&format!(" (sync run {})", self.sync_run_id));
        line
    }
}

/// Syncs one source: records the run, imports the changes, and makes it current on success.
/// Blocking; run it on a blocking thread.
pub fn sync_source(
    db: &Database,
    clock: &dyn Clock,
    name: &str,
    config: &SourceConfig,
    actor: &str,
) -> Result<SyncOutcome> {
    sync_source_observed(db, clock, name, config, actor, &Quiet)
}

/// [`sync_source`], telling `observer` how it goes.
pub fn sync_source_observed(
    db: &Database,
    clock: &dyn Clock,
    name: &str,
    config: &SourceConfig,
    actor: &str,
    observer: &dyn SyncObserver,
) -> Result<SyncOutcome> {
    let mut conn = db.conn()?;
    let started_at = clock.now();
    sweep_abandoned_runs(&mut conn, started_at, name, actor)?;
    let (sync_run_id, run) = begin_run(&mut conn, started_at, name, config, actor)?;
    tracing::info!(source = name, sync_run = %sync_run_id, run, "sync started");

    let at = RunAt {
        sync_run_id: &sync_run_id,
        run,
        started_at,
    };
    let synced = import(&mut conn, clock, name, &at, config, observer).and_then(
        |(report, imported, derived)| {
            let mut found = configuration_problems(name, &imported.graph, config);
            found.extend(source_problems(&report));
            let finished = FinishedImport {
                report,
                imported,
                derived,
                configuration_problems: found,
            };
            finish_run(&mut conn, clock.now(), name, &sync_run_id, finished, actor)
        },
    );
    match synced {
        Ok(outcome) => {
            tracing::info!(
                source = name,
                sync_run = %sync_run_id,
                identities = outcome.identities,
                entitlements = outcome.entitlements,
                grants = outcome.grants,
                changed = outcome.diff.directory_changed(),
                "sync succeeded"
            );
            Ok(outcome)
        }
        Err(err) => {
            let message = match &err {
                Error::Source { message, .. } => message.clone(),
                other => other.to_string(),
            };
            tracing::warn!(source = name, sync_run = %sync_run_id, error = %message, "sync failed");
            // The sync's own error is what the caller must see, even if recording it fails.
            if let Err(record_error) =
                fail_run(&mut conn, clock.now(), name, &sync_run_id, &message, actor)
            {
                tracing::error!(sync_run = %sync_run_id, error = %record_error, "cannot record the failed sync");
            }
            Err(Error::source(name, message))
        }
    }
}

/// Accesses and problems of the run: worked out afresh when the directory changed, else the
/// previous run's (nothing about them can have changed).
enum Derived {
    Expanded(Expansion, GrantChanges),
    Unchanged(Box<SyncRun>),
}

/// What a run found besides its accesses: names in `privileged_groups` that match no synced
/// group (recorded afresh on every run, since the configuration may change between runs).
pub(crate) fn configuration_problems(
    name: &str,
    graph: &DirectoryGraph,
    config: &SourceConfig,
) -> Vec<Problem> {
    config
        .privileged_groups()
        .iter()
        .filter(|wanted| {
            !graph
                .groups
                .iter()
                .any(|g| names_group(wanted, &g.dn_norm, &g.name))
        })
        .map(|wanted| Problem {
            kind: PRIVILEGED_GROUP_MISSING,
            subject: wanted.clone(),
            detail: format!(
                "sources.{name}.privileged_groups names `{wanted}`, which matches no synced group"
            ),
        })
        .collect()
}

/// Which run of a source is being written.
struct RunAt<'a> {
    sync_run_id: &'a str,
    run: i64,
    started_at: DateTime<Utc>,
}

/// What the source itself reported (skipped referrals, capped member lists...).
fn source_problems(report: &FetchReport) -> Vec<Problem> {
    report
        .problems
        .iter()
        .map(|p| Problem {
            kind: p.kind,
            subject: p.subject.clone(),
            detail: p.detail.clone(),
        })
        .collect()
}

fn import(
    conn: &mut DbConnection,
    clock: &dyn Clock,
    name: &str,
    at: &RunAt<'_>,
    config: &SourceConfig,
    observer: &dyn SyncObserver,
) -> Result<(FetchReport, Imported, Derived)> {
    let (run, started_at) = (at.run, at.started_at);
    let previous = current_sync_run(conn, name)?;
    observer.phase("reading the directory");
    let mut import = DirectoryImport::start(
        conn,
        clock,
        name,
        at.sync_run_id,
        run,
        config.privileged_groups(),
    )?
    .observed_by(observer);
    let report = fetch(config, &mut import)?;
    observer.phase("recording changes");
    let imported = import.finish()?;
    let derived = match previous {
        Some(previous)
            if !imported.diff.directory_changed() && previous.derivation == DERIVATION =>
        {
            Derived::Unchanged(Box::new(previous))
        }
        _ => {
            observer.phase("expanding nested groups");
            let expansion = expand(&imported.graph);
            observer.phase("recording accesses");
            let changes = grants::apply(
                conn,
                clock,
                (name, at.sync_run_id, run),
                to_db(started_at),
                &imported.graph,
                &expansion,
            )?;
            Derived::Expanded(expansion, changes)
        }
    };
    Ok((report, imported, derived))
}

fn begin_run(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    name: &str,
    config: &SourceConfig,
    actor: &str,
) -> Result<(String, i64)> {
    let kind = config.kind();
    let sync_run_id = new_id();
    let server = server_of(config);
    let begun = write_tx(conn, |conn| {
        let source_row = (
            sources::name.eq(name),
            sources::kind.eq(kind),
            sources::updated_at.eq(to_db(at)),
        );
        // Two first syncs of the same source may race; the row just has to exist.
        match conn {
            DbConnection::Postgres(pg) => diesel::insert_into(sources::table)
                .values(source_row)
                .on_conflict_do_nothing()
                .execute(pg)?,
            DbConnection::Sqlite(sqlite) => diesel::insert_into(sources::table)
                .values(source_row)
                .on_conflict_do_nothing()
                .execute(sqlite)?,
        };
        let last: Option<i64> = sync_runs::table
            .filter(sync_runs::source.eq(name))
            .select(diesel::dsl::max(sync_runs::seq))
            .first(conn)?;
        let run = last.unwrap_or(0) + 1;
        diesel::insert_into(sync_runs::table)
            .values((
                sync_runs::id.eq(&sync_run_id),
                sync_runs::source.eq(name),
                sync_runs::seq.eq(run),
                sync_runs::server.eq(&server),
                sync_runs::searches.eq("[]"),
                sync_runs::started_at.eq(to_db(at)),
                sync_runs::heartbeat_at.eq(Some(to_db(at))),
                sync_runs::status.eq(STATUS_RUNNING),
            ))
            .execute(conn)?;
        append(
            conn,
            at,
            EventKind::SyncStarted,
            actor,
            Some(&sync_run_id),
            &json!({ "source": name, "sync_run": sync_run_id, "run": run, "server": server }),
        )?;
        Ok(run)
    });
    match begun {
        Ok(run) => Ok((sync_run_id, run)),
        // The one-running-sync-per-source index: another sync holds the source.
        Err(Error::Conflict(_)) => Err(Error::Conflict(format!(
            "a sync of `{name}` is already running; wait for it to finish (a sync whose \
             process died is ended {ABANDONED_AFTER_MINUTES} minutes after its last sign of life)"
        ))),
        Err(other) => Err(other),
    }
}

/// Everything a run found, ready to be recorded.
struct FinishedImport {
    report: FetchReport,
    imported: Imported,
    derived: Derived,
    configuration_problems: Vec<Problem>,
}

/// Counts, diff and problems recorded, the run made current, its event written: one
/// transaction.
fn finish_run(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    name: &str,
    sync_run_id: &str,
    finished: FinishedImport,
    actor: &str,
) -> Result<SyncOutcome> {
    let FinishedImport {
        report,
        imported,
        derived,
        configuration_problems,
    } = finished;
    let report = &report;
    let mut diff = imported.diff;
    let identities = imported.graph.people.len() as i64;
    let entitlements = imported.graph.groups.len() as i64;
    write_tx(conn, |conn| {
        record_problems(conn, sync_run_id, &configuration_problems)?;
        // Last logons are observations on the current versions: they change with the run.
        for (version_id, last_login_at) in &imported.logons {
            diesel::update(identity_versions::table.find(version_id))
                .set(identity_versions::last_login_at.eq(last_login_at))
                .execute(conn)?;
        }
        let mut problems_from = None;
        let (memberships, grants, cycles, unresolved) = match &derived {
            Derived::Expanded(expansion, changes) => {
                diff.grants_added = changes.added;
                diff.grants_removed = changes.removed;
                diff.grants_rerouted = changes.rerouted;
                record_problems(conn, sync_run_id, &expansion.problems)?;
                let unresolved = expansion
                    .problems
                    .iter()
                    .filter(|p| p.kind == "unresolved_member")
                    .count();
                (
                    expansion.resolved_memberships as i64,
                    changes.total as i64,
                    expansion.cycles as i64,
                    unresolved as i64,
                )
            }
            Derived::Unchanged(previous) => {
                // The same directory has the same problems: named, not copied.
                problems_from = Some(
                    previous
                        .problems_from
                        .clone()
                        .unwrap_or_else(|| previous.id.clone()),
                );
                (
                    previous.memberships,
                    previous.grants,
                    previous.cycles,
                    previous.unresolved_members,
                )
            }
        };
        let previous: Option<Option<String>> = sources::table
            .find(name)
            .select(sources::current_sync_run_id)
            .first(conn)
            .optional()?;
        let searches = serde_json::to_string(&report.searches)?;
        let marked = diesel::update(
            sync_runs::table
                .find(sync_run_id)
                .filter(sync_runs::status.eq(STATUS_RUNNING)),
        )
        .set((
            sync_runs::searches.eq(&searches),
            sync_runs::bind_identity.eq(report.bind_identity.as_deref()),
            sync_runs::page_size.eq(report.page_size),
            sync_runs::finished_at.eq(Some(to_db(at))),
            sync_runs::pages.eq(report.pages() as i64),
            sync_runs::entries.eq(report.entries() as i64),
            sync_runs::identities.eq(identities),
            sync_runs::entitlements.eq(entitlements),
            sync_runs::memberships.eq(memberships),
            sync_runs::grants.eq(grants),
            sync_runs::unresolved_members.eq(unresolved),
            sync_runs::cycles.eq(cycles),
            sync_runs::raw_sha256.eq(Some(&report.raw_sha256)),
            sync_runs::diff.eq(serde_json::to_string(&diff)?),
            sync_runs::problems_from.eq(problems_from.as_deref()),
            sync_runs::derivation.eq(DERIVATION),
            sync_runs::status.eq(STATUS_SUCCEEDED),
        ))
        .execute(conn)?;
        if marked == 0 {
            return Err(Error::Conflict(
                "the sync run was ended by someone else while it was importing".into(),
            ));
        }
        diesel::update(sources::table.find(name))
            .set((
                sources::current_sync_run_id.eq(Some(sync_run_id)),
                sources::updated_at.eq(to_db(at)),
            ))
            .execute(conn)?;
        append(
            conn,
            at,
            EventKind::SyncSucceeded,
            actor,
            Some(sync_run_id),
            &json!({
                "source": name,
                "sync_run": sync_run_id,
                "previous_sync_run": previous.clone().flatten(),
                "server": report.server,
                "bind_identity": report.bind_identity,
                "page_size": report.page_size,
                "searches": report.searches,
                "entries": report.entries(),
                "identities": identities,
                "entitlements": entitlements,
                "memberships": memberships,
                "grants": grants,
                "unresolved_members": unresolved,
                "cycles": cycles,
                "member_references": imported.member_references,
                "diff": diff,
                "raw_sha256": report.raw_sha256,
            }),
        )?;
        Ok(SyncOutcome {
            sync_run_id: sync_run_id.to_string(),
            entries: report.entries(),
            identities,
            entitlements,
            memberships,
            grants,
            unresolved_members: unresolved,
            cycles,
            privileged_groups_missing: configuration_problems
                .iter()
                .filter(|p| p.kind == PRIVILEGED_GROUP_MISSING)
                .map(|p| p.subject.clone())
                .collect(),
            diff,
        })
    })
}

fn record_problems(conn: &mut DbConnection, sync_run_id: &str, problems: &[Problem]) -> Result<()> {
    for chunk in problems.chunks(500) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|p| {
                (
                    sync_run_problems::sync_run_id.eq(sync_run_id),
                    sync_run_problems::kind.eq(p.kind),
                    sync_run_problems::subject.eq(&p.subject),
                    sync_run_problems::detail.eq(&p.detail),
                )
            })
            .collect();
        crate::insert_rows!(conn, sync_run_problems::table, rows)?;
    }
    Ok(())
}
