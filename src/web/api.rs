//! `/api/v1`: what auditors and admins reach with an API token: the campaigns (their items
//! and decisions page by page are in `api_items`), each campaign's evidence pack (built when asked, signed, recorded as an export by that token,
//! streamed from a private temporary file, one build at a time per instance), and the
//! sources with their sync runs; plus the evidence public key, which anyone may fetch to
//! check a pack against the service rather than against the pack itself. Every route is
//! described in the OpenAPI document (`web::openapi`).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Role;
use crate::campaigns::lifecycle::list_campaigns;
use crate::db::time::from_db;
use crate::directory::snapshot::{source_freshness, sync_runs_of};
use crate::error::Error;
use crate::web::AppState;
use crate::web::evidence_download::{PackRefused, pack_response};
use crate::web::staff::{Refused, bearer};

/// Who may read campaigns, sources and evidence.
const READERS: [Role; 2] = [Role::Auditor, Role::Admin];
/// Sync runs listed per source, newest first.
const SYNC_RUNS_LISTED: usize = 100;

/// An error: a stable code and a message.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    code: String,
    message: String,
}

/// A campaign with its progress.
#[derive(Serialize, ToSchema)]
pub struct CampaignEntry {
    id: String,
    definition: String,
    title: String,
    source: String,
    /// `open` or `closed`.
    state: String,
    opened_at: String,
    due_at: String,
    closed_at: Option<String>,
    items: i64,
    approved: i64,
    revoked: i64,
    pending: i64,
    /// Items nobody decided before close (the no-response policy applied).
    no_response: i64,
    /// Where its evidence pack is downloaded.
    evidence: String,
}

#[derive(Serialize, ToSchema)]
pub struct CampaignList {
    campaigns: Vec<CampaignEntry>,
}

/// A configured source and how fresh its snapshot is.
#[derive(Serialize, ToSchema)]
pub struct SourceEntry {
    name: String,
    /// `ldap`, `ldif`, `oidc`, `csv`.
    kind: String,
    /// When the sync whose snapshot is current finished; none if it never synced.
    current_snapshot_at: Option<String>,
    /// How the latest finished sync ended (`succeeded`, `failed`).
    latest_sync_status: Option<String>,
    sync_runs: String,
}

#[derive(Serialize, ToSchema)]
pub struct SourceList {
    sources: Vec<SourceEntry>,
}

/// One sync run: when, what it read, and how it ended.
#[derive(Serialize, ToSchema)]
pub struct SyncRunEntry {
    id: String,
    seq: i64,
    status: String,
    started_at: String,
    finished_at: Option<String>,
    identities: i64,
    entitlements: i64,
    grants: i64,
    unresolved_members: i64,
    error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncRunList {
    source: String,
    sync_runs: Vec<SyncRunEntry>,
}

fn time(t: chrono::NaiveDateTime) -> String {
    from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The verifier key (`origin+id+key`) that checks every pack and checkpoint of this service.
#[utoipa::path(
    get,
    path = "/api/v1/evidence/public-key",
    tag = "evidence",
    responses((status = 200, description = "The verifier key, one line", body = String, content_type = "text/plain"))
)]
pub async fn public_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}\n", state.evidence_key.verifier_key()))
}

/// Every campaign that has opened, newest first, with its progress.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns",
    tag = "campaigns",
    security(("bearer" = [])),
    responses(
        (status = 200, body = CampaignList),
        (status = 401, description = "No valid API token", body = ApiError),
    )
)]
pub async fn campaigns(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refused) = bearer(&state, &request, &READERS).await {
        return refused.response();
    }
    let listed = match state.db.run(list_campaigns).await {
        Ok(listed) => listed,
        Err(e) => return Refused::Failed(e).response(),
    };
    let campaigns = listed
        .into_iter()
        .map(|s| CampaignEntry {
            evidence: format!("/api/v1/campaigns/{}/evidence", s.campaign.id),
            id: s.campaign.id,
            definition: s.campaign.definition,
            title: s.campaign.title,
            source: s.campaign.source,
            state: s.campaign.state,
            opened_at: time(s.campaign.opened_at),
            due_at: time(s.campaign.due_at),
            closed_at: s.campaign.closed_at.map(time),
            items: s.items,
            approved: s.approved,
            revoked: s.revoked,
            pending: s.pending,
            no_response: s.no_response,
        })
        .collect();
    HttpResponse::Ok().json(CampaignList { campaigns })
}

