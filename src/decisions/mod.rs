//! Decisions: a reviewer's approve or revoke of one review item, stored as append-only history
//! with who decided, when, why and how they were authenticated. This module enforces who may
//! decide what; it does not know about HTTP, cookies or mail.

pub mod record;

pub use record::{AuthContext, DecisionOutcome, DecisionRequest, Recorded, record_decision};
