//! Pieces of the command line that are about the terminal, not about attest: the campaign,
//! remediation and token commands' output, mail previews, progress display and the printing of a source test. Only
//! `main.rs` uses them.

pub mod admin;
pub mod campaign;
pub mod email;
pub mod progress;
pub mod remediation;
pub mod source_test;
pub mod token;
