//! What every admin action of the console shares: the POST's checks (an admin's session and
//! its CSRF token), whom to record the action as and when, and how an action that did not
//! happen is shown.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};

use crate::auth::Role;
use crate::error::Error;
use crate::web::AppState;
use crate::web::console::failure;
use crate::web::staff_sign_in::staff_post;

/// An admin's action, checked.
pub(super) struct AdminAction {
    /// Whom events record: `staff:ID`.
    pub actor: String,
    pub now: DateTime<Utc>,
}

/// Checks a POST of an admin action: a session with the admin role and its CSRF token.
pub(super) async fn admin_action(
    state: &AppState,
    request: &HttpRequest,
    csrf: Option<&str>,
) -> Result<AdminAction, HttpResponse> {
    let session = staff_post(state, request, &[Role::Admin], csrf).await?;
    Ok(AdminAction {
        actor: format!("staff:{}", session.staff_user_id),
        now: state.clock.now(),
    })
}

/// The page of an action that did not happen: a refusal the admin can act on in words,
/// anything else as a failure.
pub(super) fn not_done(state: &AppState, heading: &str, err: &Error) -> HttpResponse {
    let status = match err {
        Error::BadRequest(_) => StatusCode::BAD_REQUEST,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        other => return failure(state, other),
    };
    let message = match err {
        Error::BadRequest(m) | Error::Conflict(m) | Error::Forbidden(m) => m.as_str(),
        _ => "",
    };
    state.pages.message(status, heading, message)
}
