//! The append-only evidence log. Every state change in the spine calls [`append`] inside the
//! same transaction as the change, so the change and its event commit or fail together.
//! Rows are only ever inserted: this module has no update or delete, and the database refuses
//! both with a trigger. Each row carries a leaf hash over its canonical content, on which the
//! tamper-evident tree of a later stage is built.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::schema::events;
use crate::db::time::{from_db, to_db};
use crate::db::{DbConnection, is_postgres};
use crate::error::Result;

/// What happened. The string forms are part of the evidence format: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    SyncStarted,
    SyncSucceeded,
    SyncFailed,
    CampaignOpened,
    CampaignClosed,
    /// A close at the due date waits for an admin to confirm its revocations.
    CampaignCloseHeld,
    /// Undecided items moved to another reviewer (escalation, "don't know", a reviewer
    /// who left), with the reason.
    ItemsReassigned,
    /// At close, the items nobody decided, with the no-response outcome they got.
    ItemsUnanswered,
    /// A campaign reviewed in stages moved on to its next stage.
    CampaignStageAdvanced,
    /// Items that went on to the next stage, with their new reviewer.
    ItemsAdvanced,
    MailQueued,
    MailSent,
    MailRetryScheduled,
    MailDeadLettered,
    MailCancelled,
    LinkIssued,
    LinkRevoked,
    DecisionRecorded,
    /// Several undecided items decided at once by one reviewer, with one comment.
    DecisionsRecorded,
    /// Approvals given until a date reached it and became revocations.
    ApprovalsExpired,
    EvidenceExported,
    JobGivenUp,
    /// A signed checkpoint of the log was written (its size and tree head).
    LedgerCheckpoint,
    /// The evidence signing key was replaced: the old and new keys, and the old key's signed
    /// endorsement of the new one.
    EvidenceKeyRotated,
    /// An instance started with a configuration (its fingerprint, and whether it changed).
    ConfigLoaded,
    /// An API token was issued to a staff member, with its role and expiry (never the secret).
    ApiTokenCreated,
    ApiTokenRevoked,
    /// A staff member signed in through the identity provider (role, how they
    /// authenticated: `acr`, `amr`), or was refused (why).
    StaffSignedIn,
    StaffSignInRefused,
    StaffSignedOut,
    /// An admin made a one-time sign-in link for a staff member (never the secret).
    StaffSignInLinkCreated,
    /// Revoked accesses became remediation tasks (their items, and why they are revoked).
    RemediationTasksCreated,
    /// A task was carried out: the change written (group, attribute) or the webhook accepted.
    RemediationExecuted,
    /// IT closed a manual task, with its ticket reference.
    RemediationDone,
    /// A task failed, with the directory's or the receiver's error, and when it is retried.
    RemediationFailed,
    /// A task was not carried out because its group is protected.
    RemediationBlocked,
    /// A later sync no longer shows the access (the run that proved it).
    RemediationVerified,
    /// A later sync still shows the access after it was carried out (an alert).
    RemediationStillPresent,
    /// An access removed and proved gone is back within the configured window (an alert).
    RemediationRegranted,
    /// An admin asked for a failed, blocked or still-present task to be tried again.
    RemediationRetried,
    /// A task was dropped before it was carried out: the access is no longer revoked.
    RemediationCancelled,
    /// A reviewer signed in at the provider as the person their review is addressed to
    /// (`review.require_sso`), with how (`acr`, `amr`); or was refused (another account).
    ReviewerSignedIn,
    ReviewerSignInRefused,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SyncStarted => "sync.started",
            EventKind::SyncSucceeded => "sync.succeeded",
            EventKind::SyncFailed => "sync.failed",
            EventKind::CampaignOpened => "campaign.opened",
            EventKind::CampaignClosed => "campaign.closed",
            EventKind::CampaignCloseHeld => "campaign.close_held",
            EventKind::ItemsReassigned => "items.reassigned",
            EventKind::ItemsUnanswered => "items.unanswered",
            EventKind::CampaignStageAdvanced => "campaign.stage_advanced",
            EventKind::ItemsAdvanced => "items.advanced",
            EventKind::MailQueued => "mail.queued",
            EventKind::MailSent => "mail.sent",
            EventKind::MailRetryScheduled => "mail.retry_scheduled",
            EventKind::MailDeadLettered => "mail.dead_lettered",
            EventKind::MailCancelled => "mail.cancelled",
            EventKind::LinkIssued => "link.issued",
            EventKind::LinkRevoked => "link.revoked",
            EventKind::DecisionRecorded => "decision.recorded",
            EventKind::DecisionsRecorded => "decisions.recorded",
            EventKind::ApprovalsExpired => "approvals.expired",
            EventKind::EvidenceExported => "evidence.exported",
            EventKind::JobGivenUp => "job.given_up",
            EventKind::LedgerCheckpoint => "ledger.checkpoint",
            EventKind::EvidenceKeyRotated => "evidence.key_rotated",
            EventKind::ConfigLoaded => "config.loaded",
            EventKind::ApiTokenCreated => "api_token.created",
            EventKind::ApiTokenRevoked => "api_token.revoked",
            EventKind::StaffSignedIn => "staff.signed_in",
            EventKind::StaffSignInRefused => "staff.sign_in_refused",
            EventKind::StaffSignedOut => "staff.signed_out",
            EventKind::StaffSignInLinkCreated => "staff.sign_in_link_created",
            EventKind::RemediationTasksCreated => "remediation.tasks_created",
            EventKind::RemediationExecuted => "remediation.executed",
            EventKind::RemediationDone => "remediation.done",
            EventKind::RemediationFailed => "remediation.failed",
            EventKind::RemediationBlocked => "remediation.blocked",
            EventKind::RemediationVerified => "remediation.verified",
            EventKind::RemediationStillPresent => "remediation.still_present",
            EventKind::RemediationRegranted => "remediation.regranted",
            EventKind::RemediationRetried => "remediation.retried",
            EventKind::RemediationCancelled => "remediation.cancelled",
            EventKind::ReviewerSignedIn => "reviewer.signed_in",
            EventKind::ReviewerSignInRefused => "reviewer.sign_in_refused",
        }
    }
}

