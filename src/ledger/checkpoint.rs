//! Signed checkpoints of the event log: the tree head of its first N events, signed with the
//! instance's Ed25519 key as a C2SP signed note (`origin`, size and base64 tree head, then a
//! signature line naming the key), stored in `checkpoints` and recorded as an event. Anyone
//! with the public key can check offline that a checkpoint is genuine and, with an inclusion
//! proof, that an event is in the log it fixes.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::EvidenceConfig;
use crate::db::schema::{checkpoints, events};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::error::{ConfigProblem, Error, Result};
use crate::ledger::events::{EventKind, append};
use crate::ledger::merkle::{Hash, root};

/// The key that signs checkpoints, with the log's name.
pub struct CheckpointKey {
    signing: SigningKey,
    origin: String,
}

impl std::fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointKey")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl CheckpointKey {
    /// Reads the key file, creating it (mode 0600) with a random key when allowed.
    pub fn from_config(config: &EvidenceConfig) -> Result<CheckpointKey> {
        let path = &config.signing_key_file;
        if !path.exists() && config.generate_missing_key {
            create_key_file(path)?;
        }
        let problem = |detail: String| {
            Error::Config(vec![ConfigProblem::new(
                "evidence.signing_key_file",
                detail,
            )])
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| problem(format!("cannot read {}: {e}", path.display())))?;
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| problem(format!("{} does not hold 32 hex bytes", path.display())))?;
        Ok(CheckpointKey {
            signing: SigningKey::from_bytes(&bytes),
            origin: config.origin.clone(),
        })
    }

    /// A key from its 32 bytes (tests).
    pub fn from_bytes(bytes: &[u8; 32], origin: &str) -> CheckpointKey {
        CheckpointKey {
            signing: SigningKey::from_bytes(bytes),
            origin: origin.to_string(),
        }
    }

    /// The key's id as checkpoints record it (hex).
    pub fn key_id_hex(&self) -> String {
        hex::encode(key_id(
            &self.origin,
            &self.signing.verifying_key().to_bytes(),
        ))
    }

    /// The log's name in its notes.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The C2SP note verifier key: `origin+keyid+base64(0x01 || public key)`.
    pub fn verifier_key(&self) -> String {
        let public = self.signing.verifying_key().to_bytes();
        let mut encoded = vec![1u8];
        encoded.extend_from_slice(&public);
        format!(
            "{}+{}+{}",
            self.origin,
            hex::encode(key_id(&self.origin, &public)),
            BASE64.encode(encoded)
        )
    }

    /// The signed note of a tree head.
    pub fn sign(&self, size: u64, head: &Hash) -> String {
        self.sign_body(&note_body(&self.origin, size, head))
    }

    /// A signed note of any body (lines ending in a newline), e.g. a pack's manifest hash.
    pub fn sign_body(&self, body: &str) -> String {
        let signature = self.signing.sign(body.as_bytes()).to_bytes();
        let public = self.signing.verifying_key().to_bytes();
        let mut line = key_id(&self.origin, &public).to_vec();
        line.extend_from_slice(&signature);
        format!("{body}\n\u{2014} {} {}\n", self.origin, BASE64.encode(line))
    }
}

/// The first four bytes of SHA-256(name || "\n" || 0x01 || public key) (signed-note key id).
fn key_id(origin: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(origin.as_bytes());
    hasher.update(b"\n");
    hasher.update([1u8]);
    hasher.update(public);
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn note_body(origin: &str, size: u64, head: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", BASE64.encode(head))
}

/// Writes a new random key to a temporary file (mode 0600, synced), then links it into
/// place: two instances starting together never see a half-written key, and the second keeps
/// the first one's.
fn create_key_file(path: &Path) -> Result<()> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let temporary = write_private_temporary(path, &bytes)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created the evidence signing key");
            Ok(())
        }
        // Another instance created it first: theirs is the key.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Io(format!("cannot create {}: {e}", path.display()))),
    }
}

/// Writes the key `bytes` (hex) to a new temporary file beside `path`, readable by its owner
/// only and synced to disk; returns the temporary file's path.
pub(crate) fn write_private_temporary(path: &Path, bytes: &[u8; 32]) -> Result<std::path::PathBuf> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut suffix = [0u8; 8];
    rand::rng().fill_bytes(&mut suffix);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", hex::encode(suffix)));
    let temporary = path.with_file_name(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(bytes)).as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(Error::Io(format!(
            "cannot write {}: {e}",
            temporary.display()
        )));
    }
    Ok(temporary)
}

