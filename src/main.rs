//! The `attest` command line: parses arguments, loads configuration, sets up logging and
//! calls into the library. No business logic lives here.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use attest::app::App;
use attest::campaigns::{close_campaign, list_campaigns, start_campaign};
use attest::clock::{Clock, SharedClock, SystemClock};
use attest::config::{Config, LogFormat};
use attest::db::Database;
use attest::directory::preview::preview_source;
use attest::directory::sync_source_observed;
use attest::error::Error;
use attest::evidence::export::export_campaign;
use attest::jobs::scheduler::next_openings;
use attest::notify::revocation::revoke_campaign_links;
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
        action: CampaignCommand,
    },
    /// Write a campaign's evidence pack (zip).
    Export {
        campaign: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SourceCommand {
    /// Connect, bind and read the source as a sync would, and print what it holds and every
    /// problem a sync would record; writes nothing.
    Test { name: String },
}

#[derive(Subcommand)]
enum CampaignCommand {
    /// Open a campaign of DEFINITION (a key under [campaigns]).
    Start {
        definition: String,
        /// Start an ad-hoc campaign whose period begins now (default: the current quarter).
        #[arg(long)]
        now: bool,
    },
    /// List campaigns with their progress.
    List,
    /// Close a campaign; later decisions are refused.
    Close { id: String },
    /// Make a campaign's review links stop working (all of them, or one reviewer's).
    RevokeLinks {
        /// Campaign id (see `attest campaign list`).
        campaign: String,
        /// Only the links of the reviewer with this email address.
        #[arg(long, value_name = "EMAIL")]
        reviewer: Option<String>,
        /// Then send each reviewer who still has undecided items a new digest with a new link.
        #[arg(long)]
        resend: bool,
    },
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
    if matches!(cli.command, Command::Demo) {
        let config = attest::demo::demo_config(cli.config.as_deref())?;
        init_logging(&config, cli.log_json);
        let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
        return Ok(runtime.block_on(attest::demo::run(config))?);
    }
    let config = load_config(&cli)?;
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
        Command::Campaign { action } => campaign(&config, clock.as_ref(), action),
        Command::Export { campaign, out } => {
            let db = open_database(&config)?;
            let mut conn = db.conn()?;
            let summary = export_campaign(&mut conn, clock.now(), &campaign, &out, "cli")?;
            println!(
                "wrote {} ({} decisions, {} files)",
                out.display(),
                summary.decisions,
                summary.files.len() + 1
            );
            Ok(())
        }
        Command::Demo | Command::CheckConfig => Ok(()),
    }
}

fn campaign(config: &Config, clock: &dyn Clock, action: CampaignCommand) -> anyhow::Result<()> {
    let db = open_database(config)?;
    match action {
        CampaignCommand::Start { definition, now } => {
            let started = start_campaign(&db, clock, config, &definition, now, "cli")?;
            println!(
                "opened campaign {} ({}): {} items for {} reviewers, due {}",
                started.campaign.id,
                started.campaign.title,
                started.items,
                started.reviewers,
                started.campaign.due_at.format("%Y-%m-%d")
            );
        }
        CampaignCommand::List => {
            let mut conn = db.conn()?;
            let all = list_campaigns(&mut conn)?;
            for (definition, next) in next_openings(config, clock.now()) {
                let schedule = &config.campaigns[&definition];
                match next {
                    Some(at) => println!(
                        "{definition}: next opens {} ({}, {}){}",
                        at.format("%Y-%m-%d %H:%M UTC"),
                        schedule.schedule,
                        schedule.timezone,
                        if config.scheduler.enabled {
                            ""
                        } else {
                            " - the scheduler is off in this configuration"
                        }
                    ),
                    None => println!("{definition}: opens only with `attest campaign start`"),
                }
            }
            if all.is_empty() {
                println!("no campaigns yet");
            }
            for s in all {
                println!(
                    "{}  {:<7} {:<30} opened {}{}  due {}  {}/{} decided ({} approved, {} revoked)",
                    s.campaign.id,
                    s.campaign.state,
                    s.campaign.title,
                    s.campaign.opened_at.format("%Y-%m-%d"),
                    if s.campaign.late { " (late)" } else { "" },
                    s.campaign.due_at.format("%Y-%m-%d"),
                    s.items - s.pending,
                    s.items,
                    s.approved,
                    s.revoked
                );
            }
        }
        CampaignCommand::Close { id } => {
            let mut conn = db.conn()?;
            let s = close_campaign(&mut conn, clock.now(), &id, "cli")?;
            println!(
                "closed campaign {id}: {} approved, {} revoked, {} not reviewed",
                s.approved, s.revoked, s.pending
            );
        }
        CampaignCommand::RevokeLinks {
            campaign,
            reviewer,
            resend,
        } => {
            let mut conn = db.conn()?;
            let s = revoke_campaign_links(
                &mut conn,
                clock.now(),
                &campaign,
                reviewer.as_deref(),
                resend,
                "cli",
            )?;
            println!(
                "revoked {} working link(s) of {} reviewer(s) in campaign {campaign}",
                s.links, s.reviewers
            );
            if s.digests_cancelled > 0 {
                println!(
                    "cancelled {} digest(s) that had not been sent yet",
                    s.digests_cancelled
                );
            }
            if resend {
                println!(
                    "queued {} new digest(s); `attest serve` sends them",
                    s.digests_queued
                );
            } else {
                println!("those reviewers can no longer open the review; --resend sends new links");
            }
        }
    }
    Ok(())
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
