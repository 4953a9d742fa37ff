//! Campaign generation: one review item per (person, group) of the source's current snapshot,
//! each routed to a reviewer, and one digest per reviewer. The period is claimed by a
//! `generating` campaign, items are frozen in chunks of short transactions (`freeze`), and
//! one last transaction opens the campaign with its event and digests: a campaign is seen
//! whole or not at all, and SQLite's write lock is never held for the whole generation.

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::campaigns::freeze::{Frozen, FrozenSnapshot, freeze_items};
use crate::campaigns::generation_guard::GenerationGuard;
use crate::campaigns::model::{Campaign, STATE_GENERATING, STATE_OPEN, campaign};
use crate::campaigns::population::Population;
use crate::campaigns::reviewers::Candidate;
use crate::campaigns::reviewers::{resolve_fallbacks, resolve_named};
use crate::campaigns::routing::{ChainPeople, RoutingPlan};
use crate::campaigns::schedule::Schedule;
use crate::clock::Clock;
use crate::config::{CampaignDefinition, Config};
use crate::db::schema::{campaigns, review_items, reviewers};
use crate::db::time::to_db;
use crate::db::{Database, DbConnection, new_id, write_tx};
use crate::directory::current_sync_run;
use crate::directory::snapshot::unmatched_group_names;
use crate::error::{ConfigProblem, Error, Result};
use crate::ledger::{EventKind, append};
use crate::notify::outbox;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCampaign {
    pub campaign: Campaign,
    pub items: i64,
    pub reviewers: i64,
}

/// Start of the calendar quarter containing `at` (UTC): the period of a definition whose
/// schedule is manual.
pub fn quarter_start(at: DateTime<Utc>) -> DateTime<Utc> {
    let month = (at.month0() / 3) * 3 + 1;
    Utc.with_ymd_and_hms(at.year(), month, 1, 0, 0, 0)
        .single()
        .unwrap_or(at)
}

/// Which period a campaign reviews, and how its opening relates to the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub period_start: DateTime<Utc>,
    /// Opened well after the period began.
    pub late: bool,
    /// Earlier periods that got no campaign (the service was down through them).
    pub missed_periods: Vec<DateTime<Utc>>,
}

/// Opens a campaign of `definition_name` by hand. `now_period` starts an ad-hoc campaign whose
/// period begins now; otherwise the period is the schedule's current one (the calendar quarter
/// for a manual schedule), and a second start in the same period is refused (one campaign per
/// definition and period).
pub fn start_campaign(
    db: &Database,
    clock: &dyn Clock,
    config: &Config,
    definition_name: &str,
    now_period: bool,
    actor: &str,
) -> Result<StartedCampaign> {
    let definition = config.campaign_definition(definition_name)?;
    let now = clock.now();
    let period_start = if now_period {
        now
    } else {
        Schedule::of(&format!("campaigns.{definition_name}"), definition)
            .map_err(Error::Config)?
            .period_containing(now)
            .unwrap_or_else(|| quarter_start(now))
    };
    let opening = Opening {
        period_start,
        late: false,
        missed_periods: Vec::new(),
    };
    open_campaign(db, clock, config, definition_name, &opening, actor)
}

