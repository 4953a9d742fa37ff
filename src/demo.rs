//! `attest demo`: a newcomer's first five minutes with nothing installed. It starts a fresh
//! demo folder (`var/demo/`), loads the embedded Northwind directory from an LDIF file, opens a
//! campaign, delivers the digests with the file mailer, and serves the review pages next to a
//! demo mailbox. It uses the same spine as production; only the configuration differs:
//! the embedded `config/demo.toml`, with a `--config` file and `ATTEST__` variables on top.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::app::App;
use crate::campaigns::start_campaign;
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, MailTransport, SourceConfig};
use crate::db::Database;
use crate::directory::sync_source;
use crate::error::{ConfigProblem, Error, Result};

pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
pub const DEMO_DIRECTORY: &str = include_str!("../config/demo/directory.ldif");
const DEMO_SOURCE: &str = "northwind";
const DEMO_CAMPAIGN: &str = "quarterly-access-review";

/// Marks a folder as the demo's own, so that a later run may wipe it.
const DEMO_MARKER: &str = ".attest-demo";
/// The folder of the built-in demo configuration.
const BUILT_IN_FOLDER: &str = "var/demo";

/// The demo configuration: the embedded file, then `overrides` (the `--config` file), then
/// environment variables.
pub fn demo_config(overrides: Option<&Path>) -> Result<Config> {
    Config::from_toml_str(DEMO_CONFIG, overrides)
}

/// Prepares the demo data and returns the app, ready to serve, with the mail delivered.
pub async fn prepare(mut config: Config, clock: SharedClock) -> Result<App> {
    let directory_file = demo_directory_file(&config)?;
    let folder = match directory_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The demo signs its evidence with a key of its own, in its own folder.
    config.evidence.signing_key_file = folder.join("evidence-signing.key");
    let mut problems = self_containment_problems(&config, &folder);
    problems.extend(config.problems());
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }
    reset_folder(&folder, &demo_file_names(&config))?;
    std::fs::write(&directory_file, DEMO_DIRECTORY)?;
    let app = App::build(config.clone(), clock.clone()).await?;
    let db: Database = app.database().clone();
    let setup_clock = clock.clone();
    let started = tokio::task::spawn_blocking(move || {
        let source = config.source(DEMO_SOURCE)?;
        let synced = sync_source(&db, setup_clock.as_ref(), DEMO_SOURCE, source, "demo")?;
        println!(
            "Loaded the Northwind directory: {} people, {} groups, {} accesses.",
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

/// Where the demo writes its directory; that file's folder is the demo's own.
fn demo_directory_file(config: &Config) -> Result<PathBuf> {
    match config.sources.get(DEMO_SOURCE) {
        Some(SourceConfig::Ldif(ldif)) => Ok(ldif.path.clone()),
        _ => Err(Error::Config(vec![ConfigProblem::new(
            &format!("sources.{DEMO_SOURCE}"),
            "the demo loads its own directory from an LDIF file; keep kind = \"ldif\"",
        )])),
    }
}

/// The demo must not touch anything real: its database lives in its own folder (which it
/// empties on every run) and its mail goes to files, whatever a `--config` file says.
fn self_containment_problems(config: &Config, folder: &Path) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let database_inside = config
        .database
        .url
        .strip_prefix("sqlite://")
        .is_some_and(|path| Path::new(path).starts_with(folder));
    if !database_inside {
        problems.push(ConfigProblem::new(
            "database.url",
            format!(
                "the demo keeps its SQLite database in its own folder {}, which it empties on \
                 every run; use sqlite://{}/attest.db",
                folder.display(),
                folder.display()
            ),
        ));
    }
    if config.mail.transport != MailTransport::File {
        problems.push(ConfigProblem::new(
            "mail.transport",
            "the demo writes mail to files only; leave mail.transport out of the demo's config",
        ));
    }
    problems
}

/// Names of what the demo itself writes (database, key, mail folder, directory file), for
/// recognising a demo folder made before the marker existed.
fn demo_file_names(config: &Config) -> Vec<String> {
    let database = config
        .database
        .url
        .strip_prefix("sqlite://")
        .map(Path::new)
        .and_then(Path::file_name);
    let mut names = vec![DEMO_MARKER.to_string()];
    let paths = [
        config
            .links
            .signing_key_file
            .as_deref()
            .and_then(Path::file_name),
        config.mail.file_dir.file_name(),
        config.evidence.signing_key_file.file_name(),
        database,
    ];
    if let Some(SourceConfig::Ldif(ldif)) = config.sources.get(DEMO_SOURCE) {
        names.extend(
            ldif.path
                .file_name()
                .map(|n| n.to_string_lossy().to_string()),
        );
    }
    for name in paths.into_iter().flatten() {
        names.push(name.to_string_lossy().to_string());
    }
    if let Some(db) = database {
        let db = db.to_string_lossy();
        names.extend(["-wal", "-shm", "-journal"].map(|suffix| format!("{db}{suffix}")));
    }
    names
}

/// Starts the demo folder afresh so that every run shows the same first experience. Only a
/// folder the demo made (it holds the marker file) or an empty one is wiped; so is the built-in
/// `var/demo` when it holds nothing but what an older demo wrote there. Anything else is
/// refused rather than emptied.
fn reset_folder(folder: &Path, demo_names: &[String]) -> Result<()> {
    if folder.exists() {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(folder)? {
            entries.push(entry?.file_name().to_string_lossy().to_string());
        }
        let made_by_demo = folder.join(DEMO_MARKER).exists();
        let older_demo = folder == Path::new(BUILT_IN_FOLDER)
            && entries.iter().all(|name| demo_names.contains(name));
        if !(entries.is_empty() || made_by_demo || older_demo) {
            let mut found = entries;
            found.sort();
            return Err(Error::Io(format!(
                "the demo starts afresh in {} on every run, but that folder holds files the demo \
                 did not make ({}); point sources.{DEMO_SOURCE}.path at a file in an empty \
                 folder",
                folder.display(),
                found.join(", ")
            )));
        }
        std::fs::remove_dir_all(folder).map_err(|e| {
            Error::Io(format!(
                "cannot reset demo folder {}: {e}",
                folder.display()
            ))
        })?;
    }
    std::fs::create_dir_all(folder)?;
    std::fs::write(
        folder.join(DEMO_MARKER),
        "Made by `attest demo`, which empties this folder on every run.\n",
    )?;
    Ok(())
}

/// Runs the demo with `config` (see [`demo_config`]) until interrupted.
pub async fn run(config: Config) -> Result<()> {
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
