//! `attest verify PACK.zip`: checks an evidence pack offline, with no configuration and no
//! database. The manifest's signature (by the key in the pack, or one the auditor supplies),
//! every file against the manifest, the signed checkpoint, every event's leaf hash and its
//! inclusion proof against that checkpoint, and that the counts reconcile: the items listed
//! are the population, the summary and the exceptions are what the items say
//! (`reconcile`), and every decision listed is proved by an event. Given an earlier
//! pack's checkpoint, that the log only grew since (a consistency proof). The first failure
//! is named (file, row or event); nothing else is trusted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, Read};
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::evidence::export::{PACK_FORMAT_WITHOUT_REMEDIATION, manifest_note_body};
use crate::evidence::proofs::{ConsistencyLine, ProvenEvent};
use crate::evidence::reconcile::{ItemFacts, reconcile_items};
use crate::evidence::remediation_records::RemediationProofs;
use crate::evidence::summary::Summary;
use crate::evidence::verify_decisions::{ProvedDecision, check_decisions, instant};
use crate::ledger::checkpoint::{verify_note, verify_signed};
use crate::ledger::key_rotation::{KeyEndorsement, chain_to};
use crate::ledger::merkle::{Hash, verify_consistency, verify_inclusion};

/// What a pack that verified holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verified {
    pub campaign: String,
    pub items: u64,
    pub decisions: u64,
    pub events: u64,
    pub checkpoint_size: u64,
    /// The key that signed the pack (`origin+id+key`).
    pub key: String,
    /// Key rotations followed from the trusted key to that one (0 without rotation).
    pub rotations: usize,
}

/// The pack's file of key rotations (`ledger::key_rotation`), one JSON line each.
pub const KEY_HISTORY: &str = "key-history.jsonl";

fn failed(what: String) -> Error {
    Error::BadRequest(what)
}

struct Pack {
    path: std::path::PathBuf,
    archive: zip::ZipArchive<std::fs::File>,
    /// Which file this is (device and inode), so that a second handle reads the same one.
    identity: (u64, u64),
}

#[cfg(unix)]
fn identity_of(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = file.metadata()?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn identity_of(file: &std::fs::File) -> std::io::Result<(u64, u64)> {
    Ok((file.metadata()?.len(), 0))
}

impl Pack {
    fn open(path: &Path) -> Result<Pack> {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
        let identity = identity_of(&file)?;
        let archive = zip::ZipArchive::new(file)
            .map_err(|e| failed(format!("{} is not a zip archive: {e}", path.display())))?;
        Ok(Pack {
            path: path.to_path_buf(),
            archive,
            identity,
        })
    }

    /// Another handle on the same pack (the same file, not one put in its place since), to
    /// read two of its files side by side.
    fn again(&self) -> Result<Pack> {
        let other = Pack::open(&self.path)?;
        if other.identity != self.identity {
            return Err(failed(format!(
                "{} was replaced while it was being checked",
                self.path.display()
            )));
        }
        Ok(other)
    }

    /// One file, streamed.
    fn entry(&mut self, name: &str) -> Result<zip::read::ZipFile<'_, std::fs::File>> {
        self.archive
            .by_name(name)
            .map_err(|_| failed(format!("{name} is missing from the pack")))
    }

    /// A small file, whole.
    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.entry(name)?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn text(&mut self, name: &str) -> Result<String> {
        String::from_utf8(self.read(name)?).map_err(|_| failed(format!("{name} is not UTF-8")))
    }

    /// A file's SHA-256 (hex) and size, streamed.
    fn hash(&mut self, name: &str) -> Result<(String, u64)> {
        let mut hasher = Sha256::new();
        let bytes = std::io::copy(&mut self.entry(name)?, &mut hasher)?;
        Ok((hex::encode(hasher.finalize()), bytes))
    }
}

