//! `[evidence]`: the key that signs the event log's checkpoints, how often they are
//! written, and how long evidence is kept. Checks are in `validate.rs`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// The Ed25519 key that signs checkpoints (32 random bytes, hex). Created on first use
    /// when missing (see `generate_missing_key`); keep it with the database's backups.
    pub signing_key_file: PathBuf,
    /// Create `signing_key_file` when it does not exist (one instance owning its SQLite
    /// database; instances sharing PostgreSQL must be given the same file).
    pub generate_missing_key: bool,
    /// The log's name in each signed checkpoint (C2SP signed-note origin).
    pub origin: String,
    /// Minutes between two checkpoints while events keep coming (and one at every close).
    pub checkpoint_minutes: u64,
    /// Years the evidence of a campaign is kept after it closes; nothing of it is removed
    /// before (and attest removes none of it itself). Stated in every pack.
    pub retention_years: u32,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        EvidenceConfig {
            signing_key_file: PathBuf::from("var/evidence-signing.key"),
            generate_missing_key: true,
            origin: "attest".into(),
            checkpoint_minutes: 60,
            retention_years: 7,
        }
    }
}