/// A checkpoint as checked: the log's name, its size and tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub origin: String,
    pub size: u64,
    pub head: Hash,
}

/// Checks a signed checkpoint against a verifier key; returns what it fixes.
pub fn verify_note(note: &str, verifier_key: &str) -> Result<VerifiedCheckpoint> {
    let bad = |what: &str| Error::BadRequest(format!("checkpoint refused: {what}"));
    let body = verify_signed(note, verifier_key)?;
    let mut lines = body.lines();
    let (Some(name), Some(size), Some(head)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(bad("the body is not origin, size and tree head"));
    };
    if Some(name) != verifier_key.split('+').next() {
        return Err(bad("the checkpoint names another log than its key"));
    }
    let head: Hash = BASE64
        .decode(head)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| bad("the tree head is not 32 base64 bytes"))?;
    Ok(VerifiedCheckpoint {
        origin: name.to_string(),
        size: size.parse().map_err(|_| bad("the size is not a number"))?,
        head,
    })
}

/// Checks that a signed note carries a valid signature of the verifier key; returns its
/// body (with its final newline).
pub fn verify_signed(note: &str, verifier_key: &str) -> Result<String> {
    let bad = |what: &str| Error::BadRequest(format!("signed note refused: {what}"));
    let mut parts = verifier_key.splitn(3, '+');
    let (origin, id, key) = match (parts.next(), parts.next(), parts.next()) {
        (Some(o), Some(i), Some(k)) => (o, i, k),
        _ => return Err(bad("the verifier key is not name+id+key")),
    };
    let key = BASE64
        .decode(key)
        .map_err(|_| bad("the verifier key is not base64"))?;
    let public: [u8; 32] = match key.as_slice() {
        [1, rest @ ..] => rest.try_into().map_err(|_| bad("not an Ed25519 key"))?,
        _ => return Err(bad("not an Ed25519 key")),
    };
    if hex::encode(key_id(origin, &public)) != id {
        return Err(bad("the verifier key's id does not match its key"));
    }
    // The signature block follows the last blank line and ends with a newline.
    if !note.ends_with('\n') {
        return Err(bad("the note does not end with a newline"));
    }
    let (body, signatures) = note
        .rsplit_once("\n\n")
        .ok_or_else(|| bad("no signature block"))?;
    let body = format!("{body}\n");
    let verifying = VerifyingKey::from_bytes(&public).map_err(|_| bad("not an Ed25519 key"))?;
    let signed = signatures.lines().any(|line| {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return false;
        };
        let Some((name, encoded)) = rest.split_once(' ') else {
            return false;
        };
        let Ok(raw) = BASE64.decode(encoded) else {
            return false;
        };
        name == origin
            && raw.len() == 68
            && raw[..4] == key_id(origin, &public)
            && <[u8; 64]>::try_from(&raw[4..]).is_ok_and(|sig| {
                verifying
                    .verify(body.as_bytes(), &Signature::from_bytes(&sig))
                    .is_ok()
            })
    });
    if !signed {
        return Err(bad("no valid signature by this key"));
    }
    Ok(body)
}

/// Leaf hashes read per query.
const LEAVES_PER_QUERY: i64 = 10_000;

/// Every leaf hash of the log's first `size` events, in order, read a page at a time so that
/// only the 32-byte hashes are held, never their stored text.
pub fn leaf_hashes(conn: &mut DbConnection, size: i64) -> Result<Vec<Hash>> {
    let expected = usize::try_from(size).unwrap_or(0);
    let mut leaves = Vec::with_capacity(expected.min(1 << 20));
    let mut after = 0i64;
    loop {
        let page: Vec<(i64, String)> = events::table
            .filter(events::seq.gt(after))
            .filter(events::seq.le(size))
            .order(events::seq.asc())
            .limit(LEAVES_PER_QUERY)
            .select((events::seq, events::leaf_hash))
            .load(conn)?;
        let Some((last, _)) = page.last() else {
            break;
        };
        after = *last;
        for (seq, text) in page {
            // Leaf i is event i + 1: numbers start at 1 with no gap.
            if usize::try_from(seq).ok() != Some(leaves.len() + 1) {
                return Err(Error::Internal(format!(
                    "the event log has a gap before event {seq}"
                )));
            }
            let mut leaf: Hash = [0; 32];
            hex::decode_to_slice(&text, &mut leaf)
                .map_err(|_| Error::Internal("an event's leaf hash is not 32 hex bytes".into()))?;
            leaves.push(leaf);
        }
    }
    if leaves.len() != expected {
        return Err(Error::Internal(format!(
            "the event log holds {} events where {size} were expected",
            leaves.len()
        )));
    }
    Ok(leaves)
}

