//! Reviewer sign-in under `review.require_sso`: `GET /r/{token}/sign-in` sends the reviewer
//! to the organisation's provider (the review's address kept in a short-lived cookie for the
//! way back), and the shared `/auth/callback` ends in [`finish`]: the provider must prove the
//! address the review is addressed to; then a sealed proof (`auth::reviewer_sso`) is set for
//! the review pages and the reviewer goes back to their review. [`sso_proof`] is what every
//! decision post checks.

use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::reviewer_sso::{REVIEWER_COOKIE, ReviewerProof, admit_reviewer, open, seal};
use crate::auth::staff_sign_in::ProvedIdentity;
use crate::campaigns::model::reviewer;
use crate::db::write_tx;
use crate::web::AppState;
use crate::web::review::{MAX_TOKEN_LEN, authenticate, error_page};
use crate::web::staff_sign_in::{ATTEMPT_COOKIE, begin, cookie, expired, failed, see_other};

/// Where the reviewer goes back to after signing in (their review's path).
const RETURN_COOKIE: &str = "attest_review_return";

fn proof_key(state: &AppState) -> [u8; 32] {
    state.signer.derived_key("reviewer-sso")
}

/// The proof of this request's reviewer sign-in, if it is for `reviewer_id` and current.
pub(crate) fn sso_proof(
    state: &AppState,
    request: &HttpRequest,
    reviewer_id: &str,
) -> Option<ReviewerProof> {
    let value = request.cookie(REVIEWER_COOKIE)?;
    open(&proof_key(state), value.value(), state.clock.now())
        .filter(|proof| proof.reviewer_id == reviewer_id)
}

/// Where a review's sign-in starts.
pub(crate) fn sign_in_path(token: &str) -> String {
    format!("/r/{token}/sign-in")
}

pub async fn start(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    if !state.config.review.require_sso || state.config.auth.oidc.is_none() {
        return state.pages.message(
            StatusCode::NOT_FOUND,
            "No sign-in needed",
            "This review needs no sign-in: open it from the link in your mail.",
        );
    }
    let token = token.into_inner();
    if token.len() > MAX_TOKEN_LEN {
        return error_page(&state, &crate::error::Error::Unauthorized);
    }
    // A revoked or superseded link, or a closed campaign, starts no sign-in.
    let (claims, campaign, _) = match authenticate(&state, &token).await {
        Ok(found) => found,
        Err(e) => return error_page(&state, &e),
    };
    if !campaign.is_open() {
        return error_page(
            &state,
            &crate::error::Error::Conflict("this review is closed".into()),
        );
    }
    match begin(&state, &request, Some(claims.sub)).await {
        Ok(mut redirect) => {
            let mut back = cookie(&state, RETURN_COOKIE, format!("/r/{token}"), "/auth/");
            back.set_max_age(CookieDuration::minutes(10));
            redirect.cookie(back).finish()
        }
        Err(response) => response,
    }
}

/// The end of a reviewer's sign-in, from the callback: admitted as the reviewer the review is
/// addressed to, or refused (both recorded).
pub(crate) async fn finish(
    state: &AppState,
    request: &HttpRequest,
    reviewer_id: String,
    identity: ProvedIdentity,
) -> HttpResponse {
    let now = state.clock.now();
    let hours = state.config.review.sso_hours;
    let admitted = state
        .db
        .run(move |conn| {
            write_tx(conn, |conn| {
                let found = reviewer(conn, &reviewer_id)?;
                admit_reviewer(conn, now, &found, &identity, hours)
            })
        })
        .await;
    let proof = match admitted {
        Ok(Some(proof)) => proof,
        Ok(None) => {
            return state.pages.message(
                StatusCode::FORBIDDEN,
                "Another account",
                "You signed in with another account than the one this review is addressed \
                 to. Sign out at your provider and sign in as yourself, or ask for the review \
                 to be passed to you.",
            );
        }
        Err(e) => return failed(state, &e),
    };
    let mut proof_cookie = cookie(
        state,
        REVIEWER_COOKIE,
        seal(&proof_key(state), &proof),
        "/r/",
    );
    proof_cookie.set_max_age(CookieDuration::hours(i64::from(hours)));
    // Only back to a review page of this site.
    let back = request
        .cookie(RETURN_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|path| {
            path.starts_with("/r/")
                && path.len() <= MAX_TOKEN_LEN + 3
                && path[3..]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        });
    match back {
        Some(path) => see_other(&path)
            .cookie(proof_cookie)
            .cookie(expired(state, RETURN_COOKIE, "/auth/"))
            .cookie(expired(state, ATTEMPT_COOKIE, "/auth/"))
            .finish(),
        None => {
            let mut page = state.pages.message(
                StatusCode::OK,
                "Signed in",
                "You are signed in. Open your review again from the link in your mail.",
            );
            let _ = page.add_cookie(&proof_cookie);
            page
        }
    }
}