/// Opens the campaign of `definition_name` for `opening`'s period: claims the period with a
/// `generating` campaign, freezes the items chunk by chunk, then opens it in one last
/// transaction with its event and digests. Until then nobody sees it: no mail, no links, no
/// event. A generation that fails removes what it wrote; one whose process died is removed
/// by the next attempt (see `generation_guard`).
pub fn open_campaign(
    db: &Database,
    clock: &dyn Clock,
    config: &Config,
    definition_name: &str,
    opening: &Opening,
    actor: &str,
) -> Result<StartedCampaign> {
    let definition = config.campaign_definition(definition_name)?;
    let named = NamedGroups {
        definition: definition_name,
        privileged: config.source(&definition.source)?.privileged_groups(),
    };
    let mut conn = db.conn()?;
    let conn = &mut *conn;
    let now = clock.now();
    let started_at = std::time::Instant::now();
    // Reads first, outside any write transaction: a run's snapshot never changes.
    let source = definition.source.as_str();
    let run = current_sync_run(conn, source)?.ok_or_else(|| {
        Error::Conflict(format!(
            "source `{source}` has no snapshot yet; run `attest sync {source}` first"
        ))
    })?;
    refuse_unmatched_names(conn, &named, definition, run.seq)?;
    let mut population = Population::load(conn, source, run.seq, definition)?;
    let new_since = match definition.only_new_access {
        true => {
            let mut since = vec![definition_name];
            since.extend(definition.new_since.as_deref());
            reference_snapshot(conn, &since)?
        }
        false => None,
    };
    population.new_since = new_since.as_ref().map(|r| r.started_at);
    let fallbacks = resolve_fallbacks(conn, source, run.seq, &definition.fallback_reviewers)?;
    let named_reviewers = resolve_named(conn, source, run.seq, &definition.named_reviewers)?;
    let population_ms = started_at.elapsed().as_millis();
    crate::campaigns::freeze::stage_groups(conn, &population)?;
    let holders = crate::campaigns::staging::holders(conn, source, run.seq, &population)?;
    let holders_ms = started_at.elapsed().as_millis() - population_ms;
    let people = holders
        .subjects
        .iter()
        .filter_map(|(id, _)| Some((id.clone(), population.facts(id)?)))
        .collect();
    let chain = ChainPeople {
        steps: definition.stage_chains().swap_remove(0),
        owners: population.owner_facts(),
        named: named_reviewers,
        fallbacks,
    };
    let plan = RoutingPlan::new(people, holders.subjects.iter().cloned(), chain)?;

    let claim = Claim {
        now,
        opening,
        named: &named,
        definition,
        run: &run,
        groups_in_scope: population.groups.len(),
        new_since: new_since.as_ref(),
    };
    let read_ms = started_at.elapsed().as_millis();
    let (campaign_id, guard) = claim_period(db, conn, &claim)?;
    let snapshot = FrozenSnapshot {
        now,
        source,
        seq: run.seq,
        population: &population,
        holders: &holders,
        plan: &plan,
    };
    let frozen_at = std::time::Instant::now();
    let generated = freeze_items(conn, &campaign_id, &snapshot).and_then(|frozen| {
        let freeze_ms = frozen_at.elapsed().as_millis();
        let opened_at = std::time::Instant::now();
        let started = open_generated(conn, &claim, &campaign_id, &frozen, actor)?;
        Ok((started, freeze_ms, opened_at.elapsed().as_millis()))
    });
    match generated {
        Ok((started, freeze_ms, open_ms)) => {
            guard.release(conn)?;
            tracing::info!(
                campaign = %started.campaign.id,
                definition = definition_name,
                items = started.items,
                reviewers = started.reviewers,
                read_ms,
                population_ms,
                holders_ms,
                freeze_ms,
                open_ms,
                "campaign opened"
            );
            Ok(started)
        }
        Err(error) => {
            // Best effort: what is left is removed by the next attempt anyway.
            if let Err(e) = write_tx(conn, |conn| discard_generating(conn, &campaign_id)) {
                tracing::warn!(campaign = %campaign_id, error = %e, "partial campaign not removed");
            }
            let _ = guard.release(conn);
            Err(error)
        }
    }
}

/// The definition's key and the source's privileged group names, checked against the snapshot.
struct NamedGroups<'a> {
    definition: &'a str,
    privileged: &'a [String],
}

/// What the campaign row records of its opening.
struct Claim<'a> {
    now: DateTime<Utc>,
    opening: &'a Opening,
    named: &'a NamedGroups<'a>,
    definition: &'a CampaignDefinition,
    run: &'a crate::directory::snapshot::SyncRun,
    groups_in_scope: usize,
    /// An off-cycle review: the campaign whose snapshot marks "new since".
    new_since: Option<&'a ReferenceSnapshot>,
}

/// The snapshot an off-cycle review compares with: that of the latest campaign of a
/// definition, and when its sync started (accesses first seen later are new).
#[derive(Debug, Clone)]
struct ReferenceSnapshot {
    definition: String,
    campaign: String,
    sync_run: String,
    started_at: chrono::NaiveDateTime,
}

/// The latest campaign of any of `definitions` (this off-cycle one and the full review it
/// follows; opened or closed) and its snapshot: what it covered is not reviewed again. None
/// before the first, when every access counts as new.
fn reference_snapshot(
    conn: &mut DbConnection,
    definitions: &[&str],
) -> Result<Option<ReferenceSnapshot>> {
    let latest: Option<(String, String, String)> = campaigns::table
        .filter(campaigns::definition.eq_any(definitions))
        .filter(campaigns::state.ne(STATE_GENERATING))
        .order((campaigns::opened_at.desc(), campaigns::id.desc()))
        .select((campaigns::definition, campaigns::id, campaigns::sync_run_id))
        .first(conn)
        .optional()?;
    let Some((definition, campaign, sync_run_id)) = latest else {
        return Ok(None);
    };
    let run = crate::directory::snapshot::sync_run(conn, &sync_run_id)?;
    Ok(Some(ReferenceSnapshot {
        definition,
        campaign,
        sync_run: sync_run_id,
        started_at: run.started_at,
    }))
}

