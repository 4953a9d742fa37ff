//! Freezing a campaign's items. Routing is worked out in memory once per (person, group
//! owner), not per access: each route, the groups in scope and the few accesses a privileged
//! group's rule sends elsewhere go to staging tables, and the database then copies the
//! accesses into items itself (`INSERT ... SELECT`), a range of access ids per short write
//! transaction, so that decisions on other campaigns keep being answered on SQLite while a
//! large campaign generates. Each transaction first checks that the campaign is still this
//! generation's.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use rand::RngCore;

use crate::campaigns::generate::insert_reviewers;
use crate::campaigns::model::STATE_GENERATING;
use crate::campaigns::population::{Holders, Population};
use crate::campaigns::reviewers::Candidate;
use crate::campaigns::routing::{Routing, RoutingPlan};
use crate::campaigns::staging::{self, CopyRange, ExceptionRow, GroupRow, RouteRow, owner_key};
use crate::db::schema::{campaigns, grant_versions, review_items, reviewers};
use crate::db::{DbConnection, new_id, write_tx};
use crate::error::{Error, Result};

/// Access ids per copy transaction (ids of one source are close to dense). On SQLite a copy
/// holds the write lock: 20,000 rows take about a tenth of a second, so decisions wait little
/// while each commit rewrites the indexes' hot pages less often than smaller ranges would.
/// PostgreSQL blocks nobody while it copies: larger ranges spend less on joining the staging
/// tables again for each.
const SQLITE_IDS_PER_COPY: i64 = 20_000;
const POSTGRES_IDS_PER_COPY: i64 = 100_000;

/// Routes handed from the routing thread to the staging inserts at a time.
const ROUTES_PER_BATCH: usize = 10_000;

/// What items are frozen from.
pub(crate) struct FrozenSnapshot<'a> {
    /// When the generation started (the time part of item ids).
    pub(crate) now: chrono::DateTime<chrono::Utc>,
    pub(crate) source: &'a str,
    pub(crate) seq: i64,
    pub(crate) population: &'a Population,
    pub(crate) holders: &'a Holders,
    pub(crate) plan: &'a RoutingPlan,
}

/// What freezing wrote.
pub(crate) struct Frozen {
    pub(crate) items: i64,
    /// Every reviewer's id, sorted.
    pub(crate) reviewer_ids: Vec<String>,
}

/// Creates the staging tables on this connection with the groups in scope: who holds what is
/// then worked out by the database (`staging::holders`), before routing.
pub(crate) fn stage_groups(conn: &mut DbConnection, population: &Population) -> Result<()> {
    staging::create(conn)?;
    let groups: Vec<GroupRow> = population
        .groups
        .iter()
        .map(|(id, group)| {
            (
                id.clone(),
                owner_key(&group.owner),
                group.name.clone(),
                group.dn.clone(),
                group.privileged,
            )
        })
        .collect();
    staging::insert_groups(conn, &groups)
}

pub(crate) fn freeze_items(
    conn: &mut DbConnection,
    campaign_id: &str,
    snapshot: &FrozenSnapshot<'_>,
) -> Result<Frozen> {
    let frozen = stage_and_copy(conn, campaign_id, snapshot);
    // Best effort: a pooled connection's left-overs are dropped by the next generation.
    if let Err(e) = staging::drop_all(conn) {
        tracing::warn!(error = %e, "staging tables not dropped");
    }
    frozen
}

