//! The outbox: mail waiting to be sent, written in the same transaction as the change that
//! needs it. Workers claim due rows under a lease (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the
//! immediate write lock on SQLite), so several instances never send the same row at once, and a
//! row whose worker died is picked up again once its lease runs out. Every row ends `sent`,
//! `dead` (visible to admins with its last error) or `cancelled` (an admin revoked the
//! reviewer's links before it went).

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::db::schema::outbox;
use crate::db::time::to_db;
use crate::db::{DbConnection, new_id, write_tx};
use crate::error::Result;
use crate::ledger::{EventBatch, EventKind, append};
use crate::notify::links::lock_reviewer;
use crate::notify::revocation::revoke_superseded;

pub const KIND_REVIEW_REQUEST: &str = "review_request";
/// A reminder before the due date to a reviewer who still has undecided items.
pub const KIND_REMINDER: &str = "reminder";
/// Items moved to this reviewer because their first reviewer did not answer.
pub const KIND_ESCALATION: &str = "escalation";
/// Revoked accesses that IT removes by hand, to the source's `remediation.mail_to`.
pub const KIND_REMEDIATION: &str = "remediation";
/// Every kind of digest the worker sends: a digest of the reviewer's undecided items with a
/// fresh link, worded for the occasion.
pub const DIGEST_KINDS: [&str; 3] = [KIND_REVIEW_REQUEST, KIND_REMINDER, KIND_ESCALATION];

pub const STATE_PENDING: &str = "pending";
pub const STATE_SENDING: &str = "sending";
pub const STATE_SENT: &str = "sent";
pub const STATE_DEAD: &str = "dead";
pub const STATE_CANCELLED: &str = "cancelled";

/// Longest wait between two attempts.
const MAX_BACKOFF_SECONDS: i64 = 6 * 3600;

#[derive(Debug, Clone, Queryable, Selectable, Serialize, PartialEq, Eq)]
#[diesel(table_name = outbox)]
pub struct OutboxMessage {
    pub id: String,
    pub dedupe_key: String,
    pub kind: String,
    pub campaign_id: Option<String>,
    pub reviewer_id: Option<String>,
    pub recipient: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: chrono::NaiveDateTime,
    pub locked_until: Option<chrono::NaiveDateTime>,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub created_at: chrono::NaiveDateTime,
    pub sent_at: Option<chrono::NaiveDateTime>,
}

/// Queues the digests of a newly opened campaign, one per reviewer, in multi-row inserts
/// (a campaign may have tens of thousands of reviewers).
pub fn enqueue_review_requests(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_ids: &[String],
    actor: &str,
) -> Result<()> {
    use crate::db::schema::reviewers;
    let recipients: std::collections::HashMap<String, String> = reviewers::table
        .filter(reviewers::campaign_id.eq(campaign_id))
        .select((reviewers::id, reviewers::email))
        .load::<(String, String)>(conn)?
        .into_iter()
        .collect();
    let mut events = EventBatch::default();
    let mut rows = Vec::with_capacity(reviewer_ids.len());
    for reviewer_id in reviewer_ids {
        let recipient = recipients.get(reviewer_id).ok_or_else(|| {
            crate::error::Error::Internal(format!("reviewer {reviewer_id} is not in {campaign_id}"))
        })?;
        let id = new_id();
        events.push(
            EventKind::MailQueued,
            Some(campaign_id),
            json!({ "outbox": id, "kind": KIND_REVIEW_REQUEST, "campaign": campaign_id, "reviewer": reviewer_id }),
        );
        rows.push((
            outbox::id.eq(id),
            outbox::dedupe_key.eq(format!("{KIND_REVIEW_REQUEST}:{campaign_id}:{reviewer_id}")),
            outbox::kind.eq(KIND_REVIEW_REQUEST),
            outbox::campaign_id.eq(campaign_id.to_string()),
            outbox::reviewer_id.eq(reviewer_id.clone()),
            outbox::recipient.eq(recipient.clone()),
            outbox::state.eq(STATE_PENDING),
            outbox::next_attempt_at.eq(to_db(now)),
            outbox::created_at.eq(to_db(now)),
        ));
    }
    for chunk in rows.chunks(1_000) {
        crate::insert_rows!(conn, outbox::table, chunk)?;
    }
    events.append_all(conn, now, actor)
}

