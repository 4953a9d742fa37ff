//! The ledger: the append-only event log that every state change of the spine writes in the
//! same transaction as the change (`events`), and the RFC 6962 Merkle tree over its entries
//! (`merkle`) with its signed checkpoints (`checkpoint`), inclusion proofs, and the rotation of
//! the key that signs them (`key_rotation`). It is a foundation:
//! it imports no other module of the spine, and the evidence pack (`evidence/`) reads it.

pub mod checkpoint;
pub mod events;
pub mod key_rotation;
pub mod merkle;

pub use events::{EventBatch, EventKind, append};
