//! Evidence: the pack an auditor downloads for a campaign (`export`), with one record per
//! review item (`item_records`) and the campaign's events with their inclusion proofs against
//! a signed checkpoint (`proofs`), and the offline check of such a pack (`verify`). It reads
//! the spine and the ledger and changes no review state; the event log itself is `ledger/`.

pub mod export;
pub mod item_records;
pub mod proofs;
pub mod verify;
