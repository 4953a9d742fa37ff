//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the token-authenticated API,
//! generated from the handlers' annotations (`utoipa`), so that it cannot drift from the
//! routes it describes.

use actix_web::HttpResponse;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::web::{api, api_actions, api_items, metrics};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "attest API",
        description = "Access reviews: campaigns, evidence packs, sources and metrics. Send an \
                       API token (`attest token create`) as `Authorization: Bearer ...`; \
                       auditors' tokens read, admins' tokens also open and close campaigns \
                       and queue syncs."
    ),
    paths(
        api::campaigns,
        api_actions::open,
        api_actions::close,
        api_items::items,
        api_items::decisions,
        api::evidence,
        api::public_key,
        api::sources,
        api::sync_runs,
        api_actions::sync,
        metrics::metrics
    ),
    modifiers(&BearerToken),
    tags(
        (name = "campaigns", description = "Review campaigns and their progress"),
        (name = "evidence", description = "Signed evidence packs and the key that checks them"),
        (name = "sources", description = "Directories and their sync runs"),
        (name = "operations", description = "Monitoring"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme the paths refer to.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

pub async fn document() -> HttpResponse {
    match ApiDoc::openapi().to_json() {
        Ok(json) => HttpResponse::Ok()
            .content_type("application/json")
            .body(json),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise the OpenAPI document");
            HttpResponse::InternalServerError().finish()
        }
    }
}
