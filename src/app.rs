//! Assembles a running attest: database, link signer, templates, the HTTP server and the
//! outbox worker. `App::build` binds the listener (port 0 picks a free port, as tests do) and
//! reports the real address; `run_until_stopped` serves until the server stops, then stops
//! the worker.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App as ActixApp, HttpServer, dev::ServerHandle, middleware, web};
use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::{Notify, watch};

use crate::clock::SharedClock;
use crate::config::Config;
use crate::config::governing::{fingerprint, governing_settings};
use crate::db::{Database, DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::jobs::Scheduler;
use crate::ledger::checkpoint::CheckpointKey;
use crate::ledger::events::last_of_kind;
use crate::ledger::{EventKind, append};
use crate::notify::{LinkSigner, MailTemplates, OutboxWorker};
use crate::web::{AppState, access_log, pages::Pages, routes};

pub struct App {
    port: u16,
    public_url: String,
    server: actix_web::dev::Server,
    worker: OutboxWorker,
    scheduler: Option<Scheduler>,
    run_background_workers: bool,
    wake: Arc<Notify>,
    db: Database,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// Records the settings this instance starts with, and whether they differ from the last
/// instance's.
fn record_config_loaded(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    settings: &serde_json::Value,
) -> Result<()> {
    let fingerprint = fingerprint(settings);
    write_tx(conn, |conn| {
        let previous = last_of_kind(conn, EventKind::ConfigLoaded)?
            .and_then(|e| serde_json::from_str::<serde_json::Value>(&e.payload).ok())
            .and_then(|p| p["fingerprint"].as_str().map(str::to_string));
        append(
            conn,
            now,
            EventKind::ConfigLoaded,
            "serve",
            None,
            &json!({
                "fingerprint": fingerprint,
                "changed": previous.as_deref() != Some(fingerprint.as_str()),
                "version": env!("CARGO_PKG_VERSION"),
                "settings": settings,
            }),
        )?;
        Ok(())
    })
}

impl App {
    /// Validates the config, connects and migrates the database, and binds the listener.
    pub async fn build(mut config: Config, clock: SharedClock) -> Result<App> {
        config.validate()?;
        let db_config = config.database.clone();
        let settings = governing_settings(&config);
        let started_at = clock.now();
        let db = tokio::task::spawn_blocking(move || -> Result<Database> {
            let db = Database::connect(&db_config)?;
            db.migrate()?;
            record_config_loaded(&mut *db.conn()?, started_at, &settings)?;
            Ok(db)
        })
        .await
        .map_err(|e| Error::Internal(format!("startup task failed: {e}")))??;

        let listener = TcpListener::bind(&config.server.bind).map_err(|e| {
            Error::Io(format!(
                "server.bind: cannot listen on {}: {e}",
                config.server.bind
            ))
        })?;
        let address = listener.local_addr()?;
        if config.server.public_url.is_empty() {
            config.server.public_url = format!("http://{address}");
        }
        let public_url = config.server.public_url.trim_end_matches('/').to_string();

        let signer = Arc::new(LinkSigner::from_config(&config.links)?);
        let evidence_key = Arc::new(CheckpointKey::from_config(&config.evidence)?);
        let templates = Arc::new(MailTemplates::load(&config.mail.templates_dir)?);
        let worker = OutboxWorker::new(
            &config,
            db.clone(),
            clock.clone(),
            signer.clone(),
            templates,
        )?;
        let demo_enabled = config.demo.enabled;
        let scheduler = config
            .scheduler
            .enabled
            .then(|| Scheduler::new(db.clone(), clock.clone(), Arc::new(config.clone())));
        let sign_ins = Arc::new(crate::web::sign_in_limit::SignInLimiter::new(
            config.auth.sign_ins_per_minute,
            clock.clone(),
        ));
        let state = web::Data::new(AppState {
            csrf_key: signer.derived_key("review-csrf"),
            config: Arc::new(config),
            db: db.clone(),
            clock,
            signer,
            pages: Pages::new().map_err(|e| Error::Template(e.to_string()))?,
            evidence_key,
            evidence_builds: tokio::sync::Semaphore::new(1),
            campaign_generations: Arc::new(tokio::sync::Semaphore::new(1)),
            provider: Arc::default(),
            sign_ins,
        });
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4));
        let server = HttpServer::new(move || {
            ActixApp::new()
                .wrap(middleware::Compress::default())
                .wrap(middleware::from_fn(access_log::log_request))
                .app_data(state.clone())
                .configure(|cfg| routes(cfg, demo_enabled))
        })
        .workers(workers)
        .listen(listener)?
        .run();
        Ok(App {
            port: address.port(),
            public_url,
            server,
            worker,
            scheduler,
            run_background_workers: true,
            wake: Arc::new(Notify::new()),
            db,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL reviewers are sent to (configured, or derived from the bound address).
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn outbox_worker(&self) -> OutboxWorker {
        self.worker.clone()
    }

    pub fn server_handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves HTTP only: mail and scheduled work are left to other instances (or, in tests,
    /// to the caller, who drives [`App::outbox_worker`] and the scheduler itself so that
    /// nothing else claims the same rows).
    pub fn without_background_workers(mut self) -> App {
        self.run_background_workers = false;
        self
    }

    /// Serves HTTP and runs the outbox worker until the server stops (signal or handle).
    pub async fn run_until_stopped(self) -> Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let background = self.run_background_workers;
        let worker =
            background.then(|| tokio::spawn(self.worker.run(stop_rx.clone(), self.wake.clone())));
        let scheduler = self
            .scheduler
            .filter(|_| background)
            .map(|scheduler| tokio::spawn(scheduler.run(stop_rx)));
        let served = self.server.await;
        let _ = stop_tx.send(true);
        if let Some(scheduler) = scheduler {
            let _ = scheduler.await;
        }
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        served.map_err(|e| Error::Io(format!("server stopped with an error: {e}")))
    }
}
