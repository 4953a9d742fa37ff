//! Notify: everything between "a reviewer has items" and "a mail left the building". Mail is
//! queued in the outbox inside the transaction that made it necessary, then a worker claims
//! due rows, issues the review link, renders the digest and hands it to the mailer. Nothing
//! here decides what is reviewed or records decisions.

pub mod digest;
pub mod links;
pub mod mailer;
pub mod outbox;
pub mod pacing;
pub mod preview;
pub mod remediation_notice;
pub mod resend;
pub mod revocation;
pub mod templates;
pub mod worker;

pub use links::{LinkSigner, ReviewClaims};
pub use mailer::Mailer;
pub use templates::MailTemplates;
pub use worker::OutboxWorker;
