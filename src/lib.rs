//! attest: access reviews end to end. The library holds the spine (sources -> directory ->
//! campaigns -> notify -> decisions -> remediation -> evidence) and thin shells around it (`web`, `app`);
//! `main.rs` only parses the command line and calls in here.

pub mod app;
pub mod auth;
pub mod campaigns;
pub mod clock;
pub mod config;
pub mod db;
pub mod decisions;
pub mod demo;
pub mod directory;
pub mod error;
pub mod evidence;
pub mod jobs;
pub mod ledger;
pub mod notify;
pub mod remediation;
pub mod sources;
pub mod web;
