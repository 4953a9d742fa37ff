//! Decisions: a reviewer's approve or revoke of one review item (or of several at once),
//! stored as append-only history with who decided, when, why and how they were authenticated,
//! and approvals given until a date expiring into revocations. This module enforces who may
//! decide what; it does not know about HTTP, cookies or mail.

pub mod bulk;
pub mod expiry;
pub mod reasons;
pub mod record;

pub use record::{
    AuthContext, DecisionChecks, DecisionOutcome, DecisionRequest, Recorded,
    record_checked_decision, record_decision,
};
