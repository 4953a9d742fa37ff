//! The console's outbox page, for admins: how many messages are in each state, the latest
//! ones (filterable) with the mail server's last answer, and "send again" for a message that
//! was dead-lettered (a POST with the session's CSRF token, recorded as that staff member's).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::auth::Role;
use crate::notify::outbox::counts_by_state;
use crate::notify::resend::{OUTBOX_STATES, recent_messages, resend_message};
use crate::web::AppState;
use crate::web::console::{failure, staff_view};
use crate::web::console_action::{admin_action, not_done};
use crate::web::staff_sign_in::{see_other, staff_session};

/// Messages shown at most.
const SHOWN: i64 = 200;

#[derive(Debug, Deserialize)]
pub struct Filter {
    state: Option<String>,
    notice: Option<String>,
}

#[derive(Serialize)]
struct MessageRow {
    id: String,
    kind: String,
    recipient: String,
    state: String,
    attempts: i64,
    last_error: Option<String>,
    created: String,
    sent: Option<String>,
    resendable: bool,
}

fn minute(t: chrono::NaiveDateTime) -> String {
    crate::db::time::from_db(t)
        .format("%Y-%m-%d %H:%M")
        .to_string()
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
        .filter(|s| OUTBOX_STATES.contains(&s.as_str()));
    let shown = wanted.clone();
    let loaded = state
        .db
        .run(move |conn| {
            Ok((
                counts_by_state(conn)?,
                recent_messages(conn, shown.as_deref(), SHOWN)?,
            ))
        })
        .await;
    let (counts, messages) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(&state, &e),
    };
    let rows: Vec<MessageRow> = messages
        .into_iter()
        .map(|m| MessageRow {
            resendable: m.state == "dead",
            created: minute(m.created_at),
            sent: m.sent_at.map(minute),
            id: m.id,
            kind: m.kind,
            recipient: m.recipient,
            state: m.state,
            attempts: m.attempts,
            last_error: m.last_error,
        })
        .collect();
    let notice = (filter.notice.as_deref() == Some("resent"))
        .then_some("Queued again: the outbox worker sends it within a minute.");
    state.pages.render(
        StatusCode::OK,
        "console_outbox.html",
        minijinja::context! {
            staff => staff_view(&state, &session),
            counts => counts,
            wanted => wanted,
            messages => rows,
            notice => notice,
        },
    )
}

#[derive(Debug, Deserialize)]
pub struct ResendForm {
    csrf: Option<String>,
}

pub async fn resend(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<ResendForm>,
) -> HttpResponse {
    let action = match admin_action(&state, &request, form.csrf.as_deref()).await {
        Ok(action) => action,
        Err(response) => return response,
    };
    let id = path.into_inner();
    let (actor, now) = (action.actor, action.now);
    match state
        .db
        .run(move |conn| resend_message(conn, now, &id, &actor))
        .await
    {
        Ok(()) => see_other("/console/outbox?notice=resent").finish(),
        Err(e) => not_done(&state, "Not sent again", &e),
    }
}