impl Claim<'_> {
    fn scope(&self) -> serde_json::Value {
        let d = self.definition;
        json!({
            "groups": d.groups,
            "privileged_only": d.privileged_only,
            "include_service_accounts": d.include_service_accounts,
            "include_disabled": d.include_disabled,
            "reviewer_chain": d.reviewer_chain,
            "named_reviewers": d.named_reviewers,
            "group_owners": d.group_owners,
            "only_new_access": d.only_new_access,
            "new_since": self.new_since.map(|r| json!({
                "definition": r.definition,
                "campaign": r.campaign,
                "sync_run": r.sync_run,
                "first_seen_after": crate::db::time::from_db(r.started_at),
            })),
            "stages": d.stages,
            "stage_outcome": d.stage_outcome,
            "fallback_reviewers": d.fallback_reviewers,
            "duration_days": d.duration_days,
            "entitlements": self.groups_in_scope,
        })
    }

    fn due_at(&self) -> DateTime<Utc> {
        self.now + Duration::days(i64::from(self.definition.duration_days))
    }
}

/// Claims the period with a `generating` campaign, guarded for as long as this process
/// generates it. Generations of the definition left by dead processes are removed first; a
/// campaign of the period that exists after that is a conflict (open, closed, or generating
/// in a live process).
fn claim_period(
    db: &Database,
    conn: &mut DbConnection,
    claim: &Claim<'_>,
) -> Result<(String, GenerationGuard)> {
    let definition_name = claim.named.definition;
    let period_start = claim.opening.period_start;
    write_tx(conn, |conn| {
        remove_dead_generations(db, conn, definition_name)?;
        let existing: Option<(String, String)> = campaigns::table
            .filter(campaigns::definition.eq(definition_name))
            .filter(campaigns::period_start.eq(to_db(period_start)))
            .select((campaigns::id, campaigns::state))
            .first(conn)
            .optional()?;
        if let Some((old_id, state)) = existing {
            if state != STATE_GENERATING {
                return Err(Error::Conflict(format!(
                    "a `{definition_name}` campaign for the period starting {} already exists",
                    period_start.format("%Y-%m-%d")
                )));
            }
            return Err(Error::Conflict(format!(
                "the `{definition_name}` campaign {old_id} for the period starting {} is being \
                 generated by another process; it opens when that ends",
                period_start.format("%Y-%m-%d")
            )));
        }
        let campaign_id = new_id();
        let definition = claim.definition;
        diesel::insert_into(campaigns::table)
            .values((
                campaigns::id.eq(&campaign_id),
                campaigns::definition.eq(definition_name),
                campaigns::title.eq(title_of(definition, definition_name)),
                campaigns::source.eq(&definition.source),
                campaigns::sync_run_id.eq(&claim.run.id),
                campaigns::scope.eq(claim.scope().to_string()),
                campaigns::period_start.eq(to_db(period_start)),
                campaigns::opened_at.eq(to_db(claim.now)),
                campaigns::due_at.eq(to_db(claim.due_at())),
                campaigns::state.eq(STATE_GENERATING),
                campaigns::late.eq(claim.opening.late),
            ))
            .execute(conn)
            .map_err(|e| match Error::from(e) {
                // Another instance claimed the period between the read above and this insert
                // (PostgreSQL; SQLite's write lock serialises the two).
                Error::Conflict(_) => Error::Conflict(format!(
                    "a `{definition_name}` campaign for the period starting {} already exists",
                    period_start.format("%Y-%m-%d")
                )),
                other => other,
            })?;
        // Taken before the row is committed: whoever sees it sees it guarded.
        let guard = GenerationGuard::try_take(db, conn, &campaign_id)?
            .ok_or_else(|| Error::Internal("a new campaign's guard is taken".into()))?;
        Ok((campaign_id, guard))
    })
}

/// Removes the definition's `generating` campaigns whose generating process is gone.
fn remove_dead_generations(db: &Database, conn: &mut DbConnection, definition: &str) -> Result<()> {
    let generating: Vec<String> = campaigns::table
        .filter(campaigns::definition.eq(definition))
        .filter(campaigns::state.eq(STATE_GENERATING))
        .select(campaigns::id)
        .load(conn)?;
    for id in generating {
        if let Some(guard) = GenerationGuard::try_take(db, conn, &id)? {
            tracing::warn!(campaign = %id, "removing a campaign whose generation died");
            // Released whatever the removal does: a guard kept by a pooled session would
            // make the dead campaign look alive to everyone else.
            let discarded = discard_generating(conn, &id);
            guard.release(conn)?;
            discarded?;
        }
    }
    Ok(())
}

fn title_of(definition: &CampaignDefinition, name: &str) -> String {
    definition.title.clone().unwrap_or_else(|| name.to_string())
}

