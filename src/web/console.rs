//! The staff console, behind a staff session: `/console` lists the campaigns with their
//! progress (admins and auditors); `/console/campaigns/{id}` shows an admin each reviewer's
//! progress, what is overdue, decisions over time, and what closing now would do (`POST
//! /console/campaigns/{id}/close` closes it); `POST /console/campaigns/{id}/evidence` downloads the
//! campaign's evidence pack (admins and auditors), recorded as that staff member's export.
//! Every route checks the session's role itself.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::auth::sessions::StaffSession;
use crate::campaigns::lifecycle::{list_campaigns, reviewer_progress, summarize};
use crate::campaigns::model::campaign;
use crate::campaigns::{CloseRules, close_campaign, preview_close};
use crate::db::time::from_db;
use crate::error::Error;
use crate::evidence::charts::progress_chart_from;
use crate::evidence::summary::daily_progress;
use crate::web::AppState;
use crate::web::console_action::{admin_action, not_done};
use crate::web::evidence_download::{PackRefused, pack_response};
use crate::web::staff_sign_in::{see_other, staff_csrf, staff_post, staff_session};

const EVERY_ROLE: [Role; 2] = [Role::Admin, Role::Auditor];

#[derive(Serialize)]
pub(super) struct StaffView {
    name: String,
    role: &'static str,
    csrf: String,
    admin: bool,
}

#[derive(Serialize)]
struct CampaignRow {
    id: String,
    title: String,
    state: String,
    opened: String,
    due: String,
    closed: Option<String>,
    items: i64,
    decided: i64,
    pending: i64,
    percent: i64,
    overdue: bool,
}

#[derive(Serialize)]
struct ReviewerRow {
    name: String,
    email: String,
    items: i64,
    pending: i64,
}

pub(super) fn staff_view(state: &AppState, session: &StaffSession) -> StaffView {
    StaffView {
        name: session.display_name.clone(),
        role: session.role.as_str(),
        csrf: staff_csrf(state, session),
        admin: session.role == Role::Admin,
    }
}

pub(super) fn day(t: chrono::NaiveDateTime) -> String {
    from_db(t).format("%Y-%m-%d").to_string()
}

fn row(
    summary: crate::campaigns::CampaignSummary,
    now: chrono::DateTime<chrono::Utc>,
) -> CampaignRow {
    let decided = summary.items - summary.pending;
    CampaignRow {
        percent: if summary.items == 0 {
            100
        } else {
            decided * 100 / summary.items
        },
        overdue: summary.campaign.is_open()
            && summary.pending > 0
            && from_db(summary.campaign.due_at) < now,
        id: summary.campaign.id,
        title: summary.campaign.title,
        state: summary.campaign.state,
        opened: day(summary.campaign.opened_at),
        due: day(summary.campaign.due_at),
        closed: summary.campaign.closed_at.map(day),
        items: summary.items,
        decided,
        pending: summary.pending,
    }
}

pub(super) fn failure(state: &AppState, err: &Error) -> HttpResponse {
    match err {
        Error::NotFound(_) => state.pages.message(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such campaign or task.",
        ),
        other => {
            tracing::error!(error = %other, code = other.code(), "console page failed");
            state.pages.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The page could not be built. Try again.",
            )
        }
    }
}

pub async fn home(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    let session = match staff_session(&state, &request, &EVERY_ROLE).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let now = state.clock.now();
    let campaigns = match state.db.run(list_campaigns).await {
        Ok(listed) => listed.into_iter().map(|s| row(s, now)).collect::<Vec<_>>(),
        Err(e) => return failure(&state, &e),
    };
    state.pages.render(
        StatusCode::OK,
        "console.html",
        minijinja::context! { staff => staff_view(&state, &session), campaigns => campaigns },
    )
}

