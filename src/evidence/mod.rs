//! Evidence: the pack an auditor downloads for a campaign (`export`, written through
//! `pack_writer`) and the offline check of such a pack (`verify`, with `verify_decisions`
//! and `reconcile`). The pack's files each have their module: one record per review item
//! (`item_records`) and per decision (`decision_records`), the exceptions (`exceptions`),
//! each revoked access carried out and proved (`remediation_records`),
//! the figures (`summary`, counted on the way by `tally`), how the population was extracted (`population`), the SOC 2
//! mapping (`soc2`), the report for a person (`report`, drawing `charts`), and the
//! campaign's events with their inclusion proofs against a signed checkpoint (`proofs`).
//! Rows are read on one thread and formatted on another (`row_pipeline`). It
//! reads the spine and the ledger and changes no review state; the event log itself is
//! `ledger/`.

pub mod charts;
pub mod decision_records;
pub mod exceptions;
pub mod export;
pub mod group_runs;
pub mod item_records;
pub mod pack_writer;
pub mod population;
pub mod proofs;
pub mod reconcile;
pub mod remediation_records;
pub mod report;
pub mod reviewer_figures;
pub mod row_pipeline;
pub mod soc2;
pub mod spreadsheet;
pub mod summary;
pub mod tally;
pub mod verify;
pub mod verify_decisions;
