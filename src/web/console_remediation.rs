//! The console's remediation page, for admins: every task that carries out a revocation,
//! filterable by state, alerts (failed, still present, re-granted, blocked) first; a manual
//! task is closed here with its ticket reference, and a failed or blocked one tried again.
//! Both are POSTs with the session's CSRF token, recorded as that staff member's.

use actix_web::http::StatusCode;
use actix_web::http::header::LOCATION;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::remediation::tasks::{
    TASK_BLOCKED, TASK_FAILED, TASK_REGRANTED, TASK_STATES, TASK_STILL_PRESENT, counts_by_state,
};
use crate::remediation::{ListedTask, list, mark_done, retry};
use crate::web::AppState;
use crate::web::console::{day, failure, staff_view};
use crate::web::console_action::{admin_action, not_done};
use crate::web::staff_sign_in::staff_session;

/// Tasks shown at most (the CLI and the API list more).
const SHOWN: i64 = 500;
const ALERTS: [&str; 4] = [
    TASK_FAILED,
    TASK_STILL_PRESENT,
    TASK_REGRANTED,
    TASK_BLOCKED,
];

#[derive(Debug, Deserialize)]
pub struct Filter {
    state: Option<String>,
    notice: Option<String>,
}

#[derive(Serialize)]
struct TaskRow {
    id: String,
    person: String,
    group: String,
    via: Option<String>,
    source: String,
    mode: String,
    reason: String,
    state: String,
    alert: bool,
    created: String,
    detail: Option<String>,
    ticket: Option<String>,
    manual_open: bool,
    retryable: bool,
}

fn task_row(listed: ListedTask) -> TaskRow {
    let task = listed.task;
    let action = task
        .action
        .as_deref()
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok());
    let detail = task.last_error.clone().or_else(|| {
        action.and_then(|a| {
            a["group_dn"]
                .as_str()
                .map(|dn| {
                    let verb = if a["dry_run"] == true {
                        "would remove from"
                    } else {
                        "removed from"
                    };
                    format!("{verb} {dn}")
                })
                .or_else(|| a["why"].as_str().map(str::to_string))
        })
    });
    TaskRow {
        alert: ALERTS.contains(&task.state.as_str()),
        manual_open: task.mode == "manual" && task.state == "pending",
        retryable: ALERTS.contains(&task.state.as_str()),
        created: day(task.created_at),
        id: task.id,
        person: listed.person,
        group: listed.group,
        via: listed.via,
        source: task.source,
        mode: task.mode,
        reason: task.reason,
        state: task.state,
        detail,
        ticket: task.ticket,
    }
}

pub async fn page(
    state: web::Data<AppState>,
    request: HttpRequest,
    filter: web::Query<Filter>,
) -> HttpResponse {
    let session = match staff_session(&state, &request, &[Role::Admin]).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let wanted = filter
        .state
        .clone()
        .filter(|s| TASK_STATES.contains(&s.as_str()));
    let shown = wanted.clone();
    let loaded = state
        .db
        .run(move |conn| {
            let counts = counts_by_state(conn)?;
            let tasks = list(conn, shown.as_deref(), None, SHOWN)?;
            Ok((counts, tasks))
        })
        .await;
    let (counts, tasks) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(&state, &e),
    };
    let mut rows: Vec<TaskRow> = tasks.into_iter().map(task_row).collect();
    // Alerts first, then oldest first.
    rows.sort_by_key(|r| !r.alert);
    let notice = match filter.notice.as_deref() {
        Some("done") => {
            Some("Task closed with its ticket. The next sync checks the access is gone.")
        }
        Some("retried") => Some("Task queued again: the next round carries it out."),
        _ => None,
    };
    state.pages.render(
        StatusCode::OK,
        "console_remediation.html",
        minijinja::context! {
            staff => staff_view(&state, &session),
            counts => counts,
            states => TASK_STATES,
            wanted => wanted,
            tasks => rows,
            notice => notice,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct DoneForm {
    csrf: Option<String>,
    ticket: Option<String>,
}

/// Closes a manual task with its ticket reference.
pub async fn done(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<DoneForm>,
) -> HttpResponse {
    let action = match admin_action(&state, &request, form.csrf.as_deref()).await {
        Ok(action) => action,
        Err(response) => return response,
    };
    let (id, ticket) = (path.into_inner(), form.ticket.clone().unwrap_or_default());
    let (actor, now) = (action.actor, action.now);
    let outcome = state
        .db
        .run(move |conn| mark_done(conn, now, &id, &ticket, &actor))
        .await;
    settled(&state, outcome.map(|_| "done"))
}

#[derive(Debug, Deserialize)]
pub struct RetryForm {
    csrf: Option<String>,
}

/// Queues a failed, blocked, still-present or re-granted task again.
pub async fn try_again(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RetryForm>,
) -> HttpResponse {
    let action = match admin_action(&state, &request, form.csrf.as_deref()).await {
        Ok(action) => action,
        Err(response) => return response,
    };
    let id = path.into_inner();
    let (actor, now) = (action.actor, action.now);
    let outcome = state
        .db
        .run(move |conn| retry(conn, now, &id, &actor))
        .await;
    settled(&state, outcome.map(|_| "retried"))
}

/// Back to the list with a notice (post/redirect/get), or the refusal in words.
fn settled(state: &AppState, outcome: crate::error::Result<&str>) -> HttpResponse {
    match outcome {
        Ok(notice) => HttpResponse::SeeOther()
            .insert_header((LOCATION, format!("/console/remediation?notice={notice}")))
            .finish(),
        Err(e) => not_done(state, "Not done", &e),
    }
}
