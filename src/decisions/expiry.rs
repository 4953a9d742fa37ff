//! Approvals given until a date: when the date comes, the approval expires and the item
//! becomes a revocation (`revoked`, with `expired_at`), whether its campaign is still open or
//! long closed, so that remediation removes the access like any other revoked one. Each batch
//! of items and its `approvals.expired` events commit together.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::campaigns::model::{ITEM_APPROVED, ITEM_REVOKED};
use crate::db::schema::review_items;
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::error::Result;
use crate::ledger::{EventBatch, EventKind};

/// Items expired per transaction.
const EXPIRY_BATCH: i64 = 1_000;

/// The latest end date among approvals that have reached it and not yet expired: names the
/// expiry job that handles them (a later one names a new job).
pub fn latest_due(conn: &mut DbConnection, now: DateTime<Utc>) -> Result<Option<NaiveDateTime>> {
    Ok(review_items::table
        .filter(review_items::state.eq(ITEM_APPROVED))
        .filter(review_items::approved_until.le(to_db(now)))
        .select(diesel::dsl::max(review_items::approved_until))
        .first::<Option<NaiveDateTime>>(conn)?)
}

/// Expires every approval whose date has come; returns how many items became revocations.
pub fn expire_due(conn: &mut DbConnection, now: DateTime<Utc>, actor: &str) -> Result<usize> {
    let mut expired = 0;
    loop {
        let batch = write_tx(conn, |conn| {
            let query = review_items::table
                .filter(review_items::state.eq(ITEM_APPROVED))
                .filter(review_items::approved_until.le(to_db(now)))
                // Locked in id order, as every writer of several items locks them.
                .order(review_items::id.asc())
                .limit(EXPIRY_BATCH)
                .select((review_items::id, review_items::campaign_id));
            // On PostgreSQL the rows stay locked against a changed decision until commit.
            let rows: Vec<(String, String)> = match conn {
                DbConnection::Postgres(pg) => query.for_update().load(pg)?,
                DbConnection::Sqlite(sqlite) => query.load(sqlite)?,
            };
            if rows.is_empty() {
                return Ok(0);
            }
            let ids: Vec<&String> = rows.iter().map(|(id, _)| id).collect();
            diesel::update(review_items::table.filter(review_items::id.eq_any(&ids)))
                .set((
                    review_items::state.eq(ITEM_REVOKED),
                    review_items::expired_at.eq(Some(to_db(now))),
                ))
                .execute(conn)?;
            let mut by_campaign: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (id, campaign) in &rows {
                by_campaign.entry(campaign).or_default().push(id);
            }
            let mut events = EventBatch::default();
            for (campaign, items) in by_campaign {
                events.push(
                    EventKind::ApprovalsExpired,
                    Some(campaign),
                    json!({ "campaign": campaign, "items": items }),
                );
            }
            events.append_all(conn, now, actor)?;
            Ok(rows.len())
        })?;
        if batch == 0 {
            return Ok(expired);
        }
        expired += batch;
    }
}