/// Queues the reminder `days_before_due` for one reviewer; at most one per (campaign,
/// reviewer, days). Its `mail.queued` event goes to `events`, for the caller to append last.
pub fn enqueue_reminder(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
    days_before_due: u32,
    events: &mut EventBatch,
) -> Result<()> {
    let dedupe_key = format!("{KIND_REMINDER}:{campaign_id}:{reviewer_id}:{days_before_due}");
    // A reminder job run again (its worker died after committing) queues nothing twice.
    let queued: i64 = outbox::table
        .filter(outbox::dedupe_key.eq(&dedupe_key))
        .count()
        .get_result(conn)?;
    if queued > 0 {
        return Ok(());
    }
    let to = Digest {
        kind: KIND_REMINDER,
        campaign_id,
        reviewer_id,
    };
    enqueue(conn, now, &to, &dedupe_key, events)
}

/// Queues the notice of escalated items to their new reviewer; each call queues one.
pub fn enqueue_escalation(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
    events: &mut EventBatch,
) -> Result<()> {
    let dedupe_key = format!("{KIND_ESCALATION}:{campaign_id}:{reviewer_id}:{}", new_id());
    let to = Digest {
        kind: KIND_ESCALATION,
        campaign_id,
        reviewer_id,
    };
    enqueue(conn, now, &to, &dedupe_key, events)
}

/// A digest to queue: its kind, campaign and reviewer.
struct Digest<'a> {
    kind: &'static str,
    campaign_id: &'a str,
    reviewer_id: &'a str,
}

/// Queues the digest of a reviewer of the next stage of a campaign reviewed in stages; once
/// per (campaign, reviewer, stage).
pub fn enqueue_stage_review(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
    stage: i64,
    events: &mut EventBatch,
) -> Result<()> {
    let dedupe_key = stage_review_key(campaign_id, reviewer_id, stage);
    let to = Digest {
        kind: KIND_REVIEW_REQUEST,
        campaign_id,
        reviewer_id,
    };
    enqueue(conn, now, &to, &dedupe_key, events)
}

/// The dedupe key of a reviewer's digest for a later stage of a campaign.
pub fn stage_review_key(campaign_id: &str, reviewer_id: &str, stage: i64) -> String {
    format!("{KIND_REVIEW_REQUEST}:{campaign_id}:{reviewer_id}:stage-{stage}")
}

/// Queues one more digest for a reviewer (an admin re-sent their link after revoking it);
/// every call queues a new one.
pub fn enqueue_review_resend(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
    events: &mut EventBatch,
) -> Result<()> {
    let dedupe_key = format!(
        "{KIND_REVIEW_REQUEST}:{campaign_id}:{reviewer_id}:resend:{}",
        new_id()
    );
    let to = Digest {
        kind: KIND_REVIEW_REQUEST,
        campaign_id,
        reviewer_id,
    };
    enqueue(conn, now, &to, &dedupe_key, events)
}

fn enqueue(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    to: &Digest<'_>,
    dedupe_key: &str,
    events: &mut EventBatch,
) -> Result<()> {
    let recipient: String = crate::db::schema::reviewers::table
        .find(to.reviewer_id)
        .select(crate::db::schema::reviewers::email)
        .first(conn)?;
    let row = QueuedRow {
        dedupe_key,
        kind: to.kind,
        campaign_id: to.campaign_id,
        reviewer_id: Some(to.reviewer_id),
        recipient: &recipient,
    };
    queue_row(conn, now, &row, events)
}