/// Checks the pack at `path`; with `public_key` (a verifier key) instead of the pack's own,
/// and with `previous` (an earlier pack's signed checkpoint) that the log only grew since.
pub fn verify_pack(
    path: &Path,
    public_key: Option<&str>,
    previous: Option<&str>,
) -> Result<Verified> {
    let mut pack = Pack::open(path)?;

    let key = pack.text("public-key.txt")?.trim().to_string();
    // The keys trusted along the way: the one given, then each its rotations endorsed, up to
    // the key that signed this pack.
    let trusted_keys = match public_key.map(str::trim) {
        Some(trusted) if trusted != key => {
            let rotations: Vec<KeyEndorsement> = match pack.archive.index_for_name(KEY_HISTORY) {
                Some(_) => pack
                    .text(KEY_HISTORY)?
                    .lines()
                    .map(serde_json::from_str)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| failed(format!("{KEY_HISTORY}: {e}")))?,
                None => Vec::new(),
            };
            chain_to(trusted, &key, &rotations).map_err(failed)?
        }
        _ => vec![key.clone()],
    };
    let origin = key.split('+').next().unwrap_or_default().to_string();
    let manifest_bytes = pack.read("manifest.json")?;
    let signed = verify_signed(&pack.text("manifest.sig")?, &key)
        .map_err(|e| failed(format!("manifest.sig: {e}")))?;
    let expected = manifest_note_body(&origin, &hex::encode(Sha256::digest(&manifest_bytes)));
    if signed != expected {
        return Err(failed(
            "manifest.sig signs another manifest than manifest.json".into(),
        ));
    }
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| failed(format!("manifest.json: {e}")))?;
    let listed = manifest["files"]
        .as_array()
        .ok_or_else(|| failed("manifest.json lists no files".into()))?;
    let mut names = BTreeSet::new();
    for file in listed {
        let name = file["name"].as_str().unwrap_or_default().to_string();
        let (sha256, bytes) = pack.hash(&name)?;
        if Some(sha256.as_str()) != file["sha256"].as_str() || Some(bytes) != file["bytes"].as_u64()
        {
            return Err(failed(format!(
                "{name} differs from its hash in the manifest"
            )));
        }
        names.insert(name);
    }
    let entries: Vec<String> = pack
        .archive
        .file_names()
        .map(|name| name.map(|n| n.to_string()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| failed(format!("the pack's entries cannot be read: {e}")))?;
    for name in entries {
        if !names.contains(&name) && name != "manifest.json" && name != "manifest.sig" {
            return Err(failed(format!(
                "{name} is in the pack but not in its manifest"
            )));
        }
    }

    let checkpoint = verify_note(&pack.text("checkpoint.txt")?, &key)
        .map_err(|e| failed(format!("checkpoint.txt: {e}")))?;
    if let Some(previous) = previous {
        check_consistency(&mut pack, previous, &trusted_keys, &checkpoint)?;
    }
    let campaign = manifest["campaign"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // What each proved decision event says: decision id -> its fields.
    let mut proved: HashMap<String, ProvedDecision> = HashMap::new();
    let mut opened_items = None;
    // What the events say of single items: the no-response outcome, an expired approval.
    let mut facts = ItemFacts::default();
    let mut opened_due = None;
    let mut closed_at = None;
    let events_file = std::io::BufReader::new(pack.entry("events.jsonl")?);
    let mut events = 0u64;
    let mut events_by_kind: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_seq: Option<i64> = None;
    let mut remediation = RemediationProofs::default();
    for (line, text) in events_file.lines().enumerate() {
        let at_line = |what: String| failed(format!("events.jsonl line {}: {what}", line + 1));
        let text = text.map_err(|e| at_line(e.to_string()))?;
        let event: ProvenEvent = serde_json::from_str(&text).map_err(|e| at_line(e.to_string()))?;
        check_event(&event, checkpoint.size, &checkpoint.head).map_err(at_line)?;
        // In log order, each once: a reordered or repeated line is an edit.
        if last_seq.is_some_and(|last| event.seq <= last) {
            return Err(at_line(format!(
                "event {} is out of log order (after event {})",
                event.seq,
                last_seq.unwrap_or_default()
            )));
        }
        last_seq = Some(event.seq);
        if event.subject.as_deref() != Some(campaign.as_str()) {
            return Err(at_line(format!(
                "event {} is not about campaign {campaign}",
                event.seq
            )));
        }
        let payload: serde_json::Value = serde_json::from_str(&event.payload)
            .map_err(|e| at_line(format!("event {}: {e}", event.seq)))?;
        match event.kind.as_str() {
            "campaign.opened" => {
                if opened_due.is_some() {
                    return Err(at_line("a second campaign.opened event".into()));
                }
                opened_items = payload["items"].as_u64();
                opened_due = payload["due_at"].as_str().and_then(instant);
            }
            "campaign.closed" => {
                if closed_at.is_some() {
                    return Err(at_line("a second campaign.closed event".into()));
                }
                closed_at = instant(&event.occurred_at);
            }
            "decision.recorded" | "decisions.recorded" => {
                let single = [serde_json::json!({
                    "decision": payload["decision"],
                    "item": payload["item"],
                })];
                let pairs = match payload["decisions"].as_array() {
                    Some(pairs) => pairs.as_slice(),
                    None => &single,
                };
                for pair in pairs {
                    let id = pair["decision"].as_str().unwrap_or_default().to_string();
                    let proof = ProvedDecision::of(&payload, &pair["item"], &event.occurred_at);
                    if proved.insert(id.clone(), proof).is_some() {
                        return Err(at_line(format!("decision {id} is proved twice")));
                    }
                }
            }
            "items.unanswered" => {
                let outcome = payload["outcome"].as_str().unwrap_or_default();
                for item in payload["items"].as_array().into_iter().flatten() {
                    let item = item.as_str().unwrap_or_default().to_string();
                    if facts.unanswered.insert(item, outcome.to_string()).is_some() {
                        return Err(at_line("an item is unanswered twice".into()));
                    }
                }
            }
            "items.advanced" => {
                for item in payload["items"].as_array().into_iter().flatten() {
                    facts
                        .advanced
                        .insert(item.as_str().unwrap_or_default().to_string());
                }
            }
            "approvals.expired" => {
                for item in payload["items"].as_array().into_iter().flatten() {
                    facts
                        .expired
                        .insert(item.as_str().unwrap_or_default().to_string());
                }
            }
            kind if kind.starts_with("remediation.") => remediation.record(kind, &payload),
            _ => {}
        }
        *events_by_kind.entry(event.kind.clone()).or_insert(0) += 1;
        events += 1;
    }

    let population: serde_json::Value = serde_json::from_slice(&pack.read("population.json")?)
        .map_err(|e| failed(format!("population.json: {e}")))?;
    let counts = &population["counts"];
    let summary: Summary = serde_json::from_slice(&pack.read("summary.json")?)
        .map_err(|e| failed(format!("summary.json: {e}")))?;
    if summary.campaign != campaign {
        return Err(failed(format!(
            "summary.json is about campaign {}, the pack about {campaign}",
            summary.campaign
        )));
    }
    if summary.events_by_kind != events_by_kind {
        return Err(failed(format!(
            "summary.json counts the events {:?}, events.jsonl holds {events_by_kind:?}",
            summary.events_by_kind
        )));
    }
    // The dates the timeliness is judged by are the proved events', not the summary's word.
    let due_at = opened_due.ok_or_else(|| {
        failed("events.jsonl has no proved campaign.opened event with its due date".into())
    })?;
    if instant(&summary.timeliness.due_at) != Some(due_at) {
        return Err(failed(format!(
            "summary.json: the due date {} is not the one the campaign.opened event proves",
            summary.timeliness.due_at
        )));
    }
    if summary.timeliness.closed_at.as_deref().and_then(instant) != closed_at {
        return Err(failed(
            "summary.json: the close time is not the one the campaign.closed event proves".into(),
        ));
    }
    let totals = &summary.totals;
    for (name, said) in [
        ("review_items", totals.items),
        ("approved", totals.approved),
        ("revoked", totals.revoked),
        ("pending", totals.pending),
        ("no_response", totals.no_response),
    ] {
        if counts[name].as_u64() != Some(said) {
            return Err(failed(format!(
                "population.json counts {} {name}, summary.json {said}",
                counts[name]
            )));
        }
    }
    // Files read side by side from several handles on the pack, line by line.
    let (mut second, mut third) = (pack.again()?, pack.again()?);
    let mut decisions = check_decisions(
        std::io::BufReader::new(pack.entry("decisions.jsonl")?),
        second.entry("decisions.csv")?,
        proved,
        &campaign,
        due_at,
    )?;
    decisions.check_summary(&summary)?;
    let items = reconcile_items(
        second.entry("items.csv")?,
        std::io::BufReader::new(pack.entry("items.jsonl")?),
        third.entry("exceptions.csv")?,
        &mut decisions,
        &facts,
        &summary,
    )?;
    if Some(items) != counts["review_items"].as_u64() || opened_items != Some(items) {
        return Err(failed(format!(
            "items.csv lists {items} items; population.json counts {} review items and the \
             proved campaign.opened event {}",
            counts["review_items"],
            opened_items.map_or("is missing".to_string(), |n| format!("says {n}"))
        )));
    }
    if Some(decisions.count) != counts["decisions"].as_u64() {
        return Err(failed(format!(
            "decisions.jsonl has {} decisions, population.json counts {}",
            decisions.count, counts["decisions"]
        )));
    }
    // Packs written before remediation have no remediation.csv; later ones must.
    if manifest["format"] != PACK_FORMAT_WITHOUT_REMEDIATION {
        remediation.check(pack.entry("remediation.csv")?)?;
    }
    Ok(Verified {
        campaign: manifest["campaign"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        items,
        decisions: decisions.count,
        events,
        checkpoint_size: checkpoint.size,
        key,
        rotations: trusted_keys.len() - 1,
    })
}

/// The earlier checkpoint is signed by the same key and its log is a prefix of the pack's.
fn check_consistency(
    pack: &mut Pack,
    previous: &str,
    keys: &[String],
    now: &crate::ledger::checkpoint::VerifiedCheckpoint,
) -> Result<()> {
    // Signed by the pack's key or, before a rotation, by one that led to it.
    let earlier = keys
        .iter()
        .rev()
        .find_map(|key| verify_note(previous, key).ok())
        .ok_or_else(|| {
            failed("the previous checkpoint: no valid signature by a key trusted here".into())
        })?;
    if earlier.size == now.size {
        return if earlier.head == now.head {
            Ok(())
        } else {
            Err(failed(
                "the previous checkpoint has the same size but another tree head: the log \
                 was rewritten"
                    .into(),
            ))
        };
    }
    let text = pack.text("consistency.jsonl")?;
    let line = text
        .lines()
        .filter_map(|l| serde_json::from_str::<ConsistencyLine>(l).ok())
        .find(|l| l.from_size as u64 == earlier.size)
        .ok_or_else(|| {
            failed(format!(
                "consistency.jsonl has no proof from a checkpoint of {} events",
                earlier.size
            ))
        })?;
    let proof = line
        .proof
        .iter()
        .map(|h| hex::decode(h).ok().and_then(|b| <Hash>::try_from(b).ok()))
        .collect::<Option<Vec<Hash>>>()
        .ok_or_else(|| failed("consistency.jsonl: a hash is not 32 hex bytes".into()))?;
    if !verify_consistency(earlier.size, now.size, &earlier.head, &now.head, &proof) {
        return Err(failed(format!(
            "the log of the previous checkpoint ({} events) is not a prefix of the pack's ({} \
             events): the log was rewritten",
            earlier.size, now.size
        )));
    }
    Ok(())
}

/// An event's leaf hash recomputed from its fields, and its proof against the checkpoint.
fn check_event(event: &ProvenEvent, size: u64, head: &Hash) -> std::result::Result<(), String> {
    let at = chrono::DateTime::parse_from_rfc3339(&event.occurred_at)
        .map_err(|_| "its time is not RFC 3339".to_string())?
        .with_timezone(&chrono::Utc);
    let leaf = crate::ledger::events::leaf_hash(
        event.seq,
        &event.kind,
        &event.actor,
        at,
        event.subject.as_deref(),
        &event.payload,
    );
    if leaf != event.leaf_hash {
        return Err(format!(
            "event {} does not hash to its leaf hash",
            event.seq
        ));
    }
    let to_hash = |text: &str| -> std::result::Result<Hash, String> {
        hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("event {}: a hash is not 32 hex bytes", event.seq))
    };
    let proof = event
        .proof
        .iter()
        .map(|h| to_hash(h))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let index = u64::try_from(event.seq - 1).map_err(|_| "a sequence below 1".to_string())?;
    if !verify_inclusion(&to_hash(&leaf)?, index, size, &proof, head) {
        return Err(format!(
            "event {} is not in the log the checkpoint signs",
            event.seq
        ));
    }
    Ok(())
}
