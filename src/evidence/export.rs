//! The evidence pack of one campaign: a zip with `decisions.csv` (spreadsheet-safe),
//! `decisions.jsonl` (raw values), `population.json` (how the reviewed population was
//! extracted, and its counts) and `manifest.json` (SHA-256 and size of every other file).
//! Decisions stream from the database page by page into the archive; the pack is written to a
//! temporary name and renamed only when complete. Exporting changes no review state; it is
//! itself recorded as an event.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::campaigns::lifecycle::summarize;
use crate::campaigns::model::campaign;
use crate::db::schema::{decisions, review_items, reviewers};
use crate::db::time::from_db;
use crate::db::{DbConnection, is_postgres, write_tx};
use crate::directory::snapshot::{problems_of, sync_run};
use crate::error::{Error, Result};
use crate::evidence::item_records::{for_each_item, write_items_csv};
use crate::evidence::proofs::{
    campaign_events, consistency_from_earlier_packs, latest_checkpoint, tree_of,
};
use crate::ledger::checkpoint::{CheckpointKey, write_checkpoint};
use crate::ledger::{EventKind, append};

const PAGE: i64 = 1_000;
pub const PACK_FORMAT: &str = "attest-evidence/1";

/// One exported decision with the context an auditor needs to read it alone.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DecisionRecord {
    pub decision_id: String,
    pub decided_at: String,
    pub campaign_id: String,
    pub item_id: String,
    pub outcome: String,
    pub comment: Option<String>,
    pub reviewer_email: String,
    pub reviewer_name: String,
    pub person_login: String,
    pub person_name: String,
    pub person_email: Option<String>,
    pub group_name: String,
    pub group_dn: String,
    pub privileged: bool,
    pub auth_method: String,
    pub auth_context: serde_json::Value,
    /// An approval until this date (RFC 3339): it expires into a revocation then.
    pub approved_until: Option<String>,
    /// When the item's approval until a date expired (the item is now revoked).
    pub item_expired_at: Option<String>,
}

pub const CSV_HEADER: [&str; 17] = [
    "decision_id",
    "decided_at",
    "campaign_id",
    "item_id",
    "outcome",
    "comment",
    "reviewer_email",
    "reviewer_name",
    "person_login",
    "person_name",
    "person_email",
    "group_name",
    "group_dn",
    "privileged",
    "auth_method",
    "approved_until",
    "item_expired_at",
];

impl DecisionRecord {
    fn csv_row(&self) -> Vec<String> {
        [
            self.decision_id.as_str(),
            self.decided_at.as_str(),
            self.campaign_id.as_str(),
            self.item_id.as_str(),
            self.outcome.as_str(),
            self.comment.as_deref().unwrap_or(""),
            self.reviewer_email.as_str(),
            self.reviewer_name.as_str(),
            self.person_login.as_str(),
            self.person_name.as_str(),
            self.person_email.as_deref().unwrap_or(""),
            self.group_name.as_str(),
            self.group_dn.as_str(),
            if self.privileged { "true" } else { "false" },
            self.auth_method.as_str(),
            self.approved_until.as_deref().unwrap_or(""),
            self.item_expired_at.as_deref().unwrap_or(""),
        ]
        .into_iter()
        .map(neutralize_csv_cell)
        .collect()
    }
}

