//! The reviewer's pages behind an email link. `GET /r/{token}` shows the reviewer's items and
//! changes nothing (mail scanners fetch links); decisions are `POST /r/{token}/decide` from
//! that page, accepted only with the CSRF token bound to the session cookie the GET set.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use chrono::NaiveDate;

use crate::campaigns::model::{
    Campaign, ITEM_PENDING, ReviewItem, Reviewer, campaign, items_of_reviewer, reviewer,
};
use crate::db::time::from_db;
use crate::decisions::record::MAX_APPROVE_UNTIL_DAYS;
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
    /// After a bulk decision: how many accesses it decided.
    decided: Option<usize>,
    /// After a delegation: how many accesses moved, and how many could not.
    moved: Option<usize>,
    stuck: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub struct DecideForm {
    csrf: Option<String>,
    item: Option<String>,
    outcome: Option<String>,
    comment: Option<String>,
    /// With `approve_until`: the day the approval ends (`YYYY-MM-DD`).
    until: Option<String>,
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
    approved_until: Option<String>,
    stage: i64,
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

/// A choice of the bulk form: whose (or which group's) undecided accesses, and how many.
#[derive(Serialize)]
struct BulkChoice {
    value: String,
    label: String,
    count: usize,
}

#[derive(Serialize)]
struct ReviewPage {
    campaign: CampaignView,
    reviewer: ReviewerView,
    items: Vec<ItemView>,
    csrf: String,
    action: String,
    bulk_action: String,
    delegate_action: String,
    bulk_people: Vec<BulkChoice>,
    bulk_groups: Vec<BulkChoice>,
    /// The range a temporary approval's end date may take.
    until_min: String,
    until_max: String,
    total: usize,
    decided: usize,
    pending: usize,
    flash: Option<String>,
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
    let (bulk_people, bulk_groups) = bulk_choices(&items);
    let today = state.clock.now().date_naive();
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
                stage: i.stage,
                approved_until: i
                    .approved_until
                    .map(|t| from_db(t).format("%Y-%m-%d").to_string()),
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
        bulk_action: format!("/r/{token}/decide-all"),
        delegate_action: format!("/r/{token}/delegate"),
        bulk_people,
        bulk_groups,
        until_min: (today + chrono::Duration::days(1)).to_string(),
        until_max: (today + chrono::Duration::days(MAX_APPROVE_UNTIL_DAYS)).to_string(),
        total,
        decided: total - pending,
        pending,
        flash: flash(&query),
    };
    let mut response = state.pages.render(StatusCode::OK, "review.html", page);
    if existing.is_none()
        && let Err(e) = response.add_cookie(&session_cookie(&state, session_id))
    {
        tracing::error!(error = %e, "cannot set review session cookie");
    }
    response
}

/// What the page says after a post redirected back to it.
fn flash(query: &ReviewQuery) -> Option<String> {
    let plural = |n: usize| if n == 1 { "access" } else { "accesses" };
    if let Some(moved) = query.moved {
        let mut text = format!("{moved} {} passed on. Thank you.", plural(moved));
        if let Some(stuck) = query.stuck.filter(|n| *n > 0) {
            text.push_str(&format!(
                " {stuck} {} stayed with you: that person holds them or is reviewed by their \
                 holder.",
                plural(stuck)
            ));
        }
        return Some(text);
    }
    if let Some(decided) = query.decided {
        return Some(match decided {
            0 => "Nothing was left to decide there.".to_string(),
            n => format!("Saved {n} {}. Thank you.", plural(n)),
        });
    }
    query
        .done
        .as_deref()
        .map(|_| "Saved. Thank you.".to_string())
}

/// The people and groups among the reviewer's undecided items, for the bulk form.
fn bulk_choices(items: &[ReviewItem]) -> (Vec<BulkChoice>, Vec<BulkChoice>) {
    let mut people: BTreeMap<(String, String), (String, usize)> = BTreeMap::new();
    let mut groups: BTreeMap<(String, String), usize> = BTreeMap::new();
    for item in items.iter().filter(|i| i.state == ITEM_PENDING) {
        let person = (
            item.identity_name.clone(),
            item.identity_external_id.clone(),
        );
        people
            .entry(person)
            .or_insert_with(|| (item.identity_login.clone(), 0))
            .1 += 1;
        *groups
            .entry((
                item.entitlement_name.clone(),
                item.entitlement_external_id.clone(),
            ))
            .or_default() += 1;
    }
    let people = people
        .into_iter()
        .map(|((name, id), (login, count))| BulkChoice {
            value: format!("person:{id}"),
            label: format!("{name} ({login})"),
            count,
        })
        .collect();
    let groups = groups
        .into_iter()
        .map(|((name, id), count)| BulkChoice {
            value: format!("group:{id}"),
            label: name,
            count,
        })
        .collect();
    (people, groups)
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
    let (claims, campaign, reviewer) = match authenticate(state, token).await {
        Ok(found) => found,
        Err(e) => return Err(error_page(state, &e)),
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
        tracing::warn!(reviewer = %reviewer.id, "post refused: missing or wrong CSRF token");
        return Err(error_page(state, &Error::Csrf));
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
    Ok(VerifiedPost {
        campaign,
        reviewer,
        auth,
    })
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
    let post = match verify_post(&state, &request, &token, form.csrf.as_deref()).await {
        Ok(post) => post,
        Err(page) => return page,
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
    let VerifiedPost {
        campaign,
        reviewer,
        auth,
    } = post;
    let decision = DecisionRequest {
        campaign_id: campaign.id.clone(),
        reviewer_id: reviewer.id.clone(),
        item_id: item_id.clone(),
        outcome,
        comment: form.comment.clone(),
        approved_until,
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
