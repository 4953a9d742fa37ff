//! A campaign's evidence pack as a download, for the API and the console alike: built on
//! request (one build at a time per instance; another caller is told to come back), recorded
//! as an export by who asked, and streamed from a private temporary file whose directory is
//! gone before the first byte is sent.

use std::sync::Arc;

use actix_web::HttpResponse;
use actix_web::http::header;

use crate::error::Error;
use crate::evidence::export::{PackSettings, export_campaign};
use crate::web::AppState;

/// Why no pack is sent.
pub enum PackRefused {
    /// Another pack is being built; try again after a while.
    Busy,
    Failed(Error),
}

/// Builds the pack of `campaign_id` for `actor` (e.g. `api_token:ID`, `staff:ID`).
pub async fn pack_response(
    state: &AppState,
    campaign_id: String,
    actor: String,
) -> Result<HttpResponse, PackRefused> {
    if uuid::Uuid::parse_str(&campaign_id).is_err() {
        return Err(PackRefused::Failed(Error::NotFound(format!(
            "campaign {campaign_id} not found"
        ))));
    }
    let Ok(_building) = state.evidence_builds.try_acquire() else {
        return Err(PackRefused::Busy);
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
    let (file, bytes) = built.map_err(PackRefused::Failed)?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"attest-evidence-{campaign_id}.zip\""),
        ))
        .insert_header((header::CONTENT_LENGTH, bytes))
        // Already compressed: the server's gzip would only cost time and the length.
        .insert_header((header::CONTENT_ENCODING, "identity"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(stream))
}
