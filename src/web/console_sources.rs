//! The console's sources page, for admins: each configured source with how old its snapshot
//! is, its latest sync (when, how it ended, what it counted, the error) and what that sync
//! could not place, by kind; and "sync now" (a POST with the session's CSRF token), which
//! queues the sync for the scheduler's next tick.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::directory::snapshot::{problems_of, source_freshness, sync_runs_of};
use crate::error::Error;
use crate::jobs::sync_now::{request_sync, sync_waiting};
use crate::web::AppState;
use crate::web::console::{failure, staff_view};
use crate::web::console_action::admin_action;
use crate::web::staff_sign_in::{see_other, staff_session};

#[derive(Debug, Deserialize)]
pub struct Notice {
    notice: Option<String>,
}

#[derive(Serialize)]
struct LatestRun {
    started: String,
    status: String,
    error: Option<String>,
    identities: i64,
    entitlements: i64,
    grants: i64,
    unresolved: i64,
    /// Problems by kind, with how many.
    problems: Vec<(String, usize)>,
}

#[derive(Serialize)]
struct SourceRow {
    name: String,
    kind: &'static str,
    snapshot: Option<String>,
    latest: Option<LatestRun>,
    queued: bool,
}

fn minute(t: chrono::NaiveDateTime) -> String {
    crate::db::time::from_db(t)
        .format("%Y-%m-%d %H:%M UTC")
        .to_string()
}

pub async fn page(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<Notice>,
) -> HttpResponse {
    let session = match staff_session(&state, &request, &[Role::Admin]).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let configured: Vec<(String, &'static str)> = state
        .config
        .sources
        .iter()
        .map(|(name, source)| (name.clone(), source.kind()))
        .collect();
    let loaded = state
        .db
        .run(move |conn| {
            let mut rows = Vec::new();
            for (name, kind) in configured {
                let fresh = source_freshness(conn, &name)?;
                let latest = match sync_runs_of(conn, &name)?.into_iter().next() {
                    Some(run) => {
                        let mut problems: BTreeMap<String, usize> = BTreeMap::new();
                        for problem in problems_of(conn, &run.id)? {
                            *problems.entry(problem.kind).or_default() += 1;
                        }
                        Some(LatestRun {
                            started: minute(run.started_at),
                            status: run.status,
                            error: run.error,
                            identities: run.identities,
                            entitlements: run.entitlements,
                            grants: run.grants,
                            unresolved: run.unresolved_members,
                            problems: problems.into_iter().collect(),
                        })
                    }
                    None => None,
                };
                rows.push(SourceRow {
                    snapshot: fresh.current_finished_at.map(minute),
                    queued: sync_waiting(conn, &name)?,
                    name,
                    kind,
                    latest,
                });
            }
            Ok(rows)
        })
        .await;
    let sources = match loaded {
        Ok(rows) => rows,
        Err(e) => return failure(&state, &e),
    };
    let notice = (query.notice.as_deref() == Some("queued"))
        .then_some("Sync queued: it runs at the scheduler's next tick. Reload to see it.");
    state.pages.render(
        StatusCode::OK,
        "console_sources.html",
        minijinja::context! {
            staff => staff_view(&state, &session),
            sources => sources,
            scheduler_on => state.config.scheduler.enabled,
            notice => notice,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct SyncForm {
    csrf: Option<String>,
}

pub async fn sync_now(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<SyncForm>,
) -> HttpResponse {
    let action = match admin_action(&state, &request, form.csrf.as_deref()).await {
        Ok(action) => action,
        Err(response) => return response,
    };
    let name = path.into_inner();
    if !state.config.sources.contains_key(&name) {
        return failure(&state, &Error::NotFound(name));
    }
    // Nothing would run the job.
    if !state.config.scheduler.enabled {
        return state.pages.message(
            StatusCode::CONFLICT,
            "The scheduler is off",
            &format!("Nothing here runs a queued sync: run `attest sync {name}` instead."),
        );
    }
    let (actor, now) = (action.actor, action.now);
    match state
        .db
        .run(move |conn| request_sync(conn, now, &name, &actor))
        .await
    {
        Ok(_) => see_other("/console/sources?notice=queued").finish(),
        Err(e) => failure(&state, &e),
    }
}
