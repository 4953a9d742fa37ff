//! `/api/v1`'s write side, for admin tokens only: open the current period's campaign of a
//! definition, close a campaign (with the same breaker as the console and the CLI), and queue
//! a sync of a source for the scheduler. Each action is recorded in the evidence log as the
//! token's (`api_token:ID`) by the spine function it calls, in that function's transaction
//! (a queued sync's start event, when the scheduler runs it);
//! an auditor's token is refused with 403 before anything is read. Errors are the API's JSON
//! (`code`, `message`) with the status the spine's error maps to (404, 409, ...).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ApiToken, Role};
use crate::campaigns::model::campaign;
use crate::campaigns::{CloseRules, close_campaign, start_campaign};
use crate::error::Error;
use crate::jobs::sync_now::request_sync;
use crate::web::AppState;
use crate::web::staff::{Refused, bearer};

/// Who may change anything through the API.
const WRITERS: [Role; 1] = [Role::Admin];

/// A campaign the API opened.
#[derive(Serialize, ToSchema)]
pub struct OpenedCampaign {
    id: String,
    definition: String,
    title: String,
    opened_at: String,
    due_at: String,
    items: i64,
    reviewers: i64,
    /// Where its progress is listed.
    campaigns: String,
}

/// Optional body of a close.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CloseRequest {
    /// Confirms a no-response policy that would revoke more than `max_auto_revoke_share`
    /// of the items (`attest campaign close ID --dry-run` shows which).
    #[serde(default)]
    confirm_revocations: bool,
}

/// A campaign as it closed.
#[derive(Serialize, ToSchema)]
pub struct ClosedCampaign {
    id: String,
    state: String,
    closed_at: Option<String>,
    items: i64,
    approved: i64,
    revoked: i64,
    /// Items nobody decided (the no-response policy applied to them).
    no_response: i64,
}

/// What a sync request did.
#[derive(Serialize, ToSchema)]
pub struct SyncQueued {
    source: String,
    /// False when a sync of this source was already waiting or running (it covers this one).
    queued: bool,
}

fn time(t: chrono::NaiveDateTime) -> String {
    crate::db::time::from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The refusal or failure as the API's JSON.
fn failed(e: Error) -> HttpResponse {
    Refused::Failed(e).response()
}

/// What a path's name is the configuration's key of.
#[derive(Clone, Copy)]
enum Configured {
    Definition,
    Source,
}

/// The request's admin token and the configured name in `path`, or the refusal to answer:
/// 401 or 403 for the token (before anything else is looked at), 404 for the name.
async fn admin_and_configured(
    state: &AppState,
    request: &HttpRequest,
    kind: Configured,
    path: web::Path<String>,
) -> Result<(ApiToken, String), HttpResponse> {
    let token = bearer(state, request, &WRITERS)
        .await
        .map_err(|refused| refused.response())?;
    let name = path.into_inner();
    let (known, noun) = match kind {
        Configured::Definition => (
            state.config.campaigns.contains_key(&name),
            "campaign definition",
        ),
        Configured::Source => (state.config.sources.contains_key(&name), "source"),
    };
    if !known {
        return Err(failed(Error::NotFound(format!("no {noun} named `{name}`"))));
    }
    Ok((token, name))
}

/// Opens the current period's campaign of definition `name` (generating its items can take
/// a while on a large directory); a campaign for the period that already exists is a 409.
#[utoipa::path(
    post,
    path = "/api/v1/definitions/{name}/campaigns",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The campaign definition's key in the configuration")),
    responses(
        (status = 201, body = OpenedCampaign),
        (status = 400, description = "The definition does not match the snapshot (e.g. a named group is missing)", body = crate::web::api::ApiError),
        (status = 401, description = "No valid API token", body = crate::web::api::ApiError),
        (status = 403, description = "The token is not an admin's", body = crate::web::api::ApiError),
        (status = 404, description = "No such definition", body = crate::web::api::ApiError),
        (status = 409, description = "This period's campaign exists, or the source has no snapshot", body = crate::web::api::ApiError),
    )
)]
pub async fn open(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let (token, name) =
        match admin_and_configured(&state, &request, Configured::Definition, path).await {
            Ok(found) => found,
            Err(refused) => return refused,
        };
    let (db, clock, config) = (state.db.clone(), state.clock.clone(), state.config.clone());
    let actor = format!("api_token:{}", token.id);
    let started = tokio::task::spawn_blocking(move || {
        start_campaign(&db, &*clock, &config, &name, false, &actor)
    })
    .await
    .map_err(|e| Error::Internal(format!("campaign generation task failed: {e}")))
    .and_then(|started| started);
    match started {
        Ok(started) => HttpResponse::build(StatusCode::CREATED).json(OpenedCampaign {
            id: started.campaign.id,
            definition: started.campaign.definition,
            title: started.campaign.title,
            opened_at: time(started.campaign.opened_at),
            due_at: time(started.campaign.due_at),
            items: started.items,
            reviewers: started.reviewers,
            campaigns: "/api/v1/campaigns".into(),
        }),
        Err(e) => failed(e),
    }
}

