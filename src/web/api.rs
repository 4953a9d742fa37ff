//! `/api/v1`: what auditors (and admins) reach with an API token: the campaigns, and each
//! campaign's evidence pack, built when asked, signed, recorded as an export by that token,
//! and streamed from a private temporary file (one build at a time per instance); plus the
//! evidence public key, which anyone may fetch to check a pack against the service rather
//! than against the pack itself.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::auth::Role;
use crate::campaigns::lifecycle::list_campaigns;
use crate::db::time::from_db;
use crate::web::AppState;
use crate::web::evidence_download::{PackRefused, pack_response};
use crate::web::staff::{Refused, bearer};

/// Who may read campaigns and download evidence.
const READERS: [Role; 2] = [Role::Auditor, Role::Admin];

/// The verifier key (`origin+id+key`) that checks every pack and checkpoint of this service.
pub async fn public_key(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}\n", state.evidence_key.verifier_key()))
}

/// Every campaign that has opened, newest first, with its progress.
pub async fn campaigns(state: web::Data<AppState>, request: HttpRequest) -> HttpResponse {
    if let Err(refused) = bearer(&state, &request, &READERS).await {
        return refused.response();
    }
    let listed = state.db.run(list_campaigns).await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => return Refused::Failed(e).response(),
    };
    let time =
        |t: chrono::NaiveDateTime| from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let campaigns: Vec<serde_json::Value> = listed
        .into_iter()
        .map(|s| {
            json!({
                "id": s.campaign.id,
                "definition": s.campaign.definition,
                "title": s.campaign.title,
                "source": s.campaign.source,
                "state": s.campaign.state,
                "opened_at": time(s.campaign.opened_at),
                "due_at": time(s.campaign.due_at),
                "closed_at": s.campaign.closed_at.map(time),
                "items": s.items,
                "approved": s.approved,
                "revoked": s.revoked,
                "pending": s.pending,
                "no_response": s.no_response,
                "evidence": format!("/api/v1/campaigns/{}/evidence", s.campaign.id),
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({ "campaigns": campaigns }))
}

/// The campaign's evidence pack, built now.
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
