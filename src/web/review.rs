//! The reviewer's pages behind an email link. `GET /r/{token}` shows the reviewer's items and
//! changes nothing (mail scanners fetch links); decisions are `POST /r/{token}/decide` from
//! that page, accepted only with the CSRF token bound to the session cookie the GET set.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::campaigns::model::{
    Campaign, ITEM_PENDING, Reviewer, campaign, items_of_reviewer, reviewer,
};
use crate::db::time::from_db;
use crate::decisions::{AuthContext, DecisionOutcome, DecisionRequest, Recorded, record_decision};
use crate::error::Error;
use crate::notify::links::{ReviewClaims, ensure_link_active};
use crate::web::AppState;
use crate::web::csrf;
use crate::web::pages::page_headers;

/// Review tokens are a few hundred bytes; anything far larger is not ours.
const MAX_TOKEN_LEN: usize = 2_048;

#[derive(Debug, Deserialize)]
pub struct ReviewQuery {
    item: Option<String>,
    intent: Option<String>,
    done: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DecideForm {
    csrf: Option<String>,
    item: Option<String>,
    outcome: Option<String>,
    comment: Option<String>,
}

#[derive(Serialize)]
struct ItemView {
    id: String,
    person_name: String,
    person_login: String,
    person_status: String,
    group_name: String,
    privileged: bool,
    via: Option<String>,
    since: String,
    routing: String,
    state: String,
    focus: bool,
    intent: Option<&'static str>,
}

#[derive(Serialize)]
struct CampaignView {
    title: String,
    due: String,
    open: bool,
    closed: Option<String>,
}

#[derive(Serialize)]
struct ReviewerView {
    name: String,
}

#[derive(Serialize)]
struct ReviewPage {
    campaign: CampaignView,
    reviewer: ReviewerView,
    items: Vec<ItemView>,
    csrf: String,
    action: String,
    total: usize,
    decided: usize,
    pending: usize,
    flash: Option<&'static str>,
}

/// Verifies the link and loads who it belongs to; any failure is the same 401 page.
async fn authenticate(
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

fn error_page(state: &AppState, err: &Error) -> HttpResponse {
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
        Error::Conflict(message) => pages.message(StatusCode::CONFLICT, "Review closed", message),
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

fn session_cookie(state: &AppState, value: String) -> Cookie<'static> {
    Cookie::build(csrf::SESSION_COOKIE, value)
        .path("/r/")
        .http_only(true)
        .secure(state.config.server.public_url.starts_with("https://"))
        .same_site(SameSite::Lax)
        .finish()
}

pub async fn show(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
    query: web::Query<ReviewQuery>,
) -> HttpResponse {
    let token = token.into_inner();
    let (claims, campaign, reviewer) = match authenticate(&state, &token).await {
        Ok(found) => found,
        Err(e) => return error_page(&state, &e),
    };
    let reviewer_id = reviewer.id.clone();
    let items = match state
        .db
        .run(move |conn| items_of_reviewer(conn, &reviewer_id))
        .await
    {
        Ok(items) => items,
        Err(e) => return error_page(&state, &e),
    };
    let existing = request
        .cookie(csrf::SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| csrf::is_well_formed(v));
    let session_id = existing.clone().unwrap_or_else(csrf::new_session_id);
    let csrf_token = csrf::token_for(&state.csrf_key, &session_id, &claims.jti_hash());
    let intent = match query.intent.as_deref() {
        Some("approve") => Some("approve"),
        Some("revoke") => Some("revoke"),
        _ => None,
    };
    let total = items.len();
    let pending = items.iter().filter(|i| i.state == ITEM_PENDING).count();
    let views = items
        .into_iter()
        .map(|i| {
            let focus = query.item.as_deref() == Some(i.id.as_str());
            ItemView {
                focus,
                intent: if focus { intent } else { None },
                id: i.id,
                person_name: i.identity_name,
                person_login: i.identity_login,
                person_status: i.identity_status,
                group_name: i.entitlement_name,
                privileged: i.privileged,
                via: i.via,
                since: from_db(i.granted_since).format("%Y-%m-%d").to_string(),
                routing: i.routing,
                state: i.state,
            }
        })
        .collect();
    let page = ReviewPage {
        campaign: CampaignView {
            title: campaign.title.clone(),
            due: from_db(campaign.due_at).format("%Y-%m-%d").to_string(),
            open: campaign.is_open(),
            closed: campaign
                .closed_at
                .map(|t| from_db(t).format("%Y-%m-%d").to_string()),
        },
        reviewer: ReviewerView {
            name: reviewer.display_name,
        },
        items: views,
        csrf: csrf_token,
        action: format!("/r/{token}/decide"),
        total,
        decided: total - pending,
        pending,
        flash: query.done.as_deref().map(|_| "Saved. Thank you."),
    };
    let mut response = state.pages.render(StatusCode::OK, "review.html", page);
    if existing.is_none()
        && let Err(e) = response.add_cookie(&session_cookie(&state, session_id))
    {
        tracing::error!(error = %e, "cannot set review session cookie");
    }
    response
}

pub async fn decide(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
    form: web::Form<DecideForm>,
) -> HttpResponse {
    let token = token.into_inner();
    let (claims, campaign, reviewer) = match authenticate(&state, &token).await {
        Ok(found) => found,
        Err(e) => return error_page(&state, &e),
    };
    let session_id = request
        .cookie(csrf::SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| csrf::is_well_formed(v));
    let csrf_ok = match (&session_id, form.csrf.as_deref()) {
        (Some(session), Some(submitted)) => {
            csrf::verify(&state.csrf_key, session, &claims.jti_hash(), submitted)
        }
        _ => false,
    };
    let Some(session_id) = session_id.filter(|_| csrf_ok) else {
        tracing::warn!(reviewer = %reviewer.id, "decision refused: missing or wrong CSRF token");
        return error_page(&state, &Error::Csrf);
    };
    let (Some(item_id), Some(outcome)) = (form.item.clone(), form.outcome.as_deref()) else {
        return error_page(
            &state,
            &Error::BadRequest("choose Approve or Revoke".into()),
        );
    };
    let outcome = match DecisionOutcome::parse(outcome) {
        Ok(outcome) => outcome,
        Err(e) => return error_page(&state, &e),
    };
    let auth = AuthContext {
        method: "email_link".into(),
        link_jti_sha256: Some(claims.jti_hash()),
        session_tag: Some(csrf::session_tag(&session_id)),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(200).collect()),
        ip: request.peer_addr().map(|a| a.ip().to_string()),
    };
    let decision = DecisionRequest {
        campaign_id: campaign.id.clone(),
        reviewer_id: reviewer.id.clone(),
        item_id: item_id.clone(),
        outcome,
        comment: form.comment.clone(),
    };
    let now = state.clock.now();
    let recorded = state
        .db
        .run(move |conn| record_decision(conn, now, &decision, &auth))
        .await;
    match recorded {
        Ok(result) => {
            if let Recorded::New(id) = &result {
                tracing::info!(decision = %id, reviewer = %reviewer.id, outcome = outcome.as_str(), "decision recorded");
            }
            page_headers(HttpResponse::SeeOther())
                .insert_header((
                    header::LOCATION,
                    format!("/r/{token}?done=1&item={item_id}#item-{item_id}"),
                ))
                .finish()
        }
        Err(e) => error_page(&state, &e),
    }
}
