//! Reading and editing evidence packs as an attacker would: copy a pack with one entry
//! changed (its manifest left as it was), or reseal it with a key (manifest recomputed and
//! signed, checkpoint re-signed), and read an entry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;

use attest::ledger::checkpoint::CheckpointKey;
use sha2::{Digest, Sha256};

/// Copies a pack with `change` applied, then recomputes its manifest and signs it with `key`
/// (whose verifier key replaces the pack's, and which also re-signs the checkpoint): what
/// someone holding a key would do.
pub fn reseal(
    from: &std::path::Path,
    to: &std::path::Path,
    key: &CheckpointKey,
    change: impl Fn(&str, &mut Vec<u8>),
) {
    use std::io::Write as _;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_entry(&mut archive, "manifest.json")).unwrap();
    let checkpoint = String::from_utf8(read_entry(&mut archive, "checkpoint.txt")).unwrap();
    let mut lines = checkpoint.lines();
    let (_, size, head) = (lines.next(), lines.next().unwrap(), lines.next().unwrap());
    let head: [u8; 32] = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, head)
        .unwrap()
        .try_into()
        .unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    let mut files = Vec::new();
    for file in manifest["files"].as_array().unwrap() {
        let name = file["name"].as_str().unwrap();
        let mut bytes = match name {
            "public-key.txt" => format!("{}\n", key.verifier_key()).into_bytes(),
            "checkpoint.txt" => key.sign(size.parse().unwrap(), &head).into_bytes(),
            _ => read_entry(&mut archive, name),
        };
        change(name, &mut bytes);
        out.start_file(name, options).unwrap();
        out.write_all(&bytes).unwrap();
        files.push(serde_json::json!({
            "name": name,
            "sha256": hex::encode(Sha256::digest(&bytes)),
            "bytes": bytes.len(),
        }));
    }
    let mut resealed = manifest.clone();
    resealed["files"] = serde_json::Value::Array(files);
    let manifest_bytes = serde_json::to_vec_pretty(&resealed).unwrap();
    out.start_file("manifest.json", options).unwrap();
    out.write_all(&manifest_bytes).unwrap();
    out.start_file("manifest.sig", options).unwrap();
    let body = attest::evidence::export::manifest_note_body(
        key.origin(),
        &hex::encode(Sha256::digest(&manifest_bytes)),
    );
    out.write_all(key.sign_body(&body).as_bytes()).unwrap();
    out.finish().unwrap();
}

/// Copies a pack entry by entry, letting `change` edit each entry's bytes.
pub fn rewrite_pack(
    from: &std::path::Path,
    to: &std::path::Path,
    change: impl Fn(&str, &mut Vec<u8>),
) {
    use std::io::Write as _;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    for name in names {
        let mut bytes = read_entry(&mut archive, &name);
        change(&name, &mut bytes);
        out.start_file(name.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
}

pub fn read_entry(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    archive
        .by_name(name)
        .unwrap()
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

/// Copies a pack without the entry `name`.
pub fn without_entry(from: &std::path::Path, to: &std::path::Path, name: &str) {
    use std::io::Write as _;
    let mut archive = zip::ZipArchive::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(to).unwrap());
    let names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
        .filter(|entry| entry != name)
        .collect();
    for entry in names {
        let bytes = read_entry(&mut archive, &entry);
        out.start_file(entry.as_str(), zip::write::SimpleFileOptions::default())
            .unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
}
