//! The `attest` command line: parses arguments, loads configuration, sets up logging and
//! calls into the library. No business logic lives here.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use attest::app::App;
use attest::clock::{SharedClock, SystemClock};
use attest::config::{Config, LogFormat};
use attest::db::Database;
use attest::directory::preview::preview_source;
use attest::directory::sync_source_observed;
use attest::error::Error;
use attest::evidence::export::{PackSettings, export_campaign};
use attest::web::access_log;
use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "attest",
    version,
    about = "Access reviews end to end, with evidence auditors can verify"
)]
struct Cli {
    /// Configuration file (default: config/default.toml when present). For `demo`, a file
    /// given here is layered on top of the built-in demo configuration.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web UI and API and run the background workers.
    Serve,
    /// Run a self-contained demo: SQLite, a demo directory, a campaign, mail written to files.
    /// `--config FILE` is applied on top of the built-in demo configuration.
    Demo,
    /// Apply pending database migrations.
    Migrate,
    /// Check the configuration and print every problem with the key it concerns.
    CheckConfig,
    /// Pull people and groups from one source (or every configured source).
    Sync { source: Option<String> },
    /// Check a source without syncing it.
    Source {
        #[command(subcommand)]
        action: SourceCommand,
    },
    /// Manage review campaigns.
    Campaign {
        #[command(subcommand)]
        action: cli::campaign::CampaignCommand,
    },
    /// Issue, list and revoke API tokens for staff (auditors, admins).
    Token {
        #[command(subcommand)]
        action: cli::token::TokenCommand,
    },
    /// Carry out revocations in their sources and prove them with the next sync.
    Remediation {
        #[command(subcommand)]
        action: cli::remediation::RemediationCommand,
    },
    /// Staff access to the console without an identity provider.
    Admin {
        #[command(subcommand)]
        action: cli::admin::AdminCommand,
    },
    /// Preview mail templates with sample data.
    Email {
        #[command(subcommand)]
        action: cli::email::EmailCommand,
    },
    /// Write a campaign's evidence pack (zip), signed with the evidence key.
    Export {
        campaign: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace the evidence signing key with a new one that the old key endorses in the log
    /// (stop every instance first, and restart them after).
    RotateEvidenceKey,
    /// Check an evidence pack offline (no configuration, no database): signatures, file
    /// hashes, every event's inclusion proof, and that the counts reconcile.
    Verify {
        pack: PathBuf,
        /// The verifier key to trust (a file holding `origin+id+key`) instead of the one in
        /// the pack.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// An earlier pack's `checkpoint.txt`: check that the log only grew since.
        #[arg(long, value_name = "FILE")]
        previous_checkpoint: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SourceCommand {
    /// Connect, bind and read the source as a sync would, and print what it holds and every
    /// problem a sync would record; writes nothing.
    Test { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<Error>() {
                Some(Error::Config(problems)) => {
                    eprintln!(
                        "error[config_invalid]: the configuration has {} problem(s):",
                        problems.len()
                    );
                    for problem in problems {
                        eprintln!("  {problem}");
                    }
                }
                Some(e) => eprintln!("error[{}]: {e}", e.code()),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn load_config(cli: &Cli) -> Result<Config, Error> {
    match &cli.config {
        Some(path) => Config::load(Some(path), true),
        None => Config::load(Some(Path::new("config/default.toml")), false),
    }
}

/// Connects and applies pending migrations, so every command works on a fresh database.
fn open_database(config: &Config) -> Result<Database, Error> {
    let db = Database::connect(&config.database)?;
    db.migrate()?;
    Ok(db)
}

/// Group names in the configuration checked against the directory, when there is one to
/// check against (an existing database with a synced source); never creates a database.
fn check_group_names(config: &Config) -> anyhow::Result<()> {
    if let Some(path) = config.database.url.strip_prefix("sqlite://")
        && !Path::new(path).exists()
    {
        return Ok(());
    }
    let checked = Database::connect(&config.database).and_then(|db| {
        let mut conn = db.conn()?;
        attest::directory::snapshot::configured_group_problems(&mut conn, config)
    });
    match checked {
        Ok(problems) if problems.is_empty() => Ok(()),
        Ok(problems) => Err(Error::Config(problems).into()),
        Err(e) => {
            eprintln!("note: group names were not checked against the directory: {e}");
            Ok(())
        }
    }
}

fn init_logging(config: &Config, force_json: bool) {
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};

    let level = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever the level, lines that could carry a request path (and so a review token) are
    // dropped; the access log writes its own, redacted line per request.
    let filter = level.and(filter_fn(access_log::may_be_logged));
    // Colour only for a person at a terminal, never in files or log shippers.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let layer = if force_json || config.log.format == LogFormat::Json {
        layer.json().boxed()
    } else {
        layer.boxed()
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Verify {
        pack,
        public_key,
        previous_checkpoint,
    } = &cli.command
    {
        let read = |path: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
            path.as_ref()
                .map(|p| {
                    std::fs::read_to_string(p)
                        .with_context(|| format!("cannot read {}", p.display()))
                })
                .transpose()
        };
        let (trusted, previous) = (read(public_key)?, read(previous_checkpoint)?);
        let verified =
            attest::evidence::verify::verify_pack(pack, trusted.as_deref(), previous.as_deref())?;
        if trusted.is_none() {
            eprintln!(
                "warning: checked with the public key inside the pack; anyone can make a pack \
                 that checks with its own key. Pass --public-key with the organisation's key \
                 (from the administrator, or an earlier pack you trust)."
            );
        }
        println!(
            "OK: {} (campaign {}): {} review items, {} decisions, {} events proved against a \
             checkpoint of {} events signed by {}",
            pack.display(),
            verified.campaign,
            verified.items,
            verified.decisions,
            verified.events,
            verified.checkpoint_size,
            verified.key
        );
        if verified.rotations > 0 {
            println!(
                "the key you gave endorsed this one through {} key rotation(s) \
                 (key-history.jsonl)",
                verified.rotations
            );
        }
        return Ok(());
    }
    if matches!(cli.command, Command::Demo) {
        let config = attest::demo::demo_config(cli.config.as_deref())?;
        init_logging(&config, cli.log_json);
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        return Ok(runtime.block_on(attest::demo::run(config))?);
    }
    let config = load_config(&cli)?;
    if let Command::Email { action } = &cli.command {
        return cli::email::run(&config, action);
    }
    if matches!(cli.command, Command::CheckConfig) {
        config.validate()?;
        check_group_names(&config)?;
        println!("configuration OK");
        return Ok(());
    }
    init_logging(&config, cli.log_json);
    config.validate()?;
    let clock: SharedClock = Arc::new(SystemClock);
    match cli.command {
        Command::Serve => serve(config, clock),
        Command::Migrate => {
            let db = Database::connect(&config.database)?;
            let applied = db.migrate()?;
            println!("{} migration(s) applied to {:?}", applied.len(), db.target);
            Ok(())
        }
        Command::Sync { source } => {
            let db = open_database(&config)?;
            let names: Vec<String> = match source {
                Some(name) => vec![name],
                None => config.sources.keys().cloned().collect(),
            };
            anyhow::ensure!(!names.is_empty(), "no sources configured under [sources]");
            for name in names {
                let source_config = config.source(&name)?;
                let progress = cli::progress::SyncProgress::start(&name);
                let outcome = sync_source_observed(
                    &db,
                    clock.as_ref(),
                    &name,
                    source_config,
                    "cli",
                    &progress,
                );
                progress.finish();
                println!("{name}: {}", outcome?.summary());
            }
            Ok(())
        }
        Command::Source {
            action: SourceCommand::Test { name },
        } => {
            let source_config = config.source(&name)?;
            let progress = cli::progress::SyncProgress::start(&name);
            let preview = preview_source(&name, source_config, &progress);
            progress.finish();
            cli::source_test::print(&name, &preview?);
            Ok(())
        }
        Command::Campaign { action } => {
            let db = open_database(&config)?;
            cli::campaign::run(&config, &db, clock.as_ref(), action)
        }
        Command::Token { action } => {
            let db = open_database(&config)?;
            cli::token::run(&db, clock.as_ref(), action)
        }
        Command::Remediation { action } => {
            let db = open_database(&config)?;
            cli::remediation::run(&config, &db, clock.as_ref(), action)
        }
        Command::Admin { action } => {
            let db = open_database(&config)?;
            cli::admin::run(&db, clock.as_ref(), &config, action)
        }
        Command::Export { campaign, out } => {
            let db = open_database(&config)?;
            let mut conn = db.conn()?;
            let key = attest::ledger::checkpoint::CheckpointKey::from_config(&config.evidence)?;
            let settings = PackSettings {
                key: &key,
                retention_years: config.evidence.retention_years,
            };
            let summary =
                export_campaign(&mut conn, clock.now(), &campaign, &out, settings, "cli")?;
            println!(
                "wrote {} ({} review items, {} decisions, {} files)",
                out.display(),
                summary.items,
                summary.decisions,
                summary.files.len() + 1
            );
            Ok(())
        }
        Command::RotateEvidenceKey => {
            let db = open_database(&config)?;
            let mut conn = db.conn()?;
            let rotated = attest::ledger::key_rotation::rotate(
                &mut conn,
                clock.now(),
                &config.evidence,
                "cli",
            )?;
            println!(
                "rotated the evidence signing key in {}\n  old: {}\n  new: {}\nthe old key \
                 endorsed the new one in the log; packs made from now on carry that \
                 endorsement (key-history.jsonl). Publish the new key, and restart every \
                 instance: one still holding the old key can sign nothing more.",
                config.evidence.signing_key_file.display(),
                rotated.from,
                rotated.to
            );
            Ok(())
        }
        Command::Demo | Command::CheckConfig | Command::Verify { .. } | Command::Email { .. } => {
            Ok(())
        }
    }
}

fn serve(config: Config, clock: SharedClock) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let app = App::build(config, clock).await?;
        tracing::info!(
            port = app.port(),
            url = app.public_url(),
            "attest is serving"
        );
        app.run_until_stopped().await?;
        Ok(())
    })
}
