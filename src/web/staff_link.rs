//! Sign-in by one-time link (`attest admin link`), for staff where no identity provider is
//! configured. `GET /auth/link?t=SECRET` changes nothing (mail scanners fetch links): it
//! shows a button, with a CSRF token bound to a cookie it sets, so that no other site can
//! sign a browser in as someone else. `POST /auth/link` uses the link up and starts a
//! session. The secret travels in the query string and the form, never in a logged path.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::auth::sessions::{SessionLimits, start_session};
use crate::auth::sign_in_links::redeem;
use crate::error::Error;
use crate::web::AppState;
use crate::web::csrf;
use crate::web::staff_sign_in::{STAFF_COOKIE, cookie, expired, failed, see_other};

const LINK_COOKIE: &str = "attest_link";
/// What the CSRF token of the link form is bound to, besides the cookie.
const LINK_PURPOSE: &str = "staff-link";

#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    t: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LinkForm {
    t: Option<String>,
    csrf: Option<String>,
}

pub async fn page(state: web::Data<AppState>, query: web::Query<LinkQuery>) -> HttpResponse {
    let Some(secret) = query.t.clone().filter(|t| csrf::is_well_formed(t)) else {
        return failed(&state, &Error::Unauthorized);
    };
    let binding = csrf::new_session_id();
    let token = csrf::token_for(&state.csrf_key, &binding, LINK_PURPOSE);
    let mut response = state.pages.render(
        StatusCode::OK,
        "staff_link.html",
        minijinja::context! { secret => secret, csrf => token },
    );
    let mut bound = cookie(&state, LINK_COOKIE, binding, "/auth/");
    bound.set_max_age(CookieDuration::minutes(30));
    if let Err(e) = response.add_cookie(&bound) {
        tracing::error!(error = %e, "cannot set the sign-in link cookie");
    }
    response
}

pub async fn sign_in(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<LinkForm>,
) -> HttpResponse {
    let binding = request.cookie(LINK_COOKIE).map(|c| c.value().to_string());
    let bound = match (&binding, form.csrf.as_deref()) {
        (Some(binding), Some(submitted)) => {
            csrf::verify(&state.csrf_key, binding, LINK_PURPOSE, submitted)
        }
        _ => false,
    };
    if !bound {
        return state.pages.message(
            StatusCode::FORBIDDEN,
            "Please try again",
            &Error::Csrf.to_string(),
        );
    }
    let Some(secret) = form.t.clone().filter(|t| csrf::is_well_formed(t)) else {
        return failed(&state, &Error::Unauthorized);
    };
    let now = state.clock.now();
    let require_mfa = state.config.auth.require_mfa;
    let limits = SessionLimits::of(&state.config.auth);
    let previous = request.cookie(STAFF_COOKIE).map(|c| c.value().to_string());
    let started = state
        .db
        .run(move |conn| {
            let (staff_user_id, role, auth) = redeem(conn, now, &secret, require_mfa)?;
            let session = start_session(
                conn,
                now,
                &staff_user_id,
                role,
                &auth,
                limits,
                previous.as_deref(),
            )?;
            Ok((staff_user_id, session))
        })
        .await;
    match started {
        Ok((staff_user_id, session)) => {
            tracing::info!(staff_user = %staff_user_id, "staff signed in with a one-time link");
            see_other("/console")
                .cookie(cookie(&state, STAFF_COOKIE, session, "/"))
                .cookie(expired(&state, LINK_COOKIE, "/auth/"))
                .finish()
        }
        Err(Error::Unauthorized) => state.pages.message(
            StatusCode::UNAUTHORIZED,
            "This link does not work",
            "This sign-in link was used already, has expired, or is not valid. Ask an \
             administrator for a new one.",
        ),
        Err(e) => failed(&state, &e),
    }
}
