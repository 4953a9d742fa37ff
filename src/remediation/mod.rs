//! Closed-loop remediation: every revoked access becomes one task (`tasks`), carried out in
//! its source (`execute`, recording each outcome in `outcome`: an LDAP write in `ldap_write`, a signed webhook in `webhook`, or by
//! IT with a ticket), on the group that really holds the membership (`targets`), and then
//! proved by the next sync (`verify`). Each step is an event in the log, so an evidence pack
//! shows revoke -> action -> proof. `run_once` is what the scheduler does on each tick and
//! what `attest remediation run` does on demand; every part of it may run again or on
//! several instances at once without doing anything twice.

mod execute;
mod ldap_write;
mod outcome;
pub mod targets;
pub mod tasks;
pub mod verify;
pub mod webhook;

use serde::Serialize;

use crate::clock::Clock;
use crate::config::Config;
use crate::db::DbConnection;
use crate::error::Result;

pub use execute::ExecutionReport;
pub use tasks::{ListedTask, Task, list, mark_done, retry};
pub use verify::VerificationReport;

/// Why an action on a source did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionError {
    /// The source answered and refused (an LDAP result code, an HTTP status): the task
    /// failed, and is retried with backoff.
    Refused(String),
    /// The source could not be reached (or the account could not bind): nothing is known of
    /// the task, which waits for the next round; the source's round stops.
    Unavailable(String),
}

/// What one round of remediation did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RoundReport {
    pub created: usize,
    pub execution: ExecutionReport,
    pub verification: VerificationReport,
}

/// Makes the tasks that are due, carries out those due now, and checks carried-out ones
/// against newer syncs, reading the time from `clock` as it goes. `replan` plans dry-run
/// tasks again. Blocking (LDAP, HTTP).
pub fn run_once(
    conn: &mut DbConnection,
    config: &Config,
    clock: &dyn Clock,
    actor: &str,
    replan: bool,
) -> Result<RoundReport> {
    let created = tasks::create_due(conn, config, clock.now(), actor)?;
    let execution = execute::run_due(conn, config, clock, actor, replan)?;
    let verification = verify::verify_against_syncs(conn, config, clock.now(), actor)?;
    Ok(RoundReport {
        created,
        execution,
        verification,
    })
}
