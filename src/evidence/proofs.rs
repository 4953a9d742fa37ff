//! The campaign's events as the pack carries them (`events.jsonl`): each with the fields its
//! leaf hash is computed from and its inclusion proof against the pack's signed checkpoint,
//! so that `attest verify` can check offline that every one of them is in the log the
//! checkpoint fixes, unaltered. Events after the checkpoint are counted, not listed.

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::DbConnection;
use crate::db::schema::{checkpoints, events};
use crate::db::time::from_db;
use crate::error::{Error, Result};
use crate::ledger::checkpoint::leaf_hashes;
use crate::ledger::events::Event;
use crate::ledger::merkle::Tree;

/// One event of the campaign with its proof.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvenEvent {
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    /// RFC 3339 with microseconds, as the leaf hash encodes it.
    pub occurred_at: String,
    pub subject: Option<String>,
    pub payload: String,
    pub leaf_hash: String,
    /// Sibling hashes (hex) from the leaf up to the checkpoint's tree head.
    pub proof: Vec<String>,
}

/// The latest checkpoint signed by the key with this id: (size, signed note).
pub fn latest_checkpoint(conn: &mut DbConnection, key_id: &str) -> Result<Option<(i64, String)>> {
    Ok(checkpoints::table
        .filter(checkpoints::key_id.eq(key_id))
        .order(checkpoints::size.desc())
        .select((checkpoints::size, checkpoints::signature))
        .first(conn)
        .optional()?)
}

/// The campaign's events within the first `size` of the log, with their proofs, and how many
/// of its events come later.
pub fn campaign_events(
    conn: &mut DbConnection,
    campaign_id: &str,
    size: i64,
) -> Result<(Vec<ProvenEvent>, i64)> {
    let all: Vec<Event> = events::table
        .filter(events::subject.eq(campaign_id))
        .order(events::seq.asc())
        .select(Event::as_select())
        .load(conn)?;
    let later = all.iter().filter(|e| e.seq > size).count() as i64;
    let tree = Tree::new(leaf_hashes(conn, size)?);
    let mut proven = Vec::with_capacity(all.len());
    for event in all.into_iter().filter(|e| e.seq <= size) {
        let index = usize::try_from(event.seq - 1)
            .map_err(|_| Error::Internal("an event numbered below 1".into()))?;
        let proof = tree
            .proof(index)
            .ok_or_else(|| Error::Internal(format!("event {} is not in the tree", event.seq)))?;
        proven.push(ProvenEvent {
            seq: event.seq,
            kind: event.kind,
            actor: event.actor,
            occurred_at: from_db(event.occurred_at)
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            subject: event.subject,
            payload: event.payload,
            leaf_hash: event.leaf_hash,
            proof: proof.iter().map(hex::encode).collect(),
        });
    }
    Ok((proven, later))
}