fn stage_and_copy(
    conn: &mut DbConnection,
    campaign_id: &str,
    snapshot: &FrozenSnapshot<'_>,
) -> Result<Frozen> {
    let started = std::time::Instant::now();
    let staged = route_and_stage(conn, snapshot)?;
    staging::insert_exceptions(conn, &staged.exceptions)?;
    staging::analyze(conn)?;
    // The snapshot's first and last access ids, each from one end of the (source, id) index
    // (`min` and `max` with the snapshot's filter read every access).
    let accesses = grant_versions::table
        .filter(grant_versions::source.eq(snapshot.source))
        .filter(crate::as_of!(grant_versions, snapshot.seq))
        .select(grant_versions::id);
    let first: Option<i64> = accesses
        .order(grant_versions::id.asc())
        .first(conn)
        .optional()?;
    let last: Option<i64> = accesses
        .order(grant_versions::id.desc())
        .first(conn)
        .optional()?;
    let bounds = (first, last);
    let id_prefix = unused_id_prefix(conn, snapshot.now)?;
    let staged_ms = started.elapsed().as_millis();
    let mut items = 0i64;
    // The reviewers are written with the first range of items (or alone when there is none).
    let mut reviewers_pending = Some(&staged.reviewers);
    if let (Some(first), Some(last)) = bounds {
        let width = match conn {
            DbConnection::Sqlite(_) => SQLITE_IDS_PER_COPY,
            DbConnection::Postgres(_) => POSTGRES_IDS_PER_COPY,
        };
        let mut after = first - 1;
        while after < last {
            let up_to = (after + width).min(last);
            let range = CopyRange {
                campaign_id,
                id_prefix: &id_prefix,
                source: snapshot.source,
                seq: snapshot.seq,
                after,
                up_to,
                new_since: snapshot.population.new_since,
            };
            items += write_tx(conn, |conn| {
                ensure_generating(conn, campaign_id)?;
                if let Some(new_reviewers) = reviewers_pending {
                    insert_reviewers(conn, campaign_id, new_reviewers)?;
                }
                staging::copy_items(conn, &range)
            })? as i64;
            reviewers_pending = None;
            after = up_to;
        }
    }

    let copied_ms = started.elapsed().as_millis() - staged_ms;
    // A route's reviewer whose every access went elsewhere (a privileged group's rule) has
    // nothing to review: no row, no mail.
    let reviewer_ids = write_tx(conn, |conn| {
        if let Some(new_reviewers) = reviewers_pending {
            ensure_generating(conn, campaign_id)?;
            insert_reviewers(conn, campaign_id, new_reviewers)?;
        }
        diesel::delete(
            reviewers::table
                .filter(reviewers::campaign_id.eq(campaign_id))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    review_items::table.filter(review_items::reviewer_id.eq(reviewers::id)),
                ))),
        )
        .execute(conn)?;
        Ok(reviewers::table
            .filter(reviewers::campaign_id.eq(campaign_id))
            .select(reviewers::id)
            .order(reviewers::id.asc())
            .load::<String>(conn)?)
    })?;
    tracing::info!(
        campaign = %campaign_id,
        items,
        routes = staged.routes,
        staged_ms,
        copied_ms,
        "campaign items frozen"
    );
    Ok(Frozen {
        items,
        reviewer_ids,
    })
}

/// The first 19 characters of a new UUID v7 (time and 12 random bits) that no item id starts
/// with yet: item ids are this prefix and the access id (see `staging::copy_items`).
fn unused_id_prefix(conn: &mut DbConnection, now: chrono::DateTime<chrono::Utc>) -> Result<String> {
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    for _ in 0..8 {
        let mut random = [0u8; 10];
        rand::rng().fill_bytes(&mut random);
        let id = uuid::Builder::from_unix_timestamp_millis(millis, &random)
            .into_uuid()
            .to_string();
        let prefix = id[..19].to_string();
        // Every id with this prefix sorts between it and the prefix with '.' for its last '-'.
        let upper = format!("{}.", &prefix[..18]);
        let taken: i64 = review_items::table
            .filter(review_items::id.ge(&prefix))
            .filter(review_items::id.lt(&upper))
            .count()
            .get_result(conn)?;
        if taken == 0 {
            return Ok(prefix);
        }
    }
    Err(Error::Internal("no unused item id prefix found".into()))
}

fn ensure_generating(conn: &mut DbConnection, campaign_id: &str) -> Result<()> {
    let ours = campaigns::table
        .find(campaign_id)
        .filter(campaigns::state.eq(STATE_GENERATING))
        .count()
        .get_result::<i64>(conn)?;
    if ours != 1 {
        return Err(Error::Conflict(format!(
            "campaign {campaign_id} was removed while it generated"
        )));
    }
    Ok(())
}