/// The campaign's evidence pack (zip), built now and recorded as this token's export.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}/evidence",
    tag = "evidence",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The campaign's id")),
    responses(
        (status = 200, description = "The signed evidence pack", content_type = "application/zip", body = Vec<u8>),
        (status = 401, description = "No valid API token", body = ApiError),
        (status = 404, description = "No such campaign", body = ApiError),
        (status = 503, description = "Another pack is being built; see Retry-After", body = ApiError),
    )
)]
pub async fn evidence(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let token = match bearer(&state, &request, &READERS).await {
        Ok(token) => token,
        Err(refused) => return refused.response(),
    };
    match pack_response(&state, path.into_inner(), format!("api_token:{}", token.id)).await {
        Ok(response) => response,
        Err(PackRefused::Busy) => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "30"))
            .json(json!({
                "code": "busy",
                "message": "another evidence pack is being built; try again shortly",
            })),
        Err(PackRefused::Failed(e)) => Refused::Failed(e).response(),
    }
}

/// The configured sources, with how fresh each one's snapshot is.
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "sources",
    security(("bearer" = [])),
    responses(
        (status = 200, body = SourceList),
        (status = 401, description = "No valid API token", body = ApiError),
    )
)]
pub async fn sources(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refused) = bearer(&state, &request, &READERS).await {
        return refused.response();
    }
    let configured: Vec<(String, String)> = state
        .config
        .sources
        .iter()
        .map(|(name, source)| (name.clone(), source.kind().to_string()))
        .collect();
    let read = state
        .db
        .run(move |conn| {
            configured
                .into_iter()
                .map(|(name, kind)| {
                    let fresh = source_freshness(conn, &name)?;
                    Ok(SourceEntry {
                        sync_runs: format!("/api/v1/sources/{name}/sync-runs"),
                        name,
                        kind,
                        current_snapshot_at: fresh.current_finished_at.map(time),
                        latest_sync_status: fresh.latest_status,
                    })
                })
                .collect::<crate::error::Result<Vec<_>>>()
        })
        .await;
    match read {
        Ok(sources) => HttpResponse::Ok().json(SourceList { sources }),
        Err(e) => Refused::Failed(e).response(),
    }
}

/// A source's latest sync runs, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/sources/{name}/sync-runs",
    tag = "sources",
    security(("bearer" = [])),
    params(("name" = String, Path, description = "The source's name in the configuration")),
    responses(
        (status = 200, body = SyncRunList),
        (status = 401, description = "No valid API token", body = ApiError),
        (status = 404, description = "No such source", body = ApiError),
    )
)]
pub async fn sync_runs(
    state: web::Data<AppState>,
    request: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    if let Err(refused) = bearer(&state, &request, &READERS).await {
        return refused.response();
    }
    let source = path.into_inner();
    if !state.config.sources.contains_key(&source) {
        return Refused::Failed(Error::NotFound(format!("source {source} not found"))).response();
    }
    let name = source.clone();
    let read = state.db.run(move |conn| sync_runs_of(conn, &name)).await;
    let runs = match read {
        Ok(runs) => runs,
        Err(e) => return Refused::Failed(e).response(),
    };
    let mut runs: Vec<SyncRunEntry> = runs
        .into_iter()
        .map(|r| SyncRunEntry {
            id: r.id,
            seq: r.seq,
            status: r.status,
            started_at: time(r.started_at),
            finished_at: r.finished_at.map(time),
            identities: r.identities,
            entitlements: r.entitlements,
            grants: r.grants,
            unresolved_members: r.unresolved_members,
            error: r.error,
        })
        .collect();
    runs.truncate(SYNC_RUNS_LISTED);
    HttpResponse::Ok().json(SyncRunList {
        source,
        sync_runs: runs,
    })
}
