//! The evidence pack of one campaign: one zip an auditor reads without asking anyone.
//! `items.csv` / `items.jsonl` (one row per review item), `decisions.csv` /
//! `decisions.jsonl` (the full history), `exceptions.csv`, `remediation.csv` (each revoked
//! access carried out and proved), `summary.json` (counts per
//! reviewer and group, timeliness, progress), `population.json` (how the population was
//! extracted), `soc2.json` (which file evidences which criterion), `report.html` (all of it
//! for a person), the campaign's events with inclusion proofs against `checkpoint.txt`,
//! `consistency.jsonl`, `public-key.txt`, `key-history.jsonl` (the key's rotations), and
//! `manifest.json` (SHA-256 and size of every other
//! file) signed in `manifest.sig`. Rows stream from the database page by page into the
//! archive; the pack is written to a temporary name and renamed only when complete.
//! Exporting changes no review state; it is itself recorded as an event.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use crate::campaigns::model::{STATE_GENERATING, campaign};
use crate::db::time::from_db;
use crate::db::{DbConnection, is_postgres, with_sqlite_cache, write_tx};
use crate::error::{Error, Result};
use crate::evidence::decision_records::write_decision_files;
use crate::evidence::item_records::write_item_files;
pub use crate::evidence::pack_writer::ManifestEntry;
use crate::evidence::pack_writer::{PackWriter, compress_ahead};
use crate::evidence::population::{Listed, population_document};
use crate::evidence::proofs::{
    consistency_from_earlier_packs, latest_checkpoint, tree_of, write_campaign_events,
};
use crate::evidence::remediation_records::write_remediation_csv;
use crate::evidence::report::{ReportContext, render_report};
use crate::evidence::soc2::soc2_mapping;
use crate::evidence::summary::{events_by_kind, keep_until, summarize_campaign, write_summary};
use crate::ledger::checkpoint::{CheckpointKey, write_checkpoint};
use crate::ledger::{EventKind, append};

pub const PACK_FORMAT: &str = "attest-evidence/2";
/// The format before `remediation.csv`.
pub const PACK_FORMAT_WITHOUT_REMEDIATION: &str = "attest-evidence/1";
/// SQLite's page cache while a pack is written, in KiB.
const EXPORT_CACHE_KIB: i64 = 8 * 1024;

/// What an export needs besides the database.
#[derive(Debug, Clone, Copy)]
pub struct PackSettings<'a> {
    /// Signs the checkpoint and the manifest.
    pub key: &'a CheckpointKey,
    /// How long the evidence is kept (`evidence.retention_years`).
    pub retention_years: u32,
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

fn zip_error(e: zip::result::ZipError) -> Error {
    Error::Io(format!("cannot write evidence pack: {e}"))
}

