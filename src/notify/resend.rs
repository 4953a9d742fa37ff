//! What admins see of the outbox and do with it: the latest messages (optionally of one
//! state) with the server's last answer, and sending again a message that was dead-lettered
//! (never one cancelled on purpose). Sending again queues a new message (with a new link for
//! a digest): the old row stays as it ended, and the new one has its own `mail.queued` event.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::campaigns::model::{ITEM_PENDING, campaign, items_of_reviewer};
use crate::db::schema::outbox;
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::EventBatch;
use crate::notify::outbox::{
    DIGEST_KINDS, KIND_REMEDIATION, OutboxMessage, STATE_DEAD, enqueue_remediation_notice,
    enqueue_review_resend,
};

pub const OUTBOX_STATES: [&str; 5] = ["pending", "sending", "sent", "dead", "cancelled"];

/// The latest `limit` messages, newest first, of `state` when given.
pub fn recent_messages(
    conn: &mut DbConnection,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<OutboxMessage>> {
    let mut query = outbox::table
        .order((outbox::created_at.desc(), outbox::id.desc()))
        .limit(limit.clamp(1, 10_000))
        .into_boxed();
    if let Some(state) = state {
        query = query.filter(outbox::state.eq(state.to_string()));
    }
    Ok(query.select(OutboxMessage::as_select()).load(conn)?)
}

/// Queues message `id` again, if it was dead-lettered, nothing newer went (or waits to go)
/// to the same recipient for the same campaign since, and, for a digest, the campaign is open
/// and the reviewer still has something to decide. A cancelled message is not sent again: it
/// was cancelled on purpose (its links revoked: `attest campaign revoke-links --resend`; or
/// nothing left to review).
pub fn resend_message(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    id: &str,
    actor: &str,
) -> Result<()> {
    write_tx(conn, |conn| {
        let message: OutboxMessage = outbox::table
            .find(id)
            .select(OutboxMessage::as_select())
            .first(conn)
            .optional()?
            .ok_or_else(|| Error::NotFound(format!("message {id} not found")))?;
        if message.state != STATE_DEAD {
            return Err(Error::Conflict(format!(
                "message {id} is {}: only a dead-lettered message is sent again",
                message.state
            )));
        }
        let campaign_id = message
            .campaign_id
            .clone()
            .ok_or_else(|| Error::Conflict("the message belongs to no campaign".into()))?;
        // Sent again already (a second click), or a newer mail went since.
        let newer: i64 = outbox::table
            .filter(outbox::campaign_id.eq(&campaign_id))
            .filter(outbox::recipient.eq(&message.recipient))
            .filter(outbox::created_at.ge(message.created_at))
            .filter(outbox::id.ne(&message.id))
            .filter(outbox::state.ne(STATE_DEAD))
            .count()
            .get_result(conn)?;
        if newer > 0 {
            return Err(Error::Conflict(
                "a newer mail to the same person for this campaign is sent or on its way".into(),
            ));
        }
        let mut events = EventBatch::default();
        if message.kind == KIND_REMEDIATION {
            enqueue_remediation_notice(conn, now, &campaign_id, &message.recipient, &mut events)?;
        } else if DIGEST_KINDS.contains(&message.kind.as_str()) {
            if !campaign(conn, &campaign_id)?.is_open() {
                return Err(Error::Conflict(
                    "the campaign is closed: its review mail is not sent again".into(),
                ));
            }
            let reviewer = message
                .reviewer_id
                .clone()
                .ok_or_else(|| Error::Conflict("the digest names no reviewer".into()))?;
            let undecided = items_of_reviewer(conn, &reviewer)?
                .iter()
                .any(|item| item.state == ITEM_PENDING);
            if !undecided {
                return Err(Error::Conflict(
                    "the reviewer has nothing left to decide: no mail is sent again".into(),
                ));
            }
            enqueue_review_resend(conn, now, &campaign_id, &reviewer, &mut events)?;
        } else {
            return Err(Error::Conflict(format!(
                "a {} message is not sent again",
                message.kind
            )));
        }
        events.append_all(conn, now, actor)
    })
}