/// Signs a checkpoint of the log's committed events, unless one of that size exists; returns
/// its size. Events commit in the order of their numbers (each append holds the log's lock
/// until its commit), so the events up to the highest committed number are a gap-free
/// prefix: they are read and hashed without holding the lock. A checkpoint extends the
/// previous one: its first events must still hash to the previous tree head, under the same
/// key; otherwise nothing is signed and the error says why.
pub fn write_checkpoint(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    key: &CheckpointKey,
    actor: &str,
) -> Result<Option<i64>> {
    let size: i64 = events::table
        .select(diesel::dsl::max(events::seq))
        .first::<Option<i64>>(conn)?
        .unwrap_or(0);
    let previous: Option<(i64, String, String)> = checkpoints::table
        .order(checkpoints::size.desc())
        .select((
            checkpoints::size,
            checkpoints::root_hash,
            checkpoints::key_id,
        ))
        .first(conn)
        .optional()?;
    if size == 0 || previous.as_ref().is_some_and(|p| p.0 >= size) {
        return Ok(None);
    }
    let leaves = leaf_hashes(conn, size)?;
    let public = key.signing.verifying_key().to_bytes();
    let id = hex::encode(key_id(&key.origin, &public));
    if let Some((previous_size, previous_root, previous_key)) = &previous {
        if *previous_key != id && !crate::ledger::key_rotation::endorsed(conn, previous_key, &id)? {
            return Err(Error::Conflict(format!(
                "the evidence key changed: the log's checkpoints are signed by key {previous_key}, \
                 evidence.signing_key_file holds key {id}, and no rotation in the log replaced \
                 the one with the other (`attest rotate-evidence-key`; restart every instance \
                 after a rotation)"
            )));
        }
        let prefix = usize::try_from(*previous_size).unwrap_or(usize::MAX);
        if hex::encode(root(&leaves[..prefix.min(leaves.len())])) != *previous_root {
            return Err(Error::Conflict(format!(
                "the first {previous_size} events no longer hash to the signed checkpoint of \
                 that size: the log was altered; nothing is signed"
            )));
        }
    }
    let head = root(&leaves);
    let note = key.sign(size as u64, &head);
    write_tx(conn, |conn| {
        let known: i64 = checkpoints::table
            .filter(checkpoints::size.ge(size))
            .count()
            .get_result(conn)?;
        if known > 0 {
            return Ok(None);
        }
        diesel::insert_into(checkpoints::table)
            .values((
                checkpoints::size.eq(size),
                checkpoints::root_hash.eq(hex::encode(head)),
                checkpoints::key_id.eq(&id),
                checkpoints::signature.eq(&note),
                checkpoints::created_at.eq(to_db(now)),
            ))
            .execute(conn)?;
        append(
            conn,
            now,
            EventKind::LedgerCheckpoint,
            actor,
            None,
            &json!({ "size": size, "root_hash": hex::encode(head) }),
        )?;
        Ok(Some(size))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_key_file_is_created_private_and_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let config = EvidenceConfig {
            signing_key_file: dir.path().join("keys").join("evidence.key"),
            ..EvidenceConfig::default()
        };
        let first = CheckpointKey::from_config(&config).unwrap();
        let again = CheckpointKey::from_config(&config).unwrap();
        assert_eq!(first.verifier_key(), again.verifier_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&config.signing_key_file)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path().join("keys")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
        let refused = EvidenceConfig {
            signing_key_file: dir.path().join("absent.key"),
            generate_missing_key: false,
            ..EvidenceConfig::default()
        };
        assert!(CheckpointKey::from_config(&refused).is_err());
    }

    #[test]
    fn a_signed_note_verifies_with_its_key_and_not_with_another() {
        let key = CheckpointKey::from_bytes(&[7u8; 32], "attest.test");
        let head = [9u8; 32];
        let note = key.sign(42, &head);
        assert!(note.starts_with("attest.test\n42\n"), "{note}");
        let checked = verify_note(&note, &key.verifier_key()).unwrap();
        assert_eq!(
            checked,
            VerifiedCheckpoint {
                origin: "attest.test".into(),
                size: 42,
                head
            }
        );
        let other = CheckpointKey::from_bytes(&[8u8; 32], "attest.test");
        assert!(verify_note(&note, &other.verifier_key()).is_err());
        let edited = note.replacen("\n42\n", "\n43\n", 1);
        assert!(verify_note(&edited, &key.verifier_key()).is_err());
    }
}
