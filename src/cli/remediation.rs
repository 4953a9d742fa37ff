//! `attest remediation ...`: list the tasks that carry out revocations, run a round now
//! (make due tasks, carry them out, check them against the latest syncs), close a manual
//! task with its ticket, and try a failed or blocked task again, printed for a terminal.

use attest::clock::Clock;
use attest::config::Config;
use attest::db::Database;
use attest::remediation::tasks::TASK_STATES;
use attest::remediation::{ListedTask, list, mark_done, retry, run_once};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum RemediationCommand {
    /// List tasks, oldest first: each revoked access, how it is carried out, and where it
    /// stands (pending, executed, verified, still_present, regranted, failed, blocked,
    /// cancelled).
    List {
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        #[arg(long, value_name = "CAMPAIGN")]
        campaign: Option<String>,
        /// Tasks listed at most.
        #[arg(long, default_value_t = 500)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make the tasks that are due, carry them out, and check carried-out ones against the
    /// latest syncs (what `attest serve` does on every scheduler tick).
    Run {
        /// Plan dry-run sources' tasks again even if they were planned before.
        #[arg(long)]
        replan: bool,
    },
    /// Close a task IT carried out by hand (a manual one, or one attest could not do), with
    /// the ticket that tracks the change.
    Done {
        task: String,
        #[arg(long, value_name = "REF")]
        ticket: String,
    },
    /// Try a failed, blocked, still-present or re-granted task again.
    Retry { task: String },
}

pub fn run(
    config: &Config,
    db: &Database,
    clock: &dyn Clock,
    action: RemediationCommand,
) -> anyhow::Result<()> {
    let mut conn = db.conn()?;
    match action {
        RemediationCommand::List {
            state,
            campaign,
            limit,
            json,
        } => {
            let tasks = list(&mut conn, state.as_deref(), campaign.as_deref(), limit)?;
            if json {
                for task in &tasks {
                    println!("{}", serde_json::to_string(task)?);
                }
                return Ok(());
            }
            if tasks.is_empty() {
                println!("no remediation tasks");
            }
            for task in &tasks {
                println!("{}", describe(task));
            }
        }
        RemediationCommand::Run { replan } => {
            let report = run_once(&mut conn, config, clock, "cli", replan)?;
            let e = &report.execution;
            let v = &report.verification;
            println!(
                "{} task(s) made; {} executed, {} failed, {} blocked, {} planned (dry run); \
                 {} verified gone, {} still present, {} re-granted",
                report.created,
                e.executed,
                e.failed,
                e.blocked,
                e.planned,
                v.verified,
                v.still_present,
                v.regranted
            );
            let alerts = v.still_present + v.regranted + e.failed;
            if alerts > 0 {
                println!(
                    "see `attest remediation list --state failed|still_present|regranted` for \
                     what needs attention"
                );
            }
        }
        RemediationCommand::Done { task, ticket } => {
            let done = mark_done(&mut conn, clock.now(), &task, &ticket, "cli")?;
            println!(
                "task {} executed (ticket {ticket}); the next sync of {} proves it",
                done.id, done.source
            );
        }
        RemediationCommand::Retry { task } => {
            let again = retry(&mut conn, clock.now(), &task, "cli")?;
            println!(
                "task {} is pending again; the next round carries it out",
                again.id
            );
        }
    }
    Ok(())
}

/// One line per task: id, state, person, group, how, and what happened.
fn describe(listed: &ListedTask) -> String {
    let task = &listed.task;
    let via = listed
        .via
        .as_deref()
        .map(|v| format!(" (via {v})"))
        .unwrap_or_default();
    let mut line = format!(
        "{}  {:<13}  {} from {}{via}  [{} {}, {}]",
        task.id, task.state, listed.person, listed.group, task.source, task.mode, task.reason
    );
    if let Some(action) = task
        .action
        .as_deref()
        .and_then(|a| serde_json::from_str::<serde_json::Value>(a).ok())
    {
        line.push_str(&format!("  {}", summarize_action(&action)));
    }
    if let Some(ticket) = &task.ticket {
        line.push_str(&format!("  ticket {ticket}"));
    }
    if let Some(run) = &task.verified_sync_run_id {
        line.push_str(&format!("  proved by sync run {run}"));
    }
    if let Some(error) = &task.last_error {
        line.push_str(&format!("  error: {error}"));
    }
    debug_assert!(TASK_STATES.contains(&task.state.as_str()));
    line
}

fn summarize_action(action: &serde_json::Value) -> String {
    let dry = action["dry_run"].as_bool().unwrap_or(false);
    match action["kind"].as_str().unwrap_or("") {
        "ldap_remove_member" => {
            let verb = if dry { "would remove" } else { "removed" };
            let nested = if action["through_nested_group"].as_bool().unwrap_or(false) {
                format!(
                    " (access to {} comes through it)",
                    action["reviewed_group"].as_str().unwrap_or("?")
                )
            } else {
                String::new()
            };
            format!(
                "{verb} from {}{nested}",
                action["group_dn"].as_str().unwrap_or("?")
            )
        }
        "webhook" if action.get("would_send").is_some() => "would send the webhook".into(),
        "webhook" => format!(
            "webhook accepted ({})",
            action["status"].as_u64().unwrap_or(0)
        ),
        "nothing_to_remove" => format!(
            "nothing to remove: {}",
            action["why"].as_str().unwrap_or("")
        ),
        "would_fail" => format!("would fail: {}", action["error"].as_str().unwrap_or("")),
        "would_block" => format!("would be blocked: {}", action["why"].as_str().unwrap_or("")),
        other => other.to_string(),
    }
}
