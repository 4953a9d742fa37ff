//! The staff console, behind a staff session: `/console` lists the campaigns with their
//! progress (admins and auditors); `/console/campaigns/{id}` shows an admin each reviewer's
//! progress and what is overdue; `POST /console/campaigns/{id}/evidence` downloads the
//! campaign's evidence pack (admins and auditors), recorded as that staff member's export.
//! Every route checks the session's role itself.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::auth::sessions::StaffSession;
use crate::campaigns::lifecycle::{list_campaigns, reviewer_progress, summarize};
use crate::campaigns::model::campaign;
use crate::db::time::from_db;
use crate::error::Error;
use crate::web::AppState;
use crate::web::evidence_download::{PackRefused, pack_response};
use crate::web::staff_sign_in::{staff_csrf, staff_post, staff_session};

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
    let loaded = state
        .db
        .run(move |conn| {
            let found = campaign(conn, &id)?;
            let summary = summarize(conn, found)?;
            let reviewers = reviewer_progress(conn, &summary.campaign.id)?;
            Ok((summary, reviewers))
        })
        .await;
    let (summary, reviewers) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(&state, &e),
    };
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
        },
    )
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
