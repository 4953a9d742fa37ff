//! `remediation.csv` in the pack: one row per revoked access of the campaign, with how it was
//! carried out (the group written, the webhook, the ticket), where it stands, and the sync run
//! that proved it gone; and, on the verifier's side, the check that every row's state is the
//! one the proved `remediation.*` events give its task (a row cannot claim "verified" unless
//! a proved event names the sync run that verified it).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};

use diesel::prelude::*;
use serde_json::Value;

use crate::db::DbConnection;
use crate::db::schema::{remediation_tasks, review_items};
use crate::db::time::from_db;
use crate::error::{Error, Result};
use crate::evidence::spreadsheet::safe_cell;

pub const REMEDIATION_CSV_HEADER: [&str; 14] = [
    "task",
    "item",
    "person",
    "group",
    "reason",
    "mode",
    "state",
    "carried_out",
    "ticket",
    "attempts",
    "last_error",
    "executed_at",
    "verified_at",
    "verified_by_sync_run",
];

/// Rows read per query.
const PAGE: i64 = 1_000;

type Row = (
    (String, String, String, String, String, String),
    (Option<String>, Option<String>, i64, Option<String>),
    (
        Option<chrono::NaiveDateTime>,
        Option<chrono::NaiveDateTime>,
        Option<String>,
    ),
    (String, String),
);