/// Works out the routes on a second thread while this one stages those already worked out
/// (on two cores, the longer of the two rather than their sum: about 0.4 s each at 200,000
/// routes). A failed insert stops the routing at its next batch; a failed routing ends the
/// batches; either error is returned, the staging's first.
fn route_and_stage(conn: &mut DbConnection, snapshot: &FrozenSnapshot<'_>) -> Result<Staged> {
    std::thread::scope(|scope| {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<RouteRow>>(2);
        let router = std::thread::Builder::new()
            .name("campaign-routing".into())
            .spawn_scoped(scope, move || {
                Staged::route(snapshot, |batch| {
                    batches
                        .send(batch)
                        .map_err(|_| Error::Internal("the staging of routes stopped".into()))
                })
            })
            .map_err(|e| Error::Internal(format!("cannot start the routing thread: {e}")))?;
        let mut staged_routes = Ok(());
        for batch in &received {
            staged_routes = staging::insert_routes(conn, &batch);
            if staged_routes.is_err() {
                break;
            }
        }
        drop(received);
        let routed = router
            .join()
            .map_err(|_| Error::Internal("the routing thread panicked".into()))?;
        staged_routes?;
        routed
    })
}

/// What a generation staged after its groups: its reviewers, how many routes, and the
/// exceptions.
struct Staged {
    reviewers: Vec<(String, Candidate)>,
    routes: usize,
    exceptions: Vec<ExceptionRow>,
}

impl Staged {
    /// Routes every subject of `snapshot`, handing the routes to `stage` a batch at a time.
    fn route(
        snapshot: &FrozenSnapshot<'_>,
        mut stage: impl FnMut(Vec<RouteRow>) -> Result<()>,
    ) -> Result<Staged> {
        let (population, holders, plan) = (snapshot.population, snapshot.holders, snapshot.plan);
        let mut staged = Staged {
            reviewers: Vec::new(),
            routes: 0,
            exceptions: Vec::new(),
        };
        let mut batch: Vec<RouteRow> = Vec::with_capacity(ROUTES_PER_BATCH);
        let mut reviewer_ids: HashMap<String, String> = HashMap::new();
        let mut reviewer_id = |candidate: &Candidate, staged: &mut Vec<(String, Candidate)>| {
            let key = candidate.email.to_lowercase();
            reviewer_ids
                .entry(key)
                .or_insert_with(|| {
                    let id = new_id();
                    staged.push((id.clone(), candidate.clone()));
                    id
                })
                .clone()
        };
        let no_holders = HashSet::new();
        let mut subjects: Vec<_> = holders.subjects.iter().collect();
        subjects.sort();
        for (person_id, owner) in subjects {
            let Some(person) = population.people.get(person_id) else {
                continue;
            };
            if batch.len() == ROUTES_PER_BATCH {
                stage(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(ROUTES_PER_BATCH),
                ))?;
            }
            let (reviewer, routing) = plan.reviewer_for(person_id, owner, &no_holders)?;
            staged.routes += 1;
            batch.push((
                person_id.clone(),
                owner_key(owner),
                reviewer_id(reviewer, &mut staged.reviewers),
                routing.as_str().to_string(),
                person.login.clone(),
                person.name.clone(),
                person.email.clone(),
                person.status.clone(),
            ));
        }
        if !batch.is_empty() {
            stage(batch)?;
        }
        let mut privileged: Vec<_> = holders.of_privileged.iter().collect();
        privileged.sort_by(|a, b| a.0.cmp(b.0));
        for (group_id, group_holders) in privileged {
            let Some(group) = population.groups.get(group_id) else {
                continue;
            };
            let mut members: Vec<&String> = group_holders.iter().collect();
            members.sort();
            for person_id in members {
                if !holders
                    .subjects
                    .contains(&(person_id.clone(), group.owner.clone()))
                {
                    continue;
                }
                let (reviewer, routing) =
                    plan.reviewer_for(person_id, &group.owner, group_holders)?;
                if routing == Routing::PrivilegedHolderRerouted {
                    staged.exceptions.push((
                        person_id.clone(),
                        group_id.clone(),
                        reviewer_id(reviewer, &mut staged.reviewers),
                        routing.as_str().to_string(),
                    ));
                }
            }
        }
        Ok(staged)
    }
}
