//! `attest verify PACK.zip`: checks an evidence pack offline, with no configuration and no
//! database. The manifest's signature (by the key in the pack, or one the auditor supplies),
//! every file against the manifest, the signed checkpoint, every event's leaf hash and its
//! inclusion proof against that checkpoint, and that the counts reconcile: the items listed
//! are the population, and every decision listed is proved by an event. The first failure is
//! named (file, row or event); nothing else is trusted.

use std::collections::{BTreeSet, HashSet};
use std::io::Read;
use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::evidence::export::manifest_note_body;
use crate::evidence::proofs::ProvenEvent;
use crate::ledger::checkpoint::{verify_note, verify_signed};
use crate::ledger::merkle::{Hash, verify_inclusion};

/// What a pack that verified holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Verified {
    pub campaign: String,
    pub items: u64,
    pub decisions: u64,
    pub events: u64,
    pub checkpoint_size: u64,
    /// The key the pack was checked with (`origin+id+key`).
    pub key: String,
}

fn failed(what: String) -> Error {
    Error::BadRequest(what)
}

struct Pack {
    archive: zip::ZipArchive<std::fs::File>,
}

impl Pack {
    fn read(&mut self, name: &str) -> Result<Vec<u8>> {
        let mut entry = self
            .archive
            .by_name(name)
            .map_err(|_| failed(format!("{name} is missing from the pack")))?;
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn text(&mut self, name: &str) -> Result<String> {
        String::from_utf8(self.read(name)?).map_err(|_| failed(format!("{name} is not UTF-8")))
    }
}

/// Checks the pack at `path`; with `public_key` (a verifier key) instead of the pack's own.
pub fn verify_pack(path: &Path, public_key: Option<&str>) -> Result<Verified> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
    let archive = zip::ZipArchive::new(file)
        .map_err(|e| failed(format!("{} is not a zip archive: {e}", path.display())))?;
    let mut pack = Pack { archive };

    let key = match public_key {
        Some(key) => key.trim().to_string(),
        None => pack.text("public-key.txt")?.trim().to_string(),
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
        let bytes = pack.read(&name)?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        if Some(sha256.as_str()) != file["sha256"].as_str()
            || Some(bytes.len() as u64) != file["bytes"].as_u64()
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
    let mut proved_decisions = HashSet::new();
    let events_text = pack.text("events.jsonl")?;
    let mut events = 0u64;
    for (line, text) in events_text.lines().enumerate() {
        let event: ProvenEvent = serde_json::from_str(text)
            .map_err(|e| failed(format!("events.jsonl line {}: {e}", line + 1)))?;
        check_event(&event, checkpoint.size, &checkpoint.head)
            .map_err(|what| failed(format!("events.jsonl line {}: {what}", line + 1)))?;
        let payload: serde_json::Value = serde_json::from_str(&event.payload).unwrap_or_default();
        match event.kind.as_str() {
            "decision.recorded" => {
                proved_decisions.extend(payload["decision"].as_str().map(str::to_string));
            }
            "decisions.recorded" => {
                for pair in payload["decisions"].as_array().into_iter().flatten() {
                    proved_decisions.extend(pair["decision"].as_str().map(str::to_string));
                }
            }
            _ => {}
        }
        events += 1;
    }

    let population: serde_json::Value = serde_json::from_slice(&pack.read("population.json")?)
        .map_err(|e| failed(format!("population.json: {e}")))?;
    let counts = &population["counts"];
    let items_csv = pack.read("items.csv")?;
    let items = csv::Reader::from_reader(items_csv.as_slice())
        .records()
        .count() as u64;
    let items_jsonl = pack.text("items.jsonl")?.lines().count() as u64;
    if Some(items) != counts["review_items"].as_u64() || items_jsonl != items {
        return Err(failed(format!(
            "items.csv has {items} rows and items.jsonl {items_jsonl}, population.json counts \
             {} review items",
            counts["review_items"]
        )));
    }
    let decisions_text = pack.text("decisions.jsonl")?;
    let mut decisions = 0u64;
    for (line, text) in decisions_text.lines().enumerate() {
        let decision: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| failed(format!("decisions.jsonl line {}: {e}", line + 1)))?;
        let id = decision["decision_id"].as_str().unwrap_or_default();
        if !proved_decisions.contains(id) {
            return Err(failed(format!(
                "decisions.jsonl line {}: decision {id} is not proved by any event of the pack",
                line + 1
            )));
        }
        decisions += 1;
    }
    if Some(decisions) != counts["decisions"].as_u64() {
        return Err(failed(format!(
            "decisions.jsonl has {decisions} decisions, population.json counts {}",
            counts["decisions"]
        )));
    }
    Ok(Verified {
        campaign: manifest["campaign"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        items,
        decisions,
        events,
        checkpoint_size: checkpoint.size,
        key,
    })
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