/// Queues the notice to IT of a campaign's manual remediation tasks (it lists those still
/// pending when it is sent); its `mail.queued` event goes to `events`.
pub fn enqueue_remediation_notice(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    campaign_id: &str,
    recipient: &str,
    events: &mut EventBatch,
) -> Result<()> {
    let row = QueuedRow {
        dedupe_key: &format!("{KIND_REMEDIATION}:{campaign_id}:{}", new_id()),
        kind: KIND_REMEDIATION,
        campaign_id,
        reviewer_id: None,
        recipient,
    };
    queue_row(conn, now, &row, events)
}

/// One mail to queue.
struct QueuedRow<'a> {
    dedupe_key: &'a str,
    kind: &'static str,
    campaign_id: &'a str,
    reviewer_id: Option<&'a str>,
    recipient: &'a str,
}

fn queue_row(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    row: &QueuedRow<'_>,
    events: &mut EventBatch,
) -> Result<()> {
    let id = new_id();
    diesel::insert_into(outbox::table)
        .values((
            outbox::id.eq(&id),
            outbox::dedupe_key.eq(row.dedupe_key),
            outbox::kind.eq(row.kind),
            outbox::campaign_id.eq(Some(row.campaign_id)),
            outbox::reviewer_id.eq(row.reviewer_id),
            outbox::recipient.eq(row.recipient),
            outbox::state.eq(STATE_PENDING),
            outbox::next_attempt_at.eq(to_db(now)),
            outbox::created_at.eq(to_db(now)),
        ))
        .execute(conn)?;
    events.push(
        EventKind::MailQueued,
        Some(row.campaign_id),
        json!({
            "outbox": id,
            "kind": row.kind,
            "campaign": row.campaign_id,
            "reviewer": row.reviewer_id,
        }),
    );
    Ok(())
}