/// Writes the pack of `campaign_id` to `out` and records the export.
pub fn export_campaign(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    out: &Path,
    settings: PackSettings,
    actor: &str,
) -> Result<ExportSummary> {
    if campaign(conn, campaign_id)?.state == STATE_GENERATING {
        return Err(Error::Conflict(format!(
            "campaign {campaign_id} is still being generated; it has no evidence yet"
        )));
    }
    // A small page cache while the pack is written: it reads each page about once, and the
    // cache bounds what its grouped counts sort in memory, so memory stays flat with size.
    let summary = with_sqlite_cache(conn, EXPORT_CACHE_KIB, |conn| {
        write_pack_signed(conn, now, campaign_id, out, settings, actor)
    })?;
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

/// Writes the pack, signing a checkpoint first and again while events keep arriving.
fn write_pack_signed(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    out: &Path,
    settings: PackSettings,
    actor: &str,
) -> Result<ExportSummary> {
    let partial = out.with_extension("zip.partial");
    let mut attempt = 0;
    let summary = loop {
        attempt += 1;
        // The log signed as it is now, so that the pack's events are covered by a checkpoint.
        write_checkpoint(conn, now, settings.key, actor)?;
        // One read transaction: every file of the pack describes the same moment even while
        // reviewers keep deciding.
        let written = conn.transaction(|conn| {
            if is_postgres(conn) {
                diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .execute(conn)?;
            }
            write_pack(conn, now, campaign_id, &partial, settings)
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
    Ok(summary)
}

fn write_pack(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    path: &Path,
    settings: PackSettings,
) -> Result<ExportSummary> {
    let key = settings.key;
    let campaign = campaign(conn, campaign_id)?;
    let file = File::create(path)
        .map_err(|e| Error::Io(format!("cannot create {}: {e}", path.display())))?;
    // The fastest deflate level: packs are written often and read once; most of their size
    // is repeated text that compresses well even so.
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        // A campaign's rows can pass 4 GiB (items.jsonl is about 660 bytes an item).
        .large_file(true);
    let mut pack = PackWriter::start(file, options)?;

    // Every item, decided or not (the population an auditor reconciles), and every decision:
    // one pass each. The JSON and exception rows written in the same pass are compressed
    // beside the pack at once and copied in when their turn comes.
    let dir = path.parent().unwrap_or(Path::new("."));
    let ahead = || compress_ahead(dir, options);
    let (mut items_jsonl, mut exceptions_csv) = (ahead()?, ahead()?);
    let item_files = pack.add("items.csv", |out| {
        write_item_files(
            conn,
            &campaign,
            dir,
            out,
            &mut items_jsonl,
            &mut exceptions_csv,
        )
    })?;
    pack.add_compressed("items.jsonl", items_jsonl)?;
    let mut decisions_jsonl = ahead()?;
    let (decisions, decision_tally) = pack.add("decisions.csv", |out| {
        write_decision_files(
            conn,
            &campaign,
            &item_files.reviewers,
            out,
            &mut decisions_jsonl,
        )
    })?;
    pack.add_compressed("decisions.jsonl", decisions_jsonl)?;
    pack.add_compressed("exceptions.csv", exceptions_csv)?;
    pack.add("remediation.csv", |out| {
        write_remediation_csv(conn, campaign_id, out)
    })?;

    // The campaign's events with their proofs, the checkpoint they are proved against, and
    // the key that signed it and this pack's manifest.
    let (size, note) = latest_checkpoint(conn, &key.key_id_hex())?
        .ok_or_else(|| Error::Internal("no checkpoint of the event log by this key".into()))?;
    let tree = tree_of(conn, size)?;
    let (events_listed, events_after) = pack.add("events.jsonl", |out| {
        write_campaign_events(conn, campaign_id, &tree, out)
    })?;
    let consistency = consistency_from_earlier_packs(conn, &tree)?;
    drop(tree);
    pack.add_lines("consistency.jsonl", &consistency)?;
    let verifier_key = key.verifier_key();
    pack.add("checkpoint.txt", |out| Ok(out.write_all(note.as_bytes())?))?;
    pack.add("public-key.txt", |out| {
        Ok(out.write_all(format!("{verifier_key}\n").as_bytes())?)
    })?;
    // How an older key leads to this one, for auditors who trust the older one.
    let rotations = crate::ledger::key_rotation::history(conn)?;
    pack.add_lines(crate::evidence::verify::KEY_HISTORY, &rotations)?;

    let listed = Listed {
        items: item_files.items,
        decisions,
        events: events_listed,
        events_after_checkpoint: events_after,
    };
    let population = population_document(conn, &campaign, &listed)?;
    pack.add_json("population.json", &population)?;
    let by_kind = events_by_kind(conn, campaign_id, size)?;
    let (summary, reviewers) = summarize_campaign(
        &campaign,
        item_files.reviewers,
        item_files.tally,
        decision_tally,
        item_files.exceptions,
        by_kind,
    )?;
    let groups = item_files.groups.merged()?;
    let largest_groups = pack.add("summary.json", |out| {
        write_summary(out, &summary, &reviewers, groups)
    })?;
    let kept_until = campaign.closed_at.map(|closed| {
        keep_until(from_db(closed), settings.retention_years)
            .date_naive()
            .to_string()
    });
    let soc2 = soc2_mapping(
        &summary,
        &reviewers,
        largest_groups.total(),
        settings.retention_years,
        kept_until,
    );
    pack.add_json("soc2.json", &soc2)?;
    let generated_at = now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut files = pack.names.clone();
    files.push("report.html".into());
    let report = render_report(
        &campaign,
        &summary,
        &reviewers,
        &largest_groups,
        &soc2,
        &ReportContext {
            generated_at: generated_at.clone(),
            verifier_key: &verifier_key,
            checkpoint_size: size,
            checkpoint_note: &note,
            files,
        },
    )?;
    pack.add("report.html", |out| Ok(out.write_all(report.as_bytes())?))?;

    let (mut zip, files) = pack.finish()?;
    let manifest = json!({
        "format": PACK_FORMAT,
        "campaign": campaign_id,
        "generated_at": generated_at,
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
        items: listed.items,
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
