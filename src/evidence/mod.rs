//! Evidence: the pack an auditor downloads for a campaign (`export`), with one record per
//! review item (`item_records`). It reads the spine and the ledger and changes no review
//! state; the event log itself is `ledger/`.

pub mod export;
pub mod item_records;