/// Prefixes a cell that a spreadsheet would read as a formula (= + - @ tab CR) with `'`.
pub fn neutralize_csv_cell(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ManifestEntry {
    pub name: String,
    pub sha256: String,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExportSummary {
    /// Review items listed (every one of the campaign).
    pub items: u64,
    /// The campaign's events later than the pack's checkpoint (not proved; 0 in a pack).
    pub events_after_checkpoint: i64,
    /// The size of the signed checkpoint the pack proves its events against.
    pub checkpoint_size: i64,
    pub decisions: u64,
    pub files: Vec<ManifestEntry>,
}

/// Hashes and counts everything written through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::Io(format!("cannot write evidence pack: {e}"))
}

fn rfc3339(t: NaiveDateTime) -> String {
    from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Writes the pack of `campaign_id` to `out` and records the export.
pub fn export_campaign(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    out: &Path,
    key: &CheckpointKey,
    actor: &str,
) -> Result<ExportSummary> {
    campaign(conn, campaign_id)?;
    let partial = out.with_extension("zip.partial");
    let mut attempt = 0;
    let summary = loop {
        attempt += 1;
        // The log signed as it is now, so that the pack's events are covered by a checkpoint.
        write_checkpoint(conn, now, key, actor)?;
        // One read transaction: every file of the pack describes the same moment even while
        // reviewers keep deciding.
        let written = conn.transaction(|conn| {
            if is_postgres(conn) {
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(conn)?;
            }
            write_pack(conn, now, campaign_id, &partial, key)
        });
        match written {
            // Every event of the campaign the pack saw is proved by its checkpoint.
            Ok(summary) if summary.events_after_checkpoint == 0 => break summary,
            // A decision came in between the checkpoint and the read: sign again.
            Ok(_) if attempt < 3 => continue,
            Ok(_) => {
                let _ = std::fs::remove_file(&partial);
                return Err(Error::Conflict(
                    "the campaign's events keep changing while the pack is written; export \
                     again in a quieter moment"
                        .into(),
                ));
            }
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        }
    };
    std::fs::rename(&partial, out)
        .map_err(|e| Error::Io(format!("cannot move pack to {}: {e}", out.display())))?;
    write_tx(conn, |conn| {
        append(
            conn,
            now,
            EventKind::EvidenceExported,
            actor,
            Some(campaign_id),
            &json!({
                "campaign": campaign_id,
                "items": summary.items,
                "decisions": summary.decisions,
                "checkpoint_size": summary.checkpoint_size,
                "files": summary.files,
            }),
        )
    })?;
    Ok(summary)
}

fn write_pack(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    path: &Path,
    key: &CheckpointKey,
) -> Result<ExportSummary> {
    let campaign = campaign(conn, campaign_id)?;
    let file = File::create(path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    let mut zip = zip::ZipWriter::new(BufWriter::new(file));
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut files = Vec::new();

    zip.start_file("decisions.csv", options)
        .map_err(zip_error)?;
    let (entry, decisions) = write_decisions_csv(conn, campaign_id, &mut zip)?;
    files.push(entry);

    zip.start_file("decisions.jsonl", options)
        .map_err(zip_error)?;
    let mut jsonl = HashingWriter {
        inner: &mut zip,
        hasher: Sha256::new(),
        bytes: 0,
    };
    for_each_decision(conn, campaign_id, |record| {
        serde_json::to_writer(&mut jsonl, record)?;
        jsonl.write_all(b"\n")?;
        Ok(())
    })?;
    files.push(finish_entry("decisions.jsonl", jsonl));

    // Every item, decided or not: the population an auditor reconciles.
    zip.start_file("items.csv", options).map_err(zip_error)?;
    let mut items_csv = HashingWriter {
        inner: &mut zip,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let items = write_items_csv(conn, campaign_id, &mut items_csv)?;
    files.push(finish_entry("items.csv", items_csv));
    zip.start_file("items.jsonl", options).map_err(zip_error)?;
    let mut items_jsonl = HashingWriter {
        inner: &mut zip,
        hasher: Sha256::new(),
        bytes: 0,
    };
    for_each_item(conn, campaign_id, |record| {
        serde_json::to_writer(&mut items_jsonl, record)?;
        items_jsonl.write_all(b"\n")?;
        Ok(())
    })?;
    files.push(finish_entry("items.jsonl", items_jsonl));

    // The campaign's events with their proofs, the checkpoint they are proved against, and
    // the key that signed it and this pack's manifest.
    let (size, note) = latest_checkpoint(conn, &key.key_id_hex())?
        .ok_or_else(|| Error::Internal("no checkpoint of the event log by this key".into()))?;
    let tree = tree_of(conn, size)?;
    let (proven, events_after) = campaign_events(conn, campaign_id, &tree)?;
    let consistency = consistency_from_earlier_packs(conn, &tree)?;
    drop(tree);
    zip.start_file("events.jsonl", options).map_err(zip_error)?;
    let mut events_jsonl = HashingWriter {
        inner: &mut zip,
        hasher: Sha256::new(),
        bytes: 0,
    };
    for event in &proven {
        serde_json::to_writer(&mut events_jsonl, event)?;
        events_jsonl.write_all(b"\n")?;
    }
    files.push(finish_entry("events.jsonl", events_jsonl));
    zip.start_file("consistency.jsonl", options)
        .map_err(zip_error)?;
    let mut consistency_jsonl = HashingWriter {
        inner: &mut zip,
        hasher: Sha256::new(),
        bytes: 0,
    };
    for line in &consistency {
        serde_json::to_writer(&mut consistency_jsonl, line)?;
        consistency_jsonl.write_all(b"\n")?;
    }
    files.push(finish_entry("consistency.jsonl", consistency_jsonl));
    for (name, text) in [
        ("checkpoint.txt", note),
        ("public-key.txt", format!("{}\n", key.verifier_key())),
    ] {
        zip.start_file(name, options).map_err(zip_error)?;
        let mut writer = HashingWriter {
            inner: &mut zip,
            hasher: Sha256::new(),
            bytes: 0,
        };
        writer.write_all(text.as_bytes())?;
        files.push(finish_entry(name, writer));
    }

    let run = sync_run(conn, &campaign.sync_run_id)?;
    let problems = problems_of(conn, &run.id)?;
    let reviewer_count: i64 = reviewers::table
        .filter(reviewers::campaign_id.eq(campaign_id))
        .count()
        .get_result(conn)?;
    let counts = summarize(conn, campaign.clone())?;
    let searches: serde_json::Value = serde_json::from_str(&run.searches)?;
    let scope: serde_json::Value = serde_json::from_str(&campaign.scope)?;
    let population = json!({
        "campaign": {
            "id": campaign.id,
            "definition": campaign.definition,
            "title": campaign.title,
            "source": campaign.source,
            "state": campaign.state,
            "period_start": rfc3339(campaign.period_start),
            "opened_at": rfc3339(campaign.opened_at),
            "due_at": rfc3339(campaign.due_at),
            "closed_at": campaign.closed_at.map(rfc3339),
            "scope": scope,
        },
        "sync_run": {
            "id": run.id,
            "source": run.source,
            "run": run.seq,
            "server": run.server,
            "bind_identity": run.bind_identity,
            "page_size": run.page_size,
            "searches": searches,
            "started_at": rfc3339(run.started_at),
            "finished_at": run.finished_at.map(rfc3339),
            "status": run.status,
            "pages": run.pages,
            "entries": run.entries,
            "identities": run.identities,
            "entitlements": run.entitlements,
            "memberships": run.memberships,
            "grants": run.grants,
            "unresolved_members": run.unresolved_members,
            "cycles": run.cycles,
            "diff": run.diff(),
            "problems": problems,
            "raw_sha256": run.raw_sha256,
        },
        "counts": {
            "review_items": counts.items,
            "reviewers": reviewer_count,
            "approved": counts.approved,
            "revoked": counts.revoked,
            "pending": counts.pending,
            "no_response": counts.no_response,
            "items_listed": items,
            "decisions": decisions,
            "events_listed": proven.len(),
            "events_after_checkpoint": events_after,
        },
    });
    zip.start_file("population.json", options)
        .map_err(zip_error)?;
    let mut writer = HashingWriter {
        inner: &mut zip,
        hasher: Sha256::new(),
        bytes: 0,
    };
    serde_json::to_writer_pretty(&mut writer, &population)?;
    files.push(finish_entry("population.json", writer));

    let manifest = json!({
        "format": PACK_FORMAT,
        "campaign": campaign_id,
        "generated_at": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "hash": "sha256",
        "files": files,
    });
    let manifest_bytes = serde_json::to_vec_pretty(&manifest)?;
    zip.start_file("manifest.json", options)
        .map_err(zip_error)?;
    zip.write_all(&manifest_bytes)?;
    // The manifest's hash, signed: every file's hash is fixed by the instance's key.
    zip.start_file("manifest.sig", options).map_err(zip_error)?;
    let signed = key.sign_body(&manifest_note_body(
        key.origin(),
        &hex::encode(Sha256::digest(&manifest_bytes)),
    ));
    zip.write_all(signed.as_bytes())?;
    let mut inner = zip.finish().map_err(zip_error)?;
    inner.flush()?;
    inner
        .get_ref()
        .sync_all()
        .map_err(|e| Error::Io(format!("cannot sync {}: {e}", path.display())))?;
    Ok(ExportSummary {
        items,
        events_after_checkpoint: events_after,
        checkpoint_size: size,
        decisions,
        files,
    })
}

/// The body of the manifest's signed note: `<origin>/manifest` and the manifest's SHA-256.
pub fn manifest_note_body(origin: &str, manifest_sha256: &str) -> String {
    format!("{origin}/manifest\n{manifest_sha256}\n")
}

fn finish_entry<W: Write>(name: &str, writer: HashingWriter<W>) -> ManifestEntry {
    ManifestEntry {
        name: name.to_string(),
        sha256: hex::encode(writer.hasher.finalize()),
        bytes: writer.bytes,
    }
}

fn write_decisions_csv<W: Write>(
    conn: &mut DbConnection,
    campaign_id: &str,
    out: W,
) -> Result<(ManifestEntry, u64)> {
    let hashing = HashingWriter {
        inner: out,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut csv = csv::Writer::from_writer(hashing);
    let csv_error = |e: csv::Error| Error::Io(format!("cannot write decisions.csv: {e}"));
    csv.write_record(CSV_HEADER).map_err(csv_error)?;
    let mut count = 0u64;
    for_each_decision(conn, campaign_id, |record| {
        csv.write_record(record.csv_row()).map_err(csv_error)?;
        count += 1;
        Ok(())
    })?;
    let hashing = csv
        .into_inner()
        .map_err(|e| Error::Io(format!("cannot write decisions.csv: {e}")))?;
    Ok((finish_entry("decisions.csv", hashing), count))
}

type DecisionColumns = (
    (
        String,
        NaiveDateTime,
        String,
        String,
        String,
        Option<String>,
        String,
        String,
        Option<NaiveDateTime>,
    ),
    (
        String,
        String,
        Option<String>,
        String,
        String,
        bool,
        Option<NaiveDateTime>,
    ),
    (String, String),
);

/// Calls `visit` for every decision of the campaign in decision order, a page at a time.
fn for_each_decision(
    conn: &mut DbConnection,
    campaign_id: &str,
    mut visit: impl FnMut(&DecisionRecord) -> Result<()>,
) -> Result<()> {
    let mut after: Option<(NaiveDateTime, String)> = None;
    loop {
        let mut query = decisions::table
            .inner_join(review_items::table)
            .inner_join(reviewers::table.on(reviewers::id.eq(decisions::reviewer_id)))
            .filter(decisions::campaign_id.eq(campaign_id))
            .into_boxed();
        if let Some((at, id)) = &after {
            query = query.filter(
                decisions::decided_at.gt(*at).or(decisions::decided_at
                    .eq(*at)
                    .and(decisions::id.gt(id.clone()))),
            );
        }
        let rows: Vec<DecisionColumns> = query
            .order((decisions::decided_at.asc(), decisions::id.asc()))
            .limit(PAGE)
            .select((
                (
                    decisions::id,
                    decisions::decided_at,
                    decisions::campaign_id,
                    decisions::item_id,
                    decisions::outcome,
                    decisions::comment,
                    decisions::auth_method,
                    decisions::auth_context,
                    decisions::approved_until,
                ),
                (
                    review_items::identity_login,
                    review_items::identity_name,
                    review_items::identity_email,
                    review_items::entitlement_name,
                    review_items::entitlement_dn,
                    review_items::privileged,
                    review_items::expired_at,
                ),
                (reviewers::email, reviewers::display_name),
            ))
            .load(conn)?;
        let Some(last) = rows.last() else { break };
        after = Some((last.0.1, last.0.0.clone()));
        for (d, item, reviewer) in rows {
            let record = DecisionRecord {
                decision_id: d.0,
                decided_at: rfc3339(d.1),
                campaign_id: d.2,
                item_id: d.3,
                outcome: d.4,
                comment: d.5,
                auth_method: d.6,
                auth_context: serde_json::from_str(&d.7).unwrap_or(serde_json::Value::Null),
                approved_until: d.8.map(rfc3339),
                item_expired_at: item.6.map(rfc3339),
                person_login: item.0,
                person_name: item.1,
                person_email: item.2,
                group_name: item.3,
                group_dn: item.4,
                privileged: item.5,
                reviewer_email: reviewer.0,
                reviewer_name: reviewer.1,
            };
            visit(&record)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::neutralize_csv_cell;

    #[test]
    fn formula_cells_are_neutralised() {
        for cell in ["=1+1", "+cmd", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert!(neutralize_csv_cell(cell).starts_with('\''), "{cell:?}");
        }
        assert_eq!(neutralize_csv_cell("Ann"), "Ann");
    }
}
