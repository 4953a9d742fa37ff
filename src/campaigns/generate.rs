//! Campaign generation: freezes one review item per (person, group) of the source's current
//! snapshot, routes each to a reviewer, and queues one digest per reviewer, all in a single
//! transaction. Grants are read page by page (keyset on the grant id) and items written in
//! multi-row batches, so memory stays bounded by the page size and the number of reviewers.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::campaigns::model::{Campaign, ITEM_PENDING, STATE_OPEN, campaign};
use crate::campaigns::population::{
    entitlements_in_scope, grant_page, people_in_scope, privileged_holders, resolve_fallbacks,
};
use crate::campaigns::reviewers::Candidate;
use crate::campaigns::routing::RoutingPlan;
use crate::campaigns::schedule::Schedule;
use crate::clock::Clock;
use crate::config::{CampaignDefinition, Config};
use crate::db::schema::{campaigns, review_items, reviewers};
use crate::db::time::to_db;
use crate::db::{Database, DbConnection, new_id, write_tx};
use crate::directory::current_sync_run;
use crate::directory::snapshot::unmatched_group_names;
use crate::error::{ConfigProblem, Error, Result};
use crate::evidence::{EventKind, append};
use crate::notify::outbox;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartedCampaign {
    pub campaign: Campaign,
    pub items: i64,
    pub reviewers: i64,
}

#[derive(Insertable)]
#[diesel(table_name = review_items)]
struct NewReviewItem {
    id: String,
    campaign_id: String,
    reviewer_id: String,
    routing: String,
    identity_external_id: String,
    identity_login: String,
    identity_name: String,
    identity_email: Option<String>,
    identity_status: String,
    entitlement_external_id: String,
    entitlement_name: String,
    entitlement_dn: String,
    privileged: bool,
    via: Option<String>,
    granted_since: chrono::NaiveDateTime,
    state: String,
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

/// Opens the campaign of `definition_name` for `opening`'s period, in one transaction.
pub fn open_campaign(
    db: &Database,
    clock: &dyn Clock,
    config: &Config,
    definition_name: &str,
    opening: &Opening,
    actor: &str,
) -> Result<StartedCampaign> {
    let definition = config.campaign_definition(definition_name)?;
    let privileged_groups = config.source(&definition.source)?.privileged_groups();
    let now = clock.now();
    let mut conn = db.conn()?;
    let started = write_tx(&mut conn, |conn| {
        let named = NamedGroups {
            definition: definition_name,
            privileged: privileged_groups,
        };
        generate(conn, now, opening, &named, definition, actor)
    })?;
    tracing::info!(
        campaign = %started.campaign.id,
        definition = definition_name,
        items = started.items,
        reviewers = started.reviewers,
        "campaign opened"
    );
    Ok(started)
}

/// The definition's key and the source's privileged group names, checked against the snapshot.
struct NamedGroups<'a> {
    definition: &'a str,
    privileged: &'a [String],
}