/// One event as stored.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = events)]
pub struct Event {
    pub seq: i64,
    pub kind: String,
    pub actor: String,
    #[serde(serialize_with = "serialize_naive_utc")]
    pub occurred_at: chrono::NaiveDateTime,
    pub subject: Option<String>,
    pub payload: String,
    pub leaf_hash: String,
}

fn serialize_naive_utc<S: serde::Serializer>(
    t: &chrono::NaiveDateTime,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&from_db(*t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// `None` is written as NULL (not DEFAULT), so that SQLite takes many rows per INSERT.
#[derive(Insertable)]
#[diesel(table_name = events, treat_none_as_default_value = false)]
struct NewEventRow<'a> {
    seq: i64,
    kind: &'a str,
    actor: &'a str,
    occurred_at: chrono::NaiveDateTime,
    subject: Option<&'a str>,
    payload: &'a str,
    leaf_hash: &'a str,
}

/// Events per INSERT statement of a batch (7 columns).
const EVENT_ROWS_PER_INSERT: usize = 1_000;

/// Arbitrary 64-bit key of the advisory lock that orders appends on PostgreSQL.
const EVENT_LOG_LOCK: i64 = 0x6174_7465_7374_0001;

/// Takes the event log's lock (PostgreSQL: until commit; SQLite's write lock already holds it)
/// and returns the next sequence number.
fn lock_log_and_next_seq(conn: &mut DbConnection) -> Result<i64> {
    if is_postgres(conn) {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(EVENT_LOG_LOCK)
            .execute(conn)?;
    }
    let last: Option<i64> = events::table
        .select(diesel::dsl::max(events::seq))
        .first(conn)?;
    Ok(last.unwrap_or(0) + 1)
}

/// Appends one event; returns its sequence number. Must run inside the caller's write
/// transaction. Sequence numbers are gapless: appends are serialised (an advisory transaction
/// lock on PostgreSQL, the immediate write lock on SQLite).
pub fn append(
    conn: &mut DbConnection,
    at: DateTime<Utc>,
    kind: EventKind,
    actor: &str,
    subject: Option<&str>,
    payload: &serde_json::Value,
) -> Result<i64> {
    let seq = lock_log_and_next_seq(conn)?;
    let payload_text = serde_json::to_string(payload)?;
    let occurred_at = to_db(at);
    let leaf_hash = leaf_hash(seq, kind.as_str(), actor, at, subject, &payload_text);
    diesel::insert_into(events::table)
        .values(NewEventRow {
            seq,
            kind: kind.as_str(),
            actor,
            occurred_at,
            subject,
            payload: &payload_text,
            leaf_hash: &leaf_hash,
        })
        .execute(conn)?;
    Ok(seq)
}

/// Events to append at the end of a transaction that changes several rows. On PostgreSQL an
/// append holds the event log's lock until commit; taken after the row changes, it is the last
/// lock the transaction waits for, so it can never be held while waiting for a row that
/// another transaction locked before asking for the event log.
#[derive(Debug, Default)]
pub struct EventBatch {
    events: Vec<(EventKind, Option<String>, serde_json::Value)>,
}

impl EventBatch {
    pub fn push(&mut self, kind: EventKind, subject: Option<&str>, payload: serde_json::Value) {
        self.events
            .push((kind, subject.map(str::to_string), payload));
    }

    /// Appends every event, in the order pushed: the log's lock and last number are taken
    /// once, and rows go in multi-row inserts.
    pub fn append_all(self, conn: &mut DbConnection, at: DateTime<Utc>, actor: &str) -> Result<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let first = lock_log_and_next_seq(conn)?;
        let occurred_at = to_db(at);
        let texts = self
            .events
            .iter()
            .enumerate()
            .map(|(i, (kind, subject, payload))| {
                let payload_text = serde_json::to_string(payload)?;
                let seq = first + i as i64;
                let hash = leaf_hash(
                    seq,
                    kind.as_str(),
                    actor,
                    at,
                    subject.as_deref(),
                    &payload_text,
                );
                Ok((seq, payload_text, hash))
            })
            .collect::<Result<Vec<_>>>()?;
        let rows: Vec<NewEventRow<'_>> = self
            .events
            .iter()
            .zip(&texts)
            .map(
                |((kind, subject, _), (seq, payload_text, hash))| NewEventRow {
                    seq: *seq,
                    kind: kind.as_str(),
                    actor,
                    occurred_at,
                    subject: subject.as_deref(),
                    payload: payload_text,
                    leaf_hash: hash,
                },
            )
            .collect();
        for chunk in rows.chunks(EVENT_ROWS_PER_INSERT) {
            crate::insert_rows!(conn, events::table, chunk)?;
        }
        Ok(())
    }
}

