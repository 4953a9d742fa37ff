//! `attest demo`: a newcomer's first five minutes with nothing installed. It starts a fresh
//! demo folder (`var/demo/`), loads the embedded Northwind directory from an LDIF file, opens a
//! campaign, delivers the digests with the file mailer, and serves the review pages next to a
//! demo mailbox. It uses the same spine as production; only the configuration differs.

use std::path::Path;
use std::sync::Arc;

use crate::app::App;
use crate::campaigns::start_campaign;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, SourceConfig};
use crate::db::Database;
use crate::directory::sync_source;
use crate::error::{Error, Result};

pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
pub const DEMO_DIRECTORY: &str = include_str!("../config/demo/directory.ldif");
const DEMO_SOURCE: &str = "northwind";
const DEMO_CAMPAIGN: &str = "quarterly-access-review";

/// The demo configuration (embedded file plus environment overrides).
pub fn demo_config() -> Result<Config> {
    Config::from_toml_str(DEMO_CONFIG)
}

/// Prepares the demo data and returns the app, ready to serve, with the mail delivered.
pub async fn prepare(config: Config, clock: SharedClock) -> Result<App> {
    if let Some(SourceConfig::Ldif(ldif)) = config.sources.get(DEMO_SOURCE) {
        reset_folder(ldif.path.parent().unwrap_or(Path::new("var/demo")))?;
        std::fs::write(&ldif.path, DEMO_DIRECTORY)?;
    }
    let app = App::build(config.clone(), clock.clone()).await?;
    let db: Database = app.database().clone();
    let setup_clock = clock.clone();
    let started = tokio::task::spawn_blocking(move || {
        let source = config.source(DEMO_SOURCE)?;
        let synced = sync_source(&db, setup_clock.as_ref(), DEMO_SOURCE, source, "demo")?;
        println!(
            "Loaded the Northwind directory: {} people, {} groups, {} memberships.",
            synced.identities, synced.entitlements, synced.grants
        );
        start_campaign(
            &db,
            setup_clock.as_ref(),
            &config,
            DEMO_CAMPAIGN,
            true,
            "demo",
        )
    })
    .await
    .map_err(|e| Error::Internal(format!("demo setup failed: {e}")))??;
    println!(
        "Opened \"{}\": {} accesses to review by {} managers.",
        started.campaign.title, started.items, started.reviewers
    );
    let worker = app.outbox_worker();
    while worker.drain_once().await? > 0 {}
    Ok(app)
}

/// Starts the demo folder afresh so that every run shows the same first experience.
fn reset_folder(folder: &Path) -> Result<()> {
    if folder.exists() {
        std::fs::remove_dir_all(folder).map_err(|e| {
            Error::Io(format!(
                "cannot reset demo folder {}: {e}",
                folder.display()
            ))
        })?;
    }
    std::fs::create_dir_all(folder)?;
    Ok(())
}

/// Runs the demo until interrupted.
pub async fn run() -> Result<()> {
    let config = demo_config()?;
    let clock: SharedClock = Arc::new(SystemClock);
    let app = prepare(config, clock).await?;
    let url = app.public_url().to_string();
    println!();
    println!("attest demo is running. Open the demo mailbox and click into a review:");
    println!();
    println!("    {url}/demo/mail");
    println!();
    println!("Data lives in var/demo/ (started fresh each run). Press Ctrl-C to stop.");
    app.run_until_stopped().await
}