pub async fn campaign_progress(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> HttpResponse {
    let session = match staff_session(&state, &request, &[Role::Admin]).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let id = path.into_inner();
    if uuid::Uuid::parse_str(&id).is_err() {
        return failure(&state, &Error::NotFound(id));
    }
    let now = state.clock.now();
    let config = state.config.clone();
    let loaded = state
        .db
        .run(move |conn| {
            let found = campaign(conn, &id)?;
            let rules = CloseRules::of(&config, &found);
            let summary = summarize(conn, found)?;
            let reviewers = reviewer_progress(conn, &summary.campaign.id)?;
            let days = daily_progress(conn, &summary.campaign.id)?;
            let preview = if summary.campaign.is_open() {
                Some(preview_close(conn, &summary.campaign.id, &rules)?)
            } else {
                None
            };
            Ok((summary, reviewers, days, preview))
        })
        .await;
    let (summary, reviewers, days, preview) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(&state, &e),
    };
    let rfc3339 = |t: chrono::NaiveDateTime| from_db(t).to_rfc3339();
    let chart = progress_chart_from(
        &rfc3339(summary.campaign.opened_at),
        &rfc3339(summary.campaign.due_at),
        summary.campaign.closed_at.map(rfc3339).as_deref(),
        &days,
        u64::try_from(summary.items).unwrap_or(0),
    );
    let close = preview.map(|p| ClosePlan {
        undecided: p.summary.pending,
        outcome: p.no_response,
        would_revoke: p.would_revoke,
        needs_confirmation: p.needs_confirmation,
    });
    let reviewers: Vec<ReviewerRow> = reviewers
        .into_iter()
        .map(|r| ReviewerRow {
            name: r.name,
            email: r.email,
            items: r.items,
            pending: r.pending,
        })
        .collect();
    state.pages.render(
        StatusCode::OK,
        "console_campaign.html",
        minijinja::context! {
            staff => staff_view(&state, &session),
            campaign => row(summary, now),
            reviewers => reviewers,
            chart => chart.svg,
            close => close,
            notice => query.notice.as_deref().filter(|n| *n == "closed").map(|_| "Campaign closed."),
        },
    )
}

/// What closing the campaign now would do, for the page's close form.
#[derive(Serialize)]
struct ClosePlan {
    undecided: i64,
    outcome: &'static str,
    would_revoke: i64,
    needs_confirmation: bool,
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    notice: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct CloseForm {
    csrf: Option<String>,
    confirm_revocations: Option<String>,
}

/// Closes the campaign as its definition says (an admin's POST with the session's CSRF
/// token); revocations above `max_auto_revoke_share` need the confirmation box.
pub async fn close(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<CloseForm>,
) -> HttpResponse {
    let action = match admin_action(&state, &request, form.csrf.as_deref()).await {
        Ok(action) => action,
        Err(response) => return response,
    };
    let id = path.into_inner();
    if uuid::Uuid::parse_str(&id).is_err() {
        return failure(&state, &Error::NotFound(id));
    }
    let confirmed = form.confirm_revocations.is_some();
    let (actor, now) = (action.actor, action.now);
    let config = state.config.clone();
    let target = id.clone();
    let closed = state
        .db
        .run(move |conn| {
            let mut rules = CloseRules::of(&config, &campaign(conn, &target)?);
            if confirmed {
                rules = rules.confirmed();
            }
            close_campaign(conn, now, &target, &rules, &actor)
        })
        .await;
    match closed {
        Ok(_) => see_other(&format!("/console/campaigns/{id}?notice=closed")).finish(),
        Err(e) => not_done(&state, "Not closed", &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct StaffForm {
    pub(super) csrf: Option<String>,
}

/// Builds and sends the pack: a POST with the session's CSRF token, as it writes (the export
/// event) and takes the one build slot; no other site can make a staff member's browser ask.
pub async fn evidence(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<StaffForm>,
) -> HttpResponse {
    let session = match staff_post(&state, &request, &EVERY_ROLE, form.csrf.as_deref()).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let actor = format!("staff:{}", session.staff_user_id);
    match pack_response(&state, path.into_inner(), actor).await {
        Ok(response) => response,
        Err(PackRefused::Busy) => state.pages.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Busy",
            "Another evidence pack is being built. Try again in a minute.",
        ),
        Err(PackRefused::Failed(e)) => failure(&state, &e),
    }
}
