//! `/api/v1`: what auditors (and admins) reach with an API token: the campaigns, and each
//! campaign's evidence pack, built when asked, signed, recorded as an export by that token,
//! and streamed from a private temporary file (one build at a time per instance); plus the
//! evidence public key, which anyone may fetch to check a pack against the service rather
//! than against the pack itself.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::auth::Role;
use crate::campaigns::lifecycle::list_campaigns;
use crate::db::time::from_db;
use crate::error::Error;
use crate::evidence::export::{PackSettings, export_campaign};
use crate::web::AppState;
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
    let campaign_id = path.into_inner();
    if uuid::Uuid::parse_str(&campaign_id).is_err() {
        return Refused::Failed(Error::NotFound(format!("campaign {campaign_id} not found")))
            .response();
    }
    let Ok(_building) = state.evidence_builds.try_acquire() else {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "30"))
            .json(json!({
                "code": "busy",
                "message": "another evidence pack is being built; try again shortly",
            }));
    };
    let key = Arc::clone(&state.evidence_key);
    let retention_years = state.config.evidence.retention_years;
    let now = state.clock.now();
    let id = campaign_id.clone();
    let built = state
        .db
        .run(move |conn| {
            let dir = tempfile::Builder::new()
                .prefix("attest-pack-")
                .tempdir()
                .map_err(|e| Error::Io(format!("cannot create a temporary directory: {e}")))?;
            let out = dir.path().join("pack.zip");
            let settings = PackSettings {
                key: &key,
                retention_years,
            };
            let actor = format!("api_token:{}", token.id);
            export_campaign(conn, now, &id, &out, settings, &actor)?;
            // Opened, then the directory removed: the open file is all that is left.
            let file = std::fs::File::open(&out)
                .map_err(|e| Error::Io(format!("cannot open the pack: {e}")))?;
            let bytes = file
                .metadata()
                .map_err(|e| Error::Io(format!("cannot read the pack's size: {e}")))?
                .len();
            Ok((file, bytes))
        })
        .await;
    let (file, bytes) = match built {
        Ok(built) => built,
        Err(e) => return Refused::Failed(e).response(),
    };
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"attest-evidence-{campaign_id}.zip\""),
        ))
        .insert_header((header::CONTENT_LENGTH, bytes))
        // Already compressed: the server's gzip would only cost time and the length.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .streaming(stream)
}
