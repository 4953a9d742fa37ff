//! Staff sign-in in the browser: `GET /auth/login` sends the browser to the identity
//! provider (the attempt's id in a short-lived cookie), `GET /auth/callback` admits the
//! staff member and starts a session (a new id each time; the browser's previous session
//! ends), `POST /auth/logout` ends it. [`staff_session`] is the gate of every console page:
//! no session leads to sign-in, a role the page does not allow gets 403. A reviewer's
//! sign-in (`review.require_sso`) starts in `review_sign_in` and comes back through the same
//! callback.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::auth::Role;
use crate::auth::sessions::{SessionLimits, StaffSession, end_session, session_of, start_session};
use crate::auth::staff_sign_in::{admit, store_attempt, take_attempt};
use crate::error::Error;
use crate::web::AppState;
use crate::web::access_log::loggable_path;
use crate::web::csrf;
use crate::web::pages::page_headers;
use crate::web::review_sign_in;

pub const STAFF_COOKIE: &str = "attest_staff";
pub(crate) const ATTEMPT_COOKIE: &str = "attest_sign_in";

#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

pub(crate) fn cookie(
    state: &AppState,
    name: &'static str,
    value: String,
    path: &'static str,
) -> Cookie<'static> {
    Cookie::build(name, value)
        .path(path)
        .http_only(true)
        .secure(state.config.server.public_url.starts_with("https://"))
        .same_site(SameSite::Lax)
        .finish()
}

pub(crate) fn expired(state: &AppState, name: &'static str, path: &'static str) -> Cookie<'static> {
    let mut gone = cookie(state, name, String::new(), path);
    gone.make_removal();
    gone
}

fn redirect_uri(state: &AppState) -> String {
    format!(
        "{}/auth/callback",
        state.config.server.public_url.trim_end_matches('/')
    )
}

pub(crate) fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut builder = page_headers(HttpResponse::SeeOther());
    builder.insert_header((header::LOCATION, location.to_string()));
    builder
}

pub(crate) fn failed(state: &AppState, err: &Error) -> HttpResponse {
    match err {
        Error::Forbidden(message) => {
            state
                .pages
                .message(StatusCode::FORBIDDEN, "You cannot sign in here", message)
        }
        Error::Unauthorized => state.pages.message(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in was not started here or took too long. Start again from the sign-in page.",
        ),
        other => {
            tracing::error!(error = %other, code = other.code(), "staff sign-in failed");
            state.pages.message(
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                "The identity provider could not be reached or refused the sign-in. Try again; \
                 if it keeps failing, tell your administrator.",
            )
        }
    }
}

pub async fn login(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if state.config.auth.oidc.is_none() {
        return state.pages.message(
            StatusCode::NOT_FOUND,
            "Staff sign-in is not set up",
            "Ask your administrator to configure [auth.oidc], or to give you a sign-in link.",
        );
    }
    match begin(&state, &request, None).await {
        Ok(mut redirect) => redirect.finish(),
        Err(response) => response,
    }
}

/// Starts a sign-in at the provider, of a staff member or (with `reviewer_id`) of a
/// reviewer: stores the attempt and answers with the redirect there, the attempt's cookie
/// set.
pub(crate) async fn begin(
    state: &AppState,
    http: &HttpRequest,
    reviewer_id: Option<String>,
) -> Result<actix_web::HttpResponseBuilder, HttpResponse> {
    let Some(oidc) = state.config.auth.oidc.clone() else {
        return Err(failed(state, &Error::Unauthorized));
    };
    if let Err(wait) = state.sign_ins.check(http.peer_addr().map(|a| a.ip())) {
        tracing::warn!(
            retry_after_s = wait,
            "sign-in starts refused: too many from one address"
        );
        let mut refused = state.pages.message(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many sign-in attempts",
            "Too many sign-ins were started from your address. Wait a minute, then try again.",
        );
        if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&wait.to_string()) {
            refused
                .headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, value);
        }
        return Err(refused);
    }
    let redirect = redirect_uri(state);
    let scopes = oidc.scopes.clone();
    let (providers, now) = (state.provider.clone(), state.clock.now());
    let request = match web::block(move || {
        providers
            .get(now, &oidc, &redirect)
            .map(|p| p.authorization_request(&scopes))
    })
    .await
    {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => return Err(failed(state, &e)),
        Err(e) => return Err(failed(state, &Error::Internal(e.to_string()))),
    };
    let attempt = csrf::new_session_id();
    let now = state.clock.now();
    let stored = attempt.clone();
    let url = request.url.clone();
    if let Err(e) = state
        .db
        .run(move |conn| store_attempt(conn, now, &stored, &request, reviewer_id.as_deref()))
        .await
    {
        return Err(failed(state, &e));
    }
    let mut attempt_cookie = cookie(state, ATTEMPT_COOKIE, attempt, "/auth/");
    attempt_cookie.set_max_age(CookieDuration::minutes(10));
    let mut redirect = see_other(&url);
    redirect.cookie(attempt_cookie);
    Ok(redirect)
}