/// Closes an open campaign and applies its no-response policy. A policy that would revoke
/// more than `max_auto_revoke_share` of the items is refused (409) unless the body confirms it.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/close",
    tag = "campaigns",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id")),
    request_body(content = Option<CloseRequest>, content_type = "application/json"),
    responses(
        (status = 200, body = ClosedCampaign),
        (status = 400, description = "The body is not the object described", body = crate::web::api::ApiError),
        (status = 401, description = "No valid API token", body = crate::web::api::ApiError),
        (status = 403, description = "The token is not an admin's", body = crate::web::api::ApiError),
        (status = 404, description = "No such campaign", body = crate::web::api::ApiError),
        (status = 409, description = "Already closed, or revocations above the share need confirming", body = crate::web::api::ApiError),
    )
)]
pub async fn close(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let token = match bearer(&state, &request, &WRITERS).await {
        Ok(token) => token,
        Err(refused) => return refused.response(),
    };
    // An empty body closes with the defaults; anything else must be the JSON object.
    let asked: CloseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        CloseRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(asked) => asked,
            Err(e) => {
                return failed(Error::BadRequest(format!(
                    "the body must be {{\"confirm_revocations\": true|false}}: {e}"
                )));
            }
        }
    };
    let id = path.into_inner();
    if uuid::Uuid::parse_str(&id).is_err() {
        return failed(Error::NotFound(format!("no campaign {id}")));
    }
    let (config, now) = (state.config.clone(), state.clock.now());
    let actor = format!("api_token:{}", token.id);
    let closed = state
        .db
        .run(move |conn| {
            let mut rules = CloseRules::of(&config, &campaign(conn, &id)?);
            if asked.confirm_revocations {
                rules = rules.confirmed();
            }
            close_campaign(conn, now, &id, &rules, &actor)
        })
        .await;
    match closed {
        Ok(summary) => HttpResponse::Ok().json(ClosedCampaign {
            id: summary.campaign.id,
            state: summary.campaign.state,
            closed_at: summary.campaign.closed_at.map(time),
            items: summary.items,
            approved: summary.approved,
            revoked: summary.revoked,
            no_response: summary.no_response,
        }),
        Err(e) => failed(e),
    }
}

/// Queues a sync of the source for the scheduler's next tick (202); one already waiting or
/// running covers the request. Refused (409) when this instance runs no scheduler.
#[utoipa::path(
    post,
    path = "/api/v1/sources/{name}/sync",
    tag = "sources",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The source's name in the configuration")),
    responses(
        (status = 202, body = SyncQueued),
        (status = 401, description = "No valid API token", body = crate::web::api::ApiError),
        (status = 403, description = "The token is not an admin's", body = crate::web::api::ApiError),
        (status = 404, description = "No such source", body = crate::web::api::ApiError),
        (status = 409, description = "The scheduler is off: nothing would run the sync", body = crate::web::api::ApiError),
    )
)]
pub async fn sync(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let (token, name) = match admin_and_configured(&state, &request, Configured::Source, path).await
    {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if !state.config.scheduler.enabled {
        return failed(Error::Conflict(format!(
            "the scheduler is off on this instance, so nothing would run a queued sync; run \
             `attest sync {name}` instead"
        )));
    }
    let (now, actor) = (state.clock.now(), format!("api_token:{}", token.id));
    let source = name.clone();
    match state
        .db
        .run(move |conn| request_sync(conn, now, &source, &actor))
        .await
    {
        Ok(queued) => HttpResponse::Accepted().json(SyncQueued {
            source: name,
            queued,
        }),
        Err(e) => failed(e),
    }
}
