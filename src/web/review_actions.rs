//! The review page's actions on several accesses at once, behind the same link and CSRF
//! checks as a single decision: `POST /r/{token}/decide-all` decides every undecided access
//! of one person, of one group, or all that remain, with one comment; `POST
//! /r/{token}/delegate` passes the reviewer's undecided accesses to someone else in the
//! directory, with a reason.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use crate::campaigns::delegation::{DelegatedBy, Delegation, delegate};
use crate::decisions::DecisionOutcome;
use crate::decisions::bulk::{BulkRequest, BulkScope, record_bulk};
use crate::decisions::reasons::ReasonRules;
use crate::error::Error;
use crate::web::AppState;
use crate::web::pages::page_headers;
use crate::web::review::{VerifiedPost, error_page, posted_outcome, verify_post};

#[derive(Debug, Deserialize)]
pub struct BulkForm {
    csrf: Option<String>,
    /// `remaining`, `person:ID` or `group:ID`.
    scope: Option<String>,
    outcome: Option<String>,
    comment: Option<String>,
    until: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct DelegateForm {
    csrf: Option<String>,
    /// An email address or login of the directory.
    to: Option<String>,
    reason: Option<String>,
}

fn back_to_page(token: &str, query: &str) -> HttpResponse {
    page_headers(HttpResponse::SeeOther())
        .insert_header((header::LOCATION, format!("/r/{token}?{query}")))
        .finish()
}

pub async fn decide_all(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
    form: web::Form<BulkForm>,
) -> HttpResponse {
    let token = token.into_inner();
    let VerifiedPost {
        campaign,
        reviewer,
        auth,
    } = match verify_post(&state, &request, &token, form.csrf.as_deref()).await {
        Ok(post) => post,
        Err(page) => return page,
    };
    let scope = match BulkScope::parse(form.scope.as_deref().unwrap_or_default()) {
        Ok(scope) => scope,
        Err(e) => return error_page(&state, &e),
    };
    let (outcome, approved_until) =
        match posted_outcome(form.outcome.as_deref(), form.until.as_deref()) {
            Ok(found) => found,
            Err(e) => return error_page(&state, &e),
        };
    let reasons = ReasonRules::configured(&state.config, &campaign.definition);
    let bulk = BulkRequest {
        campaign_id: campaign.id,
        reviewer_id: reviewer.id.clone(),
        scope,
        outcome,
        comment: form.comment.clone(),
        approved_until,
        reasons,
    };
    let now = state.clock.now();
    match state
        .db
        .run(move |conn| record_bulk(conn, now, &bulk, &auth))
        .await
    {
        Ok(decided) => {
            tracing::info!(reviewer = %reviewer.id, outcome = outcome.as_str(), items = decided, "bulk decision recorded");
            back_to_page(&token, &format!("decided={decided}"))
        }
        Err(Error::ReasonRequired(_)) => {
            let intent = if outcome == DecisionOutcome::Revoke {
                "revoke"
            } else {
                "approve"
            };
            back_to_page(&token, &format!("problem=bulk_reason&intent={intent}"))
        }
        Err(e) => error_page(&state, &e),
    }
}

pub async fn delegate_items(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
    form: web::Form<DelegateForm>,
) -> HttpResponse {
    let token = token.into_inner();
    let VerifiedPost {
        campaign,
        reviewer,
        auth,
    } = match verify_post(&state, &request, &token, form.csrf.as_deref()).await {
        Ok(post) => post,
        Err(page) => return page,
    };
    let Some(to) = form.to.clone().filter(|t| !t.trim().is_empty()) else {
        return error_page(
            &state,
            &Error::BadRequest("name the person (email address or login)".into()),
        );
    };
    let reason = form.reason.clone().unwrap_or_default();
    let now = state.clock.now();
    let reviewer_id = reviewer.id.clone();
    let moved = state
        .db
        .run(move |conn| {
            let delegation = Delegation {
                campaign_id: &campaign.id,
                from_reviewer_id: &reviewer_id,
                to: &to,
                reason: &reason,
                by: DelegatedBy::Reviewer(&auth),
            };
            delegate(conn, now, &delegation)
        })
        .await;
    match moved {
        Ok(moved) => {
            tracing::info!(reviewer = %reviewer.id, items = moved.items, stuck = moved.stuck, "reviewer delegated their undecided items");
            back_to_page(
                &token,
                &format!("moved={}&stuck={}", moved.items, moved.stuck),
            )
        }
        Err(e) => error_page(&state, &e),
    }
}
