//! The one integration-test binary: attest against real slapd, maildev, SQLite and PostgreSQL,
//! started by `tests/support` on free loopback ports.

#[path = "../support/mod.rs"]
mod support;

mod access_log;
mod active_directory;
mod admin_api;
mod append_only;
mod auditor_api;
mod binary;
mod browser;
mod campaigns;
mod checkpoints;
mod common;
mod concurrency;
mod config_cli;
mod config_loaded;
mod console_admin;
mod decision_actions;
mod demo;
mod directory;
mod directory_schemas;
mod end_to_end;
mod evidence_pack;
mod follow_up;
mod generation_faults;
mod hostile_names;
mod item_references;
mod key_rotation;
mod link_revocation;
mod off_cycle;
mod oidc_source;
mod open_review;
mod outbox;
mod pack_files;
mod remediation_ldap;
mod remediation_modes;
mod remediation_steps;
mod review_page;
mod review_security;
mod reviewer_sso;
mod revocation_races;
mod scheduling;
mod sign_in_limits;
mod source_cli;
mod source_faults;
mod staff_console;
mod stages;
mod sync;
