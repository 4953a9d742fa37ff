//! The console's staff and API tokens page, for admins: who the staff are (role, how they
//! sign in), every API token (owner, role, expiry, revoked), a form that issues a token (its
//! secret is shown once, on the answer, and stored only as a hash) and revocation. Each
//! change is a POST with the session's CSRF token, recorded as that staff member's.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::ExposeSecret;
use serde::Deserialize;

use crate::auth::api_tokens::DEFAULT_TOKEN_DAYS;
use crate::auth::sessions::StaffSession;
use crate::auth::{NewToken, Role, issue, list_staff, list_tokens, revoke};
use crate::error::Error;
use crate::web::AppState;
use crate::web::console::{failure, staff_view};
use crate::web::console_action::{admin_action, not_done};
use crate::web::staff_sign_in::{see_other, staff_post, staff_session};

#[derive(Debug, Deserialize)]
pub struct Notice {
    notice: Option<String>,
}

async fn render(
    state: &AppState,
    session: &StaffSession,
    notice: Option<&str>,
    issued: Option<minijinja::Value>,
) -> HttpResponse {
    let loaded = state
        .db
        .run(|conn| Ok((list_staff(conn)?, list_tokens(conn)?)))
        .await;
    let (staff, tokens) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return failure(state, &e),
    };
    state.pages.render(
        StatusCode::OK,
        "console_staff.html",
        minijinja::context! {
            staff => staff_view(state, session),
            members => staff,
            tokens => tokens,
            notice => notice,
            issued => issued,
            default_days => DEFAULT_TOKEN_DAYS,
        },
    )
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
    let notice = (query.notice.as_deref() == Some("revoked")).then_some("Token revoked.");
    render(&state, &session, notice, None).await
}

#[derive(Debug, Deserialize)]
pub struct IssueForm {
    csrf: Option<String>,
    name: Option<String>,
    role: Option<String>,
    email: Option<String>,
    days: Option<i64>,
}

/// Issues a token and answers with its secret, once (the page is not cached).
pub async fn issue_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<IssueForm>,
) -> HttpResponse {
    // The answer is this page again, for this session.
    let session = match staff_post(&state, &request, &[Role::Admin], form.csrf.as_deref()).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let role: Role = match form.role.as_deref().unwrap_or_default().parse() {
        Ok(role) => role,
        Err(e) => return refused(&state, &e),
    };
    let (name, email) = (
        form.name.clone().unwrap_or_default(),
        form.email.clone().unwrap_or_default(),
    );
    let days = form.days.unwrap_or(DEFAULT_TOKEN_DAYS);
    let actor = format!("staff:{}", session.staff_user_id);
    let now = state.clock.now();
    let issued = state
        .db
        .run(move |conn| {
            let request = NewToken {
                name: &name,
                role,
                email: &email,
                days,
            };
            issue(conn, now, &request, &actor)
        })
        .await;
    match issued {
        Ok(token) => {
            let shown = minijinja::context! {
                id => token.id,
                secret => token.secret.expose_secret(),
                expires => token.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            };
            render(&state, &session, None, Some(shown)).await
        }
        Err(e) => refused(&state, &e),
    }
}

#[derive(Debug, Deserialize)]
pub struct RevokeForm {
    csrf: Option<String>,
}

pub async fn revoke_token(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    form: web::Form<RevokeForm>,
) -> HttpResponse {
    let action = match admin_action(&state, &request, form.csrf.as_deref()).await {
        Ok(action) => action,
        Err(response) => return response,
    };
    let id = path.into_inner();
    let (actor, now) = (action.actor, action.now);
    match state
        .db
        .run(move |conn| revoke(conn, now, &id, &actor))
        .await
    {
        Ok(_) => see_other("/console/staff?notice=revoked").finish(),
        Err(e) => refused(&state, &e),
    }
}

fn refused(state: &AppState, err: &Error) -> HttpResponse {
    not_done(state, "Not done", err)
}