/// SHA-256 over a length-prefixed encoding of the event's fields, so that no two different
/// events can share an encoding.
pub fn leaf_hash(
    seq: i64,
    kind: &str,
    actor: &str,
    at: DateTime<Utc>,
    subject: Option<&str>,
    payload: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    let at_text = at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    for field in [
        seq.to_string().as_str(),
        kind,
        actor,
        at_text.as_str(),
        subject.unwrap_or(""),
        payload,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Events whose subject is `subject`, in order.
pub fn for_subject(conn: &mut DbConnection, subject: &str) -> Result<Vec<Event>> {
    Ok(events::table
        .filter(events::subject.eq(subject))
        .order(events::seq.asc())
        .select(Event::as_select())
        .load(conn)?)
}

/// Events of one kind, in order.
pub fn of_kind(conn: &mut DbConnection, kind: EventKind) -> Result<Vec<Event>> {
    Ok(events::table
        .filter(events::kind.eq(kind.as_str()))
        .order(events::seq.asc())
        .select(Event::as_select())
        .load(conn)?)
}

/// The latest event of `kind`, if any.
pub fn last_of_kind(conn: &mut DbConnection, kind: EventKind) -> Result<Option<Event>> {
    Ok(events::table
        .filter(events::kind.eq(kind.as_str()))
        .order(events::seq.desc())
        .select(Event::as_select())
        .first(conn)
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_hash_separates_fields() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let a = leaf_hash(1, "ab", "c", at, None, "{}");
        let b = leaf_hash(1, "a", "bc", at, None, "{}");
        assert_ne!(a, b);
    }
}
