//! The HTTP shell around the spine: routes, shared state, pages and the mapping of errors to
//! responses. Handlers parse input, call into the spine on blocking threads and render the
//! result; the spine never imports this module.

pub mod access_log;
pub mod api;
pub mod api_actions;
pub mod api_items;
pub mod console;
mod console_action;
pub mod console_outbox;
pub mod console_remediation;
pub mod console_source_test;
pub mod console_sources;
pub mod console_staff;
pub mod csrf;
pub mod demo;
pub mod error_response;
pub mod evidence_download;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod review;
pub mod review_actions;
mod review_items_view;
pub mod review_page;
pub mod review_sign_in;
pub mod sign_in_limit;
pub mod staff;
pub mod staff_link;
pub mod staff_sign_in;

use std::sync::Arc;

use actix_web::{guard, web};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::db::Database;
use crate::ledger::checkpoint::CheckpointKey;
use crate::notify::LinkSigner;
use crate::web::pages::Pages;

/// Largest form or JSON body accepted (a decision is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Database,
    pub clock: SharedClock,
    pub signer: Arc<LinkSigner>,
    pub csrf_key: [u8; 32],
    pub pages: Pages,
    /// Signs evidence packs built for download; its public half is served.
    pub evidence_key: Arc<CheckpointKey>,
    /// One pack is built at a time per instance: a build holds a database connection and a
    /// long read for its whole run.
    pub evidence_builds: tokio::sync::Semaphore,
    /// One campaign is generated at a time per instance through the API: a generation holds a
    /// blocking thread and a connection for its whole run, and on SQLite takes the write lock
    /// in turns with every other writer.
    pub campaign_generations: Arc<tokio::sync::Semaphore>,
    /// The staff identity provider, discovered once per `PROVIDER_TTL`.
    pub provider: Arc<crate::auth::provider_cache::ProviderCache>,
    /// Sign-in starts per address (`auth.sign_ins_per_minute`).
    pub sign_ins: Arc<sign_in_limit::SignInLimiter>,
}

pub fn routes(cfg: &mut web::ServiceConfig, demo_enabled: bool) {
    cfg.app_data(web::FormConfig::default().limit(MAX_BODY_BYTES))
        .app_data(web::JsonConfig::default().limit(MAX_BODY_BYTES))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::metrics))
        .route("/static/app.css", web::get().to(health::app_css))
        .route(
            "/api/v1/evidence/public-key",
            web::get().to(api::public_key),
        )
        .route("/api/v1/campaigns", web::get().to(api::campaigns))
        .route(
            "/api/v1/campaigns/{id}/items",
            web::get().to(api_items::items),
        )
        .route(
            "/api/v1/campaigns/{id}/decisions",
            web::get().to(api_items::decisions),
        )
        .route(
            "/api/v1/campaigns/{id}/close",
            web::post().to(api_actions::close),
        )
        .route(
            "/api/v1/definitions/{name}/campaigns",
            web::post().to(api_actions::open),
        )
        .route("/api/v1/sources", web::get().to(api::sources))
        .route(
            "/api/v1/sources/{name}/sync",
            web::post().to(api_actions::sync),
        )
        .route(
            "/api/v1/sources/{name}/sync-runs",
            web::get().to(api::sync_runs),
        )
        .route("/api/openapi.json", web::get().to(openapi::document))
        .route("/auth/login", web::get().to(staff_sign_in::login))
        .route("/auth/callback", web::get().to(staff_sign_in::callback))
        .route("/auth/logout", web::post().to(staff_sign_in::logout))
        .route("/auth/link", web::get().to(staff_link::page))
        .route("/auth/link", web::post().to(staff_link::sign_in))
        .route("/console", web::get().to(console::home))
        .route(
            "/console/campaigns/{id}",
            web::get().to(console::campaign_progress),
        )
        .route(
            "/console/campaigns/{id}/evidence",
            web::post().to(console::evidence),
        )
        .route(
            "/console/campaigns/{id}/close",
            web::post().to(console::close),
        )
        .route("/console/outbox", web::get().to(console_outbox::page))
        .route("/console/sources", web::get().to(console_sources::page))
        .route("/console/staff", web::get().to(console_staff::page))
        .route(
            "/console/tokens",
            web::post().to(console_staff::issue_token),
        )
        .route(
            "/console/tokens/{id}/revoke",
            web::post().to(console_staff::revoke_token),
        )
        .route(
            "/console/sources/{name}/sync",
            web::post().to(console_sources::sync_now),
        )
        .route(
            "/console/sources/{name}/test",
            web::post().to(console_source_test::test_source),
        )
        .route(
            "/console/outbox/{id}/resend",
            web::post().to(console_outbox::resend),
        )
        .route(
            "/console/remediation",
            web::get().to(console_remediation::page),
        )
        .route(
            "/console/remediation/{id}/done",
            web::post().to(console_remediation::done),
        )
        .route(
            "/console/remediation/{id}/retry",
            web::post().to(console_remediation::try_again),
        )
        .route(
            "/api/v1/campaigns/{id}/evidence",
            web::get().to(api::evidence),
        )
        // HEAD is answered like GET (link checkers and prefetchers send it); neither writes.
        .route(
            "/r/{token}",
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(review_page::show),
        )
        .route("/r/{token}/decide", web::post().to(review::decide))
        .route("/r/{token}/sign-in", web::get().to(review_sign_in::start))
        .route(
            "/r/{token}/decide-all",
            web::post().to(review_actions::decide_all),
        )
        .route(
            "/r/{token}/delegate",
            web::post().to(review_actions::delegate_items),
        );
    if demo_enabled {
        cfg.route("/", web::get().to(demo::index))
            .route("/demo/mail", web::get().to(demo::mailbox))
            .route("/demo/mail/{file}", web::get().to(demo::message));
    }
}