/// Removes a `generating` campaign with its reviewers and items (never an opened one).
fn discard_generating(conn: &mut DbConnection, campaign_id: &str) -> Result<()> {
    let generating = campaigns::table
        .find(campaign_id)
        .filter(campaigns::state.eq(STATE_GENERATING))
        .count()
        .get_result::<i64>(conn)?;
    if generating == 0 {
        return Ok(());
    }
    diesel::delete(review_items::table.filter(review_items::campaign_id.eq(campaign_id)))
        .execute(conn)?;
    diesel::delete(reviewers::table.filter(reviewers::campaign_id.eq(campaign_id)))
        .execute(conn)?;
    diesel::delete(campaigns::table.find(campaign_id)).execute(conn)?;
    Ok(())
}

/// Turns the generated campaign open, with its event and one digest per reviewer.
fn open_generated(
    conn: &mut DbConnection,
    claim: &Claim<'_>,
    campaign_id: &str,
    frozen: &Frozen,
    actor: &str,
) -> Result<StartedCampaign> {
    let (now, definition_name) = (claim.now, claim.named.definition);
    write_tx(conn, |conn| {
        let opened = diesel::update(
            campaigns::table
                .find(campaign_id)
                .filter(campaigns::state.eq(STATE_GENERATING)),
        )
        .set(campaigns::state.eq(STATE_OPEN))
        .execute(conn)?;
        if opened != 1 {
            return Err(Error::Conflict(format!(
                "campaign {campaign_id} was removed while it generated"
            )));
        }
        append(
            conn,
            now,
            EventKind::CampaignOpened,
            actor,
            Some(campaign_id),
            &json!({
                "campaign": campaign_id,
                "definition": definition_name,
                "title": title_of(claim.definition, definition_name),
                "source": claim.definition.source,
                "sync_run": claim.run.id,
                "period_start": claim.opening.period_start.to_rfc3339(),
                "late": claim.opening.late,
                "missed_periods": claim
                    .opening
                    .missed_periods
                    .iter()
                    .map(|p| p.to_rfc3339())
                    .collect::<Vec<_>>(),
                "due_at": claim.due_at().to_rfc3339(),
                "items": frozen.items,
                "reviewers": frozen.reviewer_ids.len(),
                "scope": claim.scope(),
            }),
        )?;
        outbox::enqueue_review_requests(conn, now, campaign_id, &frozen.reviewer_ids, actor)?;
        Ok(StartedCampaign {
            campaign: campaign(conn, campaign_id)?,
            items: frozen.items,
            reviewers: frozen.reviewer_ids.len() as i64,
        })
    })
}

pub(crate) fn insert_reviewers(
    conn: &mut DbConnection,
    campaign_id: &str,
    new_reviewers: &[(String, Candidate)],
) -> Result<()> {
    if new_reviewers.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = new_reviewers
        .iter()
        .map(|(id, c)| {
            (
                reviewers::id.eq(id.clone()),
                reviewers::campaign_id.eq(campaign_id.to_string()),
                reviewers::identity_external_id.eq(c.external_id.clone()),
                reviewers::login.eq(c.login.clone()),
                reviewers::email.eq(c.email.clone()),
                reviewers::display_name.eq(c.display_name.clone()),
            )
        })
        .collect();
    // 6 columns a row: well under either database's limit of bound values per statement.
    for chunk in rows.chunks(1_000) {
        crate::insert_rows!(conn, reviewers::table, chunk)?;
    }
    Ok(())
}

/// A group named in the campaign's `groups` or the source's `privileged_groups` that matches
/// no group of the snapshot is a configuration error: reviewing "every privileged group" or
/// "these groups" while one of them silently matches nothing would miss access.
fn refuse_unmatched_names(
    conn: &mut DbConnection,
    named: &NamedGroups<'_>,
    definition: &CampaignDefinition,
    seq: i64,
) -> Result<()> {
    let source = definition.source.as_str();
    let mut problems = Vec::new();
    let checks = [
        (
            format!("campaigns.{}.groups", named.definition),
            &definition.groups[..],
        ),
        (
            format!("sources.{source}.privileged_groups"),
            named.privileged,
        ),
    ];
    for (key, names) in checks {
        for name in unmatched_group_names(conn, source, seq, names)? {
            problems.push(ConfigProblem::new(
                &key,
                format!(
                    "`{name}` matches no group of source `{source}` as of its current sync \
                     (run {seq}); fix the name or the group search"
                ),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Config(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarter_start_is_first_day_of_quarter() {
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 13, 5, 0).unwrap();
        assert_eq!(
            quarter_start(at),
            Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap()
        );
    }
}
