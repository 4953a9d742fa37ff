//! Evidence: the append-only event log every state change writes to, and the export pack an
//! auditor downloads for a campaign. Nothing here changes review state; it records and reads.

pub mod events;
pub mod export;
pub mod item_records;

pub use events::{EventBatch, EventKind, append};