/// Writes the campaign's remediation rows, in task id order; returns how many.
pub fn write_remediation_csv(
    conn: &mut DbConnection,
    campaign_id: &str,
    out: &mut impl Write,
) -> Result<u64> {
    let csv_error = |e: csv::Error| Error::Io(format!("cannot write remediation.csv: {e}"));
    let mut csv = csv::Writer::from_writer(out);
    csv.write_record(REMEDIATION_CSV_HEADER)
        .map_err(csv_error)?;
    let mut after = String::new();
    let mut count = 0;
    loop {
        let rows: Vec<Row> = remediation_tasks::table
            .inner_join(review_items::table)
            .filter(remediation_tasks::campaign_id.eq(campaign_id))
            .filter(remediation_tasks::id.gt(&after))
            .order(remediation_tasks::id.asc())
            .limit(PAGE)
            .select((
                (
                    remediation_tasks::id,
                    remediation_tasks::item_id,
                    remediation_tasks::reason,
                    remediation_tasks::mode,
                    remediation_tasks::state,
                    remediation_tasks::source,
                ),
                (
                    remediation_tasks::action,
                    remediation_tasks::ticket,
                    remediation_tasks::attempts,
                    remediation_tasks::last_error,
                ),
                (
                    remediation_tasks::executed_at,
                    remediation_tasks::verified_at,
                    remediation_tasks::verified_sync_run_id,
                ),
                (review_items::identity_login, review_items::entitlement_name),
            ))
            .load(conn)?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.0.0.clone();
        for row in &rows {
            let (
                (task, item, reason, mode, state, _),
                (action, ticket, attempts, error),
                times,
                who,
            ) = row;
            let time = |t: &Option<chrono::NaiveDateTime>| {
                t.map(|t| from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default()
            };
            let record = [
                task.clone(),
                item.clone(),
                who.0.clone(),
                who.1.clone(),
                reason.clone(),
                mode.clone(),
                state.clone(),
                carried_out(action.as_deref()),
                ticket.clone().unwrap_or_default(),
                attempts.to_string(),
                error.clone().unwrap_or_default(),
                time(&times.0),
                time(&times.1),
                times.2.clone().unwrap_or_default(),
            ];
            csv.write_record(record.iter().map(|cell| safe_cell(cell).into_owned()))
                .map_err(csv_error)?;
            count += 1;
        }
    }
    csv.flush()?;
    Ok(count)
}

/// What was done, in words, from a task's recorded action.
fn carried_out(action: Option<&str>) -> String {
    let Some(action) = action.and_then(|a| serde_json::from_str::<Value>(a).ok()) else {
        return String::new();
    };
    if action["dry_run"].as_bool() == Some(true) {
        return String::new();
    }
    match action["kind"].as_str() {
        Some("ldap_remove_member") => format!(
            "removed from {} ({})",
            action["group_dn"].as_str().unwrap_or_default(),
            action["attributes"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        Some("webhook") => format!(
            "webhook accepted ({})",
            action["status"].as_u64().unwrap_or_default()
        ),
        Some("nothing_to_remove") => format!(
            "nothing to remove: {}",
            action["why"].as_str().unwrap_or_default()
        ),
        _ => String::new(),
    }
}

/// What the proved events say of one task.
#[derive(Debug, Default, Clone)]
struct ProvedTask {
    item: String,
    state: String,
    verified_by: Option<String>,
    ticket: Option<String>,
}

/// What the proved events say of each task: its item, its latest state, the run that
/// verified it and IT's ticket.
#[derive(Debug, Default)]
pub struct RemediationProofs {
    tasks: HashMap<String, ProvedTask>,
}

impl RemediationProofs {
    /// Takes in one proved event (events arrive in log order).
    pub fn record(&mut self, kind: &str, payload: &Value) {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        let state = match kind {
            "remediation.tasks_created" => {
                for created in payload["tasks"].as_array().into_iter().flatten() {
                    self.tasks.insert(
                        text(&created["task"]),
                        ProvedTask {
                            item: text(&created["item"]),
                            state: "pending".into(),
                            ..ProvedTask::default()
                        },
                    );
                }
                return;
            }
            "remediation.executed" | "remediation.done" => "executed",
            "remediation.failed" => "failed",
            "remediation.blocked" => "blocked",
            "remediation.cancelled" => "cancelled",
            "remediation.still_present" => "still_present",
            "remediation.regranted" => "regranted",
            "remediation.retried" => "pending",
            "remediation.verified" => "verified",
            _ => return,
        };
        let entry = self.tasks.entry(text(&payload["task"])).or_default();
        entry.state = state.to_string();
        match kind {
            "remediation.verified" => entry.verified_by = Some(text(&payload["sync_run"])),
            "remediation.done" => entry.ticket = Some(text(&payload["ticket"])),
            _ => {}
        }
    }

    /// Checks `remediation.csv` against the proved tasks: each row is a proved task, once,
    /// with the item, state, ticket and verifying sync run its events give it, and every
    /// proved task has its row.
    pub fn check(&self, csv: impl Read) -> Result<u64> {
        let failed = |what: String| Error::BadRequest(format!("remediation.csv {what}"));
        let mut reader = csv::Reader::from_reader(csv);
        let header = reader
            .headers()
            .map_err(|e| failed(format!("header: {e}")))?
            .clone();
        if !header.iter().eq(REMEDIATION_CSV_HEADER) {
            return Err(failed("has an unexpected header".into()));
        }
        let mut listed = HashSet::new();
        for (n, row) in reader.records().enumerate() {
            let at = n + 2;
            let row = row.map_err(|e| failed(format!("row {at}: {e}")))?;
            let cell = |i: usize| row.get(i).unwrap_or_default();
            let (task, item, state, ticket, verified_by) =
                (cell(0), cell(1), cell(6), cell(8), cell(13));
            let Some(proved) = self.tasks.get(task) else {
                return Err(failed(format!(
                    "row {at}: task {task} has no proved remediation event"
                )));
            };
            if !listed.insert(task.to_string()) {
                return Err(failed(format!("row {at}: task {task} is listed twice")));
            }
            let mismatch = |what: &str, listed: &str, proved: &str| {
                failed(format!(
                    "row {at}: task {task}'s {what} is `{listed}`, the proved events say \
                     `{proved}`"
                ))
            };
            if proved.item != item {
                return Err(mismatch("item", item, &proved.item));
            }
            if proved.state != state {
                return Err(mismatch("state", state, &proved.state));
            }
            let proved_run = proved.verified_by.as_deref().unwrap_or_default();
            if proved_run != verified_by {
                return Err(mismatch("verifying sync run", verified_by, proved_run));
            }
            let proved_ticket = proved.ticket.as_deref().unwrap_or_default();
            if spreadsheet_text(ticket) != proved_ticket {
                return Err(mismatch("ticket", ticket, proved_ticket));
            }
        }
        if let Some(missing) = self.tasks.keys().find(|t| !listed.contains(*t)) {
            return Err(failed(format!(
                "has no row for task {missing}, which the proved events record"
            )));
        }
        Ok(listed.len() as u64)
    }
}

/// A cell as written, without the quote that made a formula-like value safe.
fn spreadsheet_text(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}
