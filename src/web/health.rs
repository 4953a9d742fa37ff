//! Liveness, readiness and the one stylesheet.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::web::AppState;
use crate::web::pages::APP_CSS;

/// The process is up and serving.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// The database answers; load balancers may route traffic here.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let checked = state
        .db
        .run(|conn| {
            use diesel::connection::SimpleConnection;
            conn.batch_execute("SELECT 1")?;
            Ok(())
        })
        .await;
    match checked {
        Ok(()) => HttpResponse::Ok().json(json!({ "status": "ready" })),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .json(json!({ "status": "unavailable", "code": e.code() }))
        }
    }
}

pub async fn app_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "public, max-age=3600"))
        .body(APP_CSS)
}
