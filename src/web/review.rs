//! The reviewer's decisions behind an email link: `POST /r/{token}/decide` from the review page
//! (`review_page`), accepted only with the CSRF token bound to the session cookie the page
//! set, and the authentication and error pages every review route shares. A decision
//! without a required reason, or made on a stale page, goes back to the item to say so.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use chrono::NaiveDate;

use crate::campaigns::model::{Campaign, Reviewer, campaign, reviewer};
use crate::decisions::reasons::ReasonRules;
use crate::decisions::{
    AuthContext, DecisionChecks, DecisionOutcome, DecisionRequest, Recorded,
    record_checked_decision,
};
use crate::error::Error;
use crate::notify::links::{ReviewClaims, ensure_link_active};
use crate::web::AppState;
use crate::web::csrf;
use crate::web::pages::page_headers;
use crate::web::review_sign_in::sso_proof;
use crate::web::staff_sign_in::see_other;

/// Review tokens are a few hundred bytes; anything far larger is not ours.
pub(crate) const MAX_TOKEN_LEN: usize = 2_048;

#[derive(Debug, Deserialize)]
pub struct DecideForm {
    csrf: Option<String>,
    item: Option<String>,
    outcome: Option<String>,
    comment: Option<String>,
    /// With `approve_until`: the day the approval ends (`YYYY-MM-DD`).
    until: Option<String>,
    /// The item's latest decision id when the page showed it ("" for none).
    seen: Option<String>,
}

/// Verifies the link and loads who it belongs to; any failure is the same 401 page.
pub(crate) async fn authenticate(
    state: &AppState,
    token: &str,
) -> Result<(ReviewClaims, Campaign, Reviewer), Error> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Error::Unauthorized);
    }
    let now = state.clock.now();
    let claims = state.signer.verify(token, now)?;
    let lookup = claims.clone();
    state
        .db
        .run(move |conn| {
            ensure_link_active(conn, &lookup, now)?;
            let campaign = campaign(conn, &lookup.cmp).map_err(|_| Error::Unauthorized)?;
            let reviewer = reviewer(conn, &lookup.sub).map_err(|_| Error::Unauthorized)?;
            if reviewer.campaign_id != campaign.id {
                return Err(Error::Unauthorized);
            }
            Ok((lookup, campaign, reviewer))
        })
        .await
}

pub(crate) fn error_page(state: &AppState, err: &Error) -> HttpResponse {
    let pages = &state.pages;
    match err {
        Error::Unauthorized => pages.message(
            StatusCode::UNAUTHORIZED,
            "This link does not work",
            "This review link is invalid or has expired. Use the most recent review email, or \
             ask your access-review administrator for a new link.",
        ),
        Error::Csrf => pages.message(StatusCode::FORBIDDEN, "Please try again", &err.to_string()),
        Error::Forbidden(message) => pages.message(StatusCode::FORBIDDEN, "Not allowed", message),
        Error::Conflict(message) => pages.message(StatusCode::CONFLICT, "Not possible", message),
        Error::BadRequest(message) => {
            pages.message(StatusCode::BAD_REQUEST, "Cannot save", message)
        }
        other => {
            tracing::error!(error = %other, code = other.code(), "review page failed");
            pages.message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Your decision may not have been saved. Reload the page and check.",
            )
        }
    }
}

pub(crate) fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(csrf::SESSION_COOKIE, value)
        .path("/r/")
        .http_only(true)
        .secure(state.config.server.public_url.starts_with("https://"))
        .same_site(SameSite::Lax)
        .finish()
}

/// A post from the review page, authenticated: the link, then the CSRF token bound to the
/// session cookie the page set; with how the poster proved who they are.
pub(crate) struct VerifiedPost {
    pub(crate) campaign: Campaign,
    pub(crate) reviewer: Reviewer,
    pub(crate) auth: AuthContext,
}

pub(crate) async fn verify_post(
    state: &AppState,
    request: &HttpRequest,
    token: &str,
    submitted_csrf: Option<&str>,
) -> Result<VerifiedPost, HttpResponse> {
    let (claims, auth) = verify_form(state, request, token, submitted_csrf).map_err(|p| *p)?;
    let (_, campaign, reviewer) = match authenticate(state, token).await {
        Ok(found) => found,
        Err(e) => return Err(error_page(state, &e)),
    };
    debug_assert_eq!(claims.sub, reviewer.id);
    Ok(VerifiedPost {
        campaign,
        reviewer,
        auth,
    })
}

