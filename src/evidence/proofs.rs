//! The campaign's events as the pack carries them (`events.jsonl`): each with the fields its
//! leaf hash is computed from and its inclusion proof against the pack's signed checkpoint,
//! so that `attest verify` can check offline that every one of them is in the log the
//! checkpoint fixes, unaltered. Events after the checkpoint are counted, not listed.

use std::io::Write;

use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::db::DbConnection;
use crate::db::schema::{checkpoints, events};
use crate::db::time::rfc3339;
use crate::error::{Error, Result};
use crate::ledger::EventKind;
use crate::ledger::checkpoint::leaf_hashes;
use crate::ledger::events::Event;
use crate::ledger::merkle::{Tree, consistency_proof, root};

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

/// The log's first `size` events as a tree.
pub fn tree_of(conn: &mut DbConnection, size: i64) -> Result<Tree> {
    Ok(Tree::new(leaf_hashes(conn, size)?))
}

/// Events read per query: few, because one event can be large (the no-response policy's
/// event lists up to a thousand items, 39 KB), and a page is held whole while it is written.
const PAGE: i64 = 50;

/// Writes the campaign's events within `tree` (the log's first events) to `out`, one JSON
/// line each with its proof, a page at a time; returns how many, and how many of its events
/// come later.
pub fn write_campaign_events(
    conn: &mut DbConnection,
    campaign_id: &str,
    tree: &Tree,
    out: &mut impl Write,
) -> Result<(u64, i64)> {
    let size = tree.size() as i64;
    let mut after = 0i64;
    let mut listed = 0u64;
    loop {
        let page: Vec<Event> = events::table
            .filter(events::subject.eq(campaign_id))
            .filter(events::seq.gt(after))
            .filter(events::seq.le(size))
            .order(events::seq.asc())
            .limit(PAGE)
            .select(Event::as_select())
            .load(conn)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in page {
            let index = usize::try_from(event.seq - 1)
                .map_err(|_| Error::Internal("an event numbered below 1".into()))?;
            let proof = tree.proof(index).ok_or_else(|| {
                Error::Internal(format!("event {} is not in the tree", event.seq))
            })?;
            let proven = ProvenEvent {
                seq: event.seq,
                kind: event.kind,
                actor: event.actor,
                occurred_at: rfc3339(event.occurred_at),
                subject: event.subject,
                payload: event.payload,
                leaf_hash: event.leaf_hash,
                proof: proof.iter().map(hex::encode).collect(),
            };
            serde_json::to_writer(&mut *out, &proven)?;
            out.write_all(b"\n")?;
            listed += 1;
        }
    }
    let later: i64 = events::table
        .filter(events::subject.eq(campaign_id))
        .filter(events::seq.gt(size))
        .count()
        .get_result(conn)?;
    Ok((listed, later))
}

/// A proof that an earlier checkpoint's log is a prefix of the pack's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConsistencyLine {
    pub from_size: i64,
    /// The earlier checkpoint's tree head (hex).
    pub from_head: String,
    /// Hashes (hex) of the RFC 6962 consistency proof to the pack's checkpoint.
    pub proof: Vec<String>,
}

/// Consistency proofs from the checkpoints earlier packs were built on (their exports record
/// them) to `tree`: an auditor holding an earlier pack checks that the log only grew.
pub fn consistency_from_earlier_packs(
    conn: &mut DbConnection,
    tree: &Tree,
) -> Result<Vec<ConsistencyLine>> {
    let payloads: Vec<String> = events::table
        .filter(events::kind.eq(EventKind::EvidenceExported.as_str()))
        .select(events::payload)
        .load(conn)?;
    let mut sizes: Vec<i64> = payloads
        .iter()
        .filter_map(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .filter_map(|p| p["checkpoint_size"].as_i64())
        .filter(|size| *size > 0 && *size <= tree.size() as i64)
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    let leaves = tree.leaves();
    sizes
        .into_iter()
        .map(|size| {
            let old = usize::try_from(size).unwrap_or(0);
            let proof = consistency_proof(leaves, old)
                .ok_or_else(|| Error::Internal(format!("no consistency proof from {size}")))?;
            Ok(ConsistencyLine {
                from_size: size,
                from_head: hex::encode(root(&leaves[..old])),
                proof: proof.iter().map(hex::encode).collect(),
            })
        })
        .collect()
}