pub async fn callback(
    state: web::Data<AppState>,
    request: HttpRequest,
    query: web::Query<Callback>,
) -> HttpResponse {
    let Some(oidc) = state.config.auth.oidc.clone() else {
        return failed(&state, &Error::Unauthorized);
    };
    if let Some(error) = &query.error {
        let error: String = error
            .chars()
            .filter(char::is_ascii_graphic)
            .take(64)
            .collect();
        tracing::warn!(error = %error, "the identity provider ended a staff sign-in");
        return failed(
            &state,
            &Error::Forbidden(format!("the identity provider ended the sign-in ({error})")),
        );
    }
    let (Some(code), Some(returned_state), Some(attempt)) = (
        query.code.clone(),
        query.state.clone(),
        request
            .cookie(ATTEMPT_COOKIE)
            .map(|c| c.value().to_string()),
    ) else {
        return failed(&state, &Error::Unauthorized);
    };
    let now = state.clock.now();
    let taken = state
        .db
        .run(move |conn| take_attempt(conn, now, &attempt, &returned_state))
        .await;
    let attempt = match taken {
        Ok(attempt) => attempt,
        Err(e) => return failed(&state, &e),
    };
    let reviewer_id = attempt.reviewer_id.clone();
    let redirect = redirect_uri(&state);
    let for_exchange = oidc.clone();
    let providers = state.provider.clone();
    let proved = web::block(move || {
        providers.get(now, &for_exchange, &redirect)?.exchange(
            &attempt,
            &code,
            &for_exchange.groups_claim,
        )
    })
    .await;
    let identity = match proved {
        Ok(Ok(identity)) => identity,
        Ok(Err(e)) => return failed(&state, &e),
        Err(e) => return failed(&state, &Error::Internal(e.to_string())),
    };
    if let Some(reviewer_id) = reviewer_id {
        return review_sign_in::finish(&state, &request, reviewer_id, identity).await;
    }
    let require_mfa = state.config.auth.require_mfa;
    let limits = SessionLimits::of(&state.config.auth);
    let previous = request.cookie(STAFF_COOKIE).map(|c| c.value().to_string());
    let now = state.clock.now();
    let started = state
        .db
        .run(move |conn| {
            let admitted = admit(conn, now, &oidc, require_mfa, &identity)?;
            let secret = start_session(
                conn,
                now,
                &admitted.staff_user_id,
                admitted.role,
                &admitted.auth,
                limits,
                previous.as_deref(),
            )?;
            Ok((admitted, secret))
        })
        .await;
    match started {
        Ok((admitted, secret)) => {
            tracing::info!(staff_user = %admitted.staff_user_id, role = %admitted.role, "staff signed in");
            see_other("/console")
                .cookie(cookie(&state, STAFF_COOKIE, secret, "/"))
                .cookie(expired(&state, ATTEMPT_COOKIE, "/auth/"))
                .finish()
        }
        Err(e) => failed(&state, &e),
    }
}

/// The CSRF token of a staff session's forms.
pub fn staff_csrf(state: &AppState, session: &StaffSession) -> String {
    csrf::token_for(&state.csrf_key, &session.id_hash, "staff")
}

/// Whether a form posted the CSRF token of `session`.
fn staff_csrf_valid(state: &AppState, session: &StaffSession, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|t| csrf::verify(&state.csrf_key, &session.id_hash, "staff", t))
}

pub async fn logout(
    state: web::Data<AppState>,
    request: HttpRequest,
    form: web::Form<LogoutForm>,
) -> HttpResponse {
    let allowed = [Role::Admin, Role::Auditor];
    if let Err(response) = staff_post(&state, &request, &allowed, form.csrf.as_deref()).await {
        return response;
    }
    let Some(secret) = request.cookie(STAFF_COOKIE).map(|c| c.value().to_string()) else {
        return see_other("/auth/login").finish();
    };
    let now = state.clock.now();
    if let Err(e) = state
        .db
        .run(move |conn| end_session(conn, now, &secret))
        .await
    {
        return failed(&state, &e);
    }
    let mut response = state.pages.message(
        StatusCode::OK,
        "Signed out",
        "You have signed out of attest.",
    );
    if let Err(e) = response.add_cookie(&expired(&state, STAFF_COOKIE, "/")) {
        tracing::error!(error = %e, "cannot remove the staff cookie");
    }
    response
}

/// A staff form's post: the session as [`staff_session`] checks it, and the form's CSRF
/// token bound to that session.
pub async fn staff_post(
    state: &AppState,
    request: &HttpRequest,
    allowed: &[Role],
    submitted_csrf: Option<&str>,
) -> Result<StaffSession, HttpResponse> {
    let session = staff_session(state, request, allowed).await?;
    if !staff_csrf_valid(state, &session, submitted_csrf) {
        return Err(state.pages.message(
            StatusCode::FORBIDDEN,
            "Please try again",
            &Error::Csrf.to_string(),
        ));
    }
    Ok(session)
}

/// The caller's staff session, when it is valid and its role is one of `allowed`; otherwise
/// the response to send: to sign-in without a session, 403 for another role.
pub async fn staff_session(
    state: &AppState,
    request: &HttpRequest,
    allowed: &[Role],
) -> Result<StaffSession, HttpResponse> {
    let Some(secret) = request.cookie(STAFF_COOKIE).map(|c| c.value().to_string()) else {
        return Err(see_other("/auth/login").finish());
    };
    let now = state.clock.now();
    let limits = SessionLimits::of(&state.config.auth);
    let found = state
        .db
        .run(move |conn| session_of(conn, now, &secret, limits))
        .await;
    let session = match found {
        Ok(session) => session,
        Err(Error::Unauthorized) => return Err(see_other("/auth/login").finish()),
        Err(e) => return Err(failed(state, &e)),
    };
    if !allowed.contains(&session.role) {
        tracing::warn!(
            staff_user = %session.staff_user_id,
            role = %session.role,
            path = %loggable_path(request.path()),
            "console page refused for the role"
        );
        return Err(state.pages.message(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "Your role may not open this page.",
        ));
    }
    Ok(session)
}