/// The checks of a post that need no database: the link's signature and expiry, and the
/// CSRF token bound to the session cookie. The link's standing (revoked, superseded) is
/// checked by the decision itself, inside its transaction.
fn verify_form(
    state: &AppState,
    request: &HttpRequest,
    token: &str,
    submitted_csrf: Option<&str>,
) -> Result<(ReviewClaims, AuthContext), Box<HttpResponse>> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(Box::new(error_page(state, &Error::Unauthorized)));
    }
    let claims = match state.signer.verify(token, state.clock.now()) {
        Ok(claims) => claims,
        Err(e) => return Err(Box::new(error_page(state, &e))),
    };
    let session_id = request
        .cookie(csrf::SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| csrf::is_well_formed(v));
    let csrf_ok = match (&session_id, submitted_csrf) {
        (Some(session), Some(submitted)) => {
            csrf::verify(&state.csrf_key, session, &claims.jti_hash(), submitted)
        }
        _ => false,
    };
    let Some(session_id) = session_id.filter(|_| csrf_ok) else {
        tracing::warn!(reviewer = %claims.sub, "post refused: missing or wrong CSRF token");
        return Err(Box::new(error_page(state, &Error::Csrf)));
    };
    // Under review.require_sso the reviewer must have signed in as themselves too.
    let proof = if state.config.review.require_sso {
        match sso_proof(state, request, &claims.sub) {
            Some(proof) => Some(proof),
            None => {
                // Back to the page (same origin: a form's redirect to the provider would be
                // blocked by the page's form-action policy), which offers the sign-in.
                tracing::info!(reviewer = %claims.sub, "post refused: the reviewer has not signed in");
                return Err(Box::new(
                    see_other(&format!("/r/{token}?problem=sign_in#sign-in")).finish(),
                ));
            }
        }
    } else {
        None
    };
    let auth = AuthContext {
        method: proof.as_ref().map_or("email_link", |p| p.method()).into(),
        link_jti_sha256: Some(claims.jti_hash()),
        session_tag: Some(csrf::session_tag(&session_id)),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect()),
        ip: request.peer_addr().map(|a| a.ip().to_string()),
        sso_subject_tag: proof.map(|p| p.subject_tag),
    };
    Ok((claims, auth))
}

/// Reads the outcome and end date a form posted: `approve`, `revoke`, `dont_know`, or
/// `approve_until` with `until`.
pub(crate) fn posted_outcome(
    outcome: Option<&str>,
    until: Option<&str>,
) -> Result<(DecisionOutcome, Option<NaiveDate>), Error> {
    match outcome {
        Some("approve_until") => {
            let day = until
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .ok_or_else(|| Error::BadRequest("choose the day the approval ends".into()))?;
            let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| {
                Error::BadRequest("the end date is not a date (use YYYY-MM-DD)".into())
            })?;
            Ok((DecisionOutcome::Approve, Some(day)))
        }
        Some(outcome) => Ok((DecisionOutcome::parse(outcome)?, None)),
        None => Err(Error::BadRequest("choose Approve or Revoke".into())),
    }
}

pub async fn decide(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
    form: web::Form<DecideForm>,
) -> HttpResponse {
    let token = token.into_inner();
    // One database round trip: the decision's transaction checks the link's standing, the
    // campaign and the item's reviewer itself.
    let (claims, auth) = match verify_form(&state, &request, &token, form.csrf.as_deref()) {
        Ok(verified) => verified,
        Err(page) => return *page,
    };
    let Some(item_id) = form.item.clone() else {
        return error_page(
            &state,
            &Error::BadRequest("choose Approve or Revoke".into()),
        );
    };
    let (outcome, approved_until) =
        match posted_outcome(form.outcome.as_deref(), form.until.as_deref()) {
            Ok(found) => found,
            Err(e) => return error_page(&state, &e),
        };
    let seen_latest = form
        .seen
        .as_deref()
        .map(|seen| Some(seen.to_string()).filter(|s| !s.is_empty()));
    let decision = DecisionRequest {
        campaign_id: claims.cmp.clone(),
        reviewer_id: claims.sub.clone(),
        item_id: item_id.clone(),
        outcome,
        comment: form.comment.clone(),
        approved_until,
    };
    let now = state.clock.now();
    let config = std::sync::Arc::clone(&state.config);
    let recorded = state
        .db
        .run(move |conn| {
            let definition = campaign(conn, &decision.campaign_id)
                .map_err(|_| Error::Unauthorized)?
                .definition;
            let checks = DecisionChecks {
                reasons: ReasonRules::configured(&config, &definition),
                seen_latest,
            };
            record_checked_decision(conn, now, &decision, &auth, &checks)
        })
        .await;
    let reviewer_id = claims.sub;
    let intent = match outcome {
        DecisionOutcome::Revoke => "revoke",
        _ => "approve",
    };
    // Item ids are generated (hex); anything else never reaches a page query string.
    let safe_item: String = item_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let back = |query: String| {
        page_headers(HttpResponse::SeeOther())
            .insert_header((header::LOCATION, format!("/r/{token}?{query}")))
            .finish()
    };
    match recorded {
        Ok(result) => {
            if let Recorded::New(id) = &result {
                tracing::info!(decision = %id, reviewer = %reviewer_id, outcome = outcome.as_str(), "decision recorded");
            }
            back(format!("saved={safe_item}"))
        }
        Err(Error::ReasonRequired(_)) => {
            back(format!("item={safe_item}&intent={intent}&problem=reason"))
        }
        Err(Error::Stale(_)) => {
            tracing::info!(reviewer = %reviewer_id, "decision refused: made on a stale page");
            back(format!("item={safe_item}&intent={intent}&problem=stale"))
        }
        Err(e) => error_page(&state, &e),
    }
}