fn generate(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    opening: &Opening,
    named: &NamedGroups<'_>,
    definition: &CampaignDefinition,
    actor: &str,
) -> Result<StartedCampaign> {
    let definition_name = named.definition;
    let period_start = opening.period_start;
    let run = current_sync_run(conn, &definition.source)?.ok_or_else(|| {
        Error::Conflict(format!(
            "source `{}` has no snapshot yet; run `attest sync {}` first",
            definition.source, definition.source
        ))
    })?;
    let existing: i64 = campaigns::table
        .filter(campaigns::definition.eq(definition_name))
        .filter(campaigns::period_start.eq(to_db(period_start)))
        .count()
        .get_result(conn)?;
    if existing > 0 {
        return Err(Error::Conflict(format!(
            "a `{definition_name}` campaign for the period starting {} already exists",
            period_start.format("%Y-%m-%d")
        )));
    }
    let (source, seq) = (definition.source.as_str(), run.seq);
    refuse_unmatched_names(conn, named, definition, seq)?;
    let entitlement_ids = entitlements_in_scope(conn, source, seq, definition)?;
    // Reviewing every group needs no id list (which could exceed bind-parameter limits).
    let whole_source = definition.groups.is_empty() && !definition.privileged_only;
    let id_filter = (!whole_source).then_some(entitlement_ids.as_slice());
    let fallbacks = resolve_fallbacks(conn, source, seq, &definition.fallback_reviewers)?;

    let campaign_id = new_id();
    let title = definition
        .title
        .clone()
        .unwrap_or_else(|| definition_name.to_string());
    let scope = json!({
        "groups": definition.groups,
        "privileged_only": definition.privileged_only,
        "fallback_reviewers": definition.fallback_reviewers,
        "duration_days": definition.duration_days,
        "entitlements": entitlement_ids.len(),
    });
    let due_at = now + Duration::days(i64::from(definition.duration_days));
    diesel::insert_into(campaigns::table)
        .values((
            campaigns::id.eq(&campaign_id),
            campaigns::definition.eq(definition_name),
            campaigns::title.eq(&title),
            campaigns::source.eq(&definition.source),
            campaigns::sync_run_id.eq(&run.id),
            campaigns::scope.eq(scope.to_string()),
            campaigns::period_start.eq(to_db(period_start)),
            campaigns::opened_at.eq(to_db(now)),
            campaigns::due_at.eq(to_db(due_at)),
            campaigns::state.eq(STATE_OPEN),
            campaigns::late.eq(opening.late),
        ))
        .execute(conn)?;

    let plan = RoutingPlan::new(people_in_scope(conn, source, seq, id_filter)?, fallbacks)?;
    let holders = privileged_holders(conn, source, seq)?;
    let no_holders = HashSet::new();
    let mut reviewer_ids: HashMap<String, String> = HashMap::new();
    let mut item_count = 0i64;
    let mut last_grant = 0;
    loop {
        let page = grant_page(conn, source, seq, id_filter, last_grant)?;
        let Some(last) = page.last() else { break };
        last_grant = last.grant_id;
        let mut items = Vec::with_capacity(page.len());
        let mut new_reviewers = Vec::new();
        for row in &page {
            let group_holders = match row.privileged {
                true => holders
                    .get(&row.entitlement_external_id)
                    .unwrap_or(&no_holders),
                false => &no_holders,
            };
            let (reviewer, routing) =
                plan.reviewer_for(&row.identity_external_id, group_holders)?;
            let key = reviewer.email.to_lowercase();
            let reviewer_id = match reviewer_ids.get(&key) {
                Some(id) => id.clone(),
                None => {
                    let id = new_id();
                    reviewer_ids.insert(key, id.clone());
                    new_reviewers.push((id.clone(), reviewer.clone()));
                    id
                }
            };
            items.push(NewReviewItem {
                id: new_id(),
                campaign_id: campaign_id.clone(),
                reviewer_id,
                routing: routing.as_str().to_string(),
                identity_external_id: row.identity_external_id.clone(),
                identity_login: row.identity_login.clone(),
                identity_name: row.identity_name.clone(),
                identity_email: row.identity_email.clone(),
                identity_status: row.identity_status.clone(),
                entitlement_external_id: row.entitlement_external_id.clone(),
                entitlement_name: row.entitlement_name.clone(),
                entitlement_dn: row.entitlement_dn.clone(),
                privileged: row.privileged,
                via: row.via.clone(),
                granted_since: row.first_seen_at,
                state: ITEM_PENDING.to_string(),
            });
        }
        insert_reviewers(conn, &campaign_id, &new_reviewers)?;
        for chunk in items.chunks(500) {
            crate::insert_rows!(conn, review_items::table, chunk)?;
        }
        item_count += items.len() as i64;
    }

    append(
        conn,
        now,
        EventKind::CampaignOpened,
        actor,
        Some(&campaign_id),
        &json!({
            "campaign": campaign_id,
            "definition": definition_name,
            "title": title,
            "source": definition.source,
            "sync_run": run.id,
            "period_start": period_start.to_rfc3339(),
            "late": opening.late,
            "missed_periods": opening
                .missed_periods
                .iter()
                .map(|p| p.to_rfc3339())
                .collect::<Vec<_>>(),
            "due_at": due_at.to_rfc3339(),
            "items": item_count,
            "reviewers": reviewer_ids.len(),
            "scope": scope,
        }),
    )?;
    let mut ids: Vec<&String> = reviewer_ids.values().collect();
    ids.sort();
    for reviewer_id in ids {
        outbox::enqueue_review_request(conn, now, &campaign_id, reviewer_id, actor)?;
    }
    Ok(StartedCampaign {
        campaign: campaign(conn, &campaign_id)?,
        items: item_count,
        reviewers: reviewer_ids.len() as i64,
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
    crate::insert_rows!(conn, reviewers::table, rows)?;
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