/// Claims up to `limit` due rows for `lease`: pending rows whose time has come and sending
/// rows whose previous worker's lease expired.
pub fn claim_due(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<OutboxMessage>> {
    write_tx(conn, |conn| {
        let now_db = to_db(now);
        let due = outbox::table
            .filter(
                outbox::state
                    .eq(STATE_PENDING)
                    .and(outbox::next_attempt_at.le(now_db))
                    .or(outbox::state
                        .eq(STATE_SENDING)
                        .and(outbox::locked_until.le(now_db))),
            )
            .order(outbox::next_attempt_at.asc())
            .limit(limit)
            .select(outbox::id);
        let ids: Vec<String> = match conn {
            DbConnection::Postgres(pg) => due.for_update().skip_locked().load(pg)?,
            DbConnection::Sqlite(sqlite) => due.load(sqlite)?,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        diesel::update(outbox::table.filter(outbox::id.eq_any(&ids)))
            .set((
                outbox::state.eq(STATE_SENDING),
                outbox::locked_until.eq(Some(to_db(now + lease))),
                outbox::attempts.eq(outbox::attempts + 1),
            ))
            .execute(conn)?;
        Ok(outbox::table
            .filter(outbox::id.eq_any(&ids))
            .select(OutboxMessage::as_select())
            .load(conn)?)
    })
}

/// The review link a sent mail carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentLink<'a> {
    pub jti_sha256: &'a str,
    /// Revoke the reviewer's older links in this campaign (`links.revoke_superseded`).
    pub revoke_superseded: bool,
}

/// Records a delivery; returns false when the claim had been lost to another worker.
///
/// Only the worker holding the current claim may record an outcome: the claim is identified by
/// the attempt number it set, so a worker whose lease expired (and whose row another worker
/// re-claimed) changes nothing and writes no event. A message an admin cancelled while it was
/// already on its way is still recorded as sent (it was), marked as such in its event.
pub fn mark_sent(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    message: &OutboxMessage,
    message_id: &str,
    link: Option<SentLink<'_>>,
) -> Result<bool> {
    write_tx(conn, |conn| {
        // Ordered against a concurrent revocation of this reviewer's links (PostgreSQL).
        if let Some(reviewer_id) = &message.reviewer_id {
            lock_reviewer(conn, reviewer_id, false)?;
        }
        let record_sent = |conn: &mut DbConnection, from_state: &str| {
            diesel::update(
                outbox::table
                    .filter(outbox::id.eq(&message.id))
                    .filter(outbox::state.eq(from_state))
                    .filter(outbox::attempts.eq(message.attempts)),
            )
            .set((
                outbox::state.eq(STATE_SENT),
                outbox::sent_at.eq(Some(to_db(now))),
                outbox::message_id.eq(Some(message_id)),
                outbox::locked_until.eq(None::<chrono::NaiveDateTime>),
                outbox::last_error.eq(None::<String>),
            ))
            .execute(conn)
        };
        let cancelled_in_flight = match record_sent(conn, STATE_SENDING)? {
            0 if record_sent(conn, STATE_CANCELLED)? == 1 => true,
            0 => return Ok(false),
            _ => false,
        };
        let mut events = EventBatch::default();
        events.push(
            EventKind::MailSent,
            message.campaign_id.as_deref(),
            json!({
                "outbox": message.id,
                "kind": message.kind,
                "reviewer": message.reviewer_id,
                "message_id": message_id,
                "attempts": message.attempts,
                "link_jti_sha256": link.map(|l| l.jti_sha256),
                "cancelled_in_flight": cancelled_in_flight,
            }),
        );
        if let (Some(link), Some(campaign_id), Some(reviewer_id)) =
            (link, &message.campaign_id, &message.reviewer_id)
            && link.revoke_superseded
            && !cancelled_in_flight
        {
            revoke_superseded(
                conn,
                now,
                campaign_id,
                reviewer_id,
                link.jti_sha256,
                &mut events,
            )?;
        }
        events.append_all(conn, now, "worker:outbox")?;
        Ok(true)
    })
}

/// Schedules a retry with exponential backoff, or dead-letters the row when the failure is
/// permanent or attempts are used up.
pub fn mark_failed(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    message: &OutboxMessage,
    error: &str,
    permanent: bool,
    max_attempts: u32,
    retry_base_seconds: u32,
) -> Result<bool> {
    let dead = permanent || message.attempts >= i64::from(max_attempts);
    let exponent = u32::try_from(message.attempts.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    let backoff =
        (i64::from(retry_base_seconds) * 2i64.saturating_pow(exponent)).min(MAX_BACKOFF_SECONDS);
    let next = now + Duration::seconds(backoff);
    write_tx(conn, |conn| {
        let updated = diesel::update(
            outbox::table
                .filter(outbox::id.eq(&message.id))
                .filter(outbox::state.eq(STATE_SENDING))
                .filter(outbox::attempts.eq(message.attempts)),
        )
        .set((
            outbox::state.eq(if dead { STATE_DEAD } else { STATE_PENDING }),
            outbox::next_attempt_at.eq(to_db(next)),
            outbox::locked_until.eq(None::<chrono::NaiveDateTime>),
            outbox::last_error.eq(Some(error)),
        ))
        .execute(conn)?;
        if updated == 0 {
            return Ok(false);
        }
        append(
            conn,
            now,
            if dead {
                EventKind::MailDeadLettered
            } else {
                EventKind::MailRetryScheduled
            },
            "worker:outbox",
            message.campaign_id.as_deref(),
            &json!({
                "outbox": message.id,
                "reviewer": message.reviewer_id,
                "attempts": message.attempts,
                "error": error,
                "next_attempt_at": (!dead).then(|| next.to_rfc3339()),
            }),
        )?;
        Ok(true)
    })
}

/// Whether `message` is still claimed by the worker that claimed it (not re-claimed after its
/// lease, not cancelled).
pub fn is_still_claimed(
    conn: &mut DbConnection,
    message: &OutboxMessage,
    now: DateTime<Utc>,
) -> Result<bool> {
    // A claim whose lease ran out is another worker's to take: it sends nothing more.
    let rows: i64 = outbox::table
        .filter(outbox::id.eq(&message.id))
        .filter(outbox::state.eq(STATE_SENDING))
        .filter(outbox::attempts.eq(message.attempts))
        .filter(outbox::locked_until.gt(to_db(now)))
        .count()
        .get_result(conn)?;
    Ok(rows == 1)
}

/// Cancels a reviewer's mail that has not gone yet (waiting, or claimed by a worker that has
/// not recorded the send); runs inside the caller's transaction and adds one event per row to
/// `events`.
pub fn cancel_unsent(
    conn: &mut DbConnection,
    campaign_id: &str,
    reviewer_id: &str,
    reason: &str,
    events: &mut EventBatch,
) -> Result<usize> {
    let unsent: Vec<(String, String)> = outbox::table
        .filter(outbox::campaign_id.eq(campaign_id))
        .filter(outbox::reviewer_id.eq(reviewer_id))
        .filter(outbox::state.eq_any([STATE_PENDING, STATE_SENDING]))
        .order(outbox::created_at.asc())
        .select((outbox::id, outbox::kind))
        .load(conn)?;
    let mut cancelled = 0;
    for (id, kind) in &unsent {
        // The state test again: a worker may have recorded its outcome since the read.
        let changed = diesel::update(
            outbox::table
                .find(id)
                .filter(outbox::state.eq_any([STATE_PENDING, STATE_SENDING])),
        )
        .set((
            outbox::state.eq(STATE_CANCELLED),
            outbox::locked_until.eq(None::<chrono::NaiveDateTime>),
            outbox::last_error.eq(Some(reason)),
        ))
        .execute(conn)?;
        if changed == 0 {
            continue;
        }
        cancelled += 1;
        events.push(
            EventKind::MailCancelled,
            Some(campaign_id),
            json!({ "outbox": id, "kind": kind, "reviewer": reviewer_id, "reason": reason }),
        );
    }
    Ok(cancelled)
}

/// Cancels a mail its worker still holds and will not send (nothing left to say), with an
/// event; returns whether it was still held.
pub fn cancel_claimed(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    message: &OutboxMessage,
    reason: &str,
) -> Result<bool> {
    let changed = diesel::update(
        outbox::table
            .filter(outbox::id.eq(&message.id))
            .filter(outbox::state.eq(STATE_SENDING))
            .filter(outbox::attempts.eq(message.attempts)),
    )
    .set((
        outbox::state.eq(STATE_CANCELLED),
        outbox::locked_until.eq(None::<chrono::NaiveDateTime>),
        outbox::last_error.eq(Some(reason)),
    ))
    .execute(conn)?;
    if changed == 1 {
        append(
            conn,
            now,
            EventKind::MailCancelled,
            "worker:outbox",
            message.campaign_id.as_deref(),
            &json!({
                "outbox": message.id,
                "kind": message.kind,
                "reviewer": message.reviewer_id,
                "reason": reason,
            }),
        )?;
    }
    Ok(changed == 1)
}

/// Every row of a campaign's outbox (for admins and tests).
pub fn messages_of_campaign(
    conn: &mut DbConnection,
    campaign_id: &str,
) -> Result<Vec<OutboxMessage>> {
    Ok(outbox::table
        .filter(outbox::campaign_id.eq(campaign_id))
        .order(outbox::created_at.asc())
        .select(OutboxMessage::as_select())
        .load(conn)?)
}

/// How many messages are in each state (`pending`, `sending`, `sent`, `dead`, ...).
pub fn counts_by_state(conn: &mut DbConnection) -> Result<Vec<(String, i64)>> {
    Ok(outbox::table
        .group_by(outbox::state)
        .select((outbox::state, diesel::dsl::count_star()))
        .order(outbox::state.asc())
        .load(conn)?)
}
