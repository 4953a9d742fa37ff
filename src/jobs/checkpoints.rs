//! Signing checkpoints of the event log from the scheduler: after each tick's jobs, when
//! events (other than checkpoints' own) came in since the latest checkpoint and either
//! `evidence.checkpoint_minutes` have passed or one of them closed a campaign (its close is
//! then covered by a signed tree head at once). An idle log is not signed again. Several
//! instances may try at once: a checkpoint of a given size is written once.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use crate::config::Config;
use crate::db::DbConnection;
use crate::db::schema::{checkpoints, events};
use crate::db::time::from_db;
use crate::error::Result;
use crate::ledger::EventKind;
use crate::ledger::checkpoint::{CheckpointKey, write_checkpoint};

/// Whether a checkpoint is due at `now`: events other than checkpoints' own came in since
/// the latest one, and either the interval has passed or one of them is a campaign's close.
fn due(conn: &mut DbConnection, config: &Config, now: DateTime<Utc>) -> Result<bool> {
    let latest: Option<(i64, chrono::NaiveDateTime)> = checkpoints::table
        .order(checkpoints::size.desc())
        .select((checkpoints::size, checkpoints::created_at))
        .first(conn)
        .optional()?;
    let (signed, at) = match latest {
        Some((size, at)) => (size, Some(at)),
        None => (0, None),
    };
    let since = |conn: &mut DbConnection, kind: Option<EventKind>| -> Result<bool> {
        let mut query = events::table
            .filter(events::seq.gt(signed))
            .filter(events::kind.ne(EventKind::LedgerCheckpoint.as_str()))
            .select(events::seq)
            .into_boxed();
        if let Some(kind) = kind {
            query = query.filter(events::kind.eq(kind.as_str()));
        }
        Ok(query.first::<i64>(conn).optional()?.is_some())
    };
    if !since(conn, None)? {
        return Ok(false);
    }
    let Some(at) = at else {
        return Ok(true);
    };
    let interval = Duration::minutes(config.evidence.checkpoint_minutes as i64);
    Ok(now - from_db(at) >= interval || since(conn, Some(EventKind::CampaignClosed))?)
}

/// Signs a checkpoint of the log as it is now when one is due; returns its size.
pub fn sign_if_due(
    conn: &mut DbConnection,
    config: &Config,
    now: DateTime<Utc>,
) -> Result<Option<i64>> {
    if !due(conn, config, now)? {
        return Ok(None);
    }
    let key = CheckpointKey::from_config(&config.evidence)?;
    let signed = write_checkpoint(conn, now, &key, "scheduler")?;
    if let Some(size) = signed {
        tracing::info!(size, "signed a checkpoint of the event log");
    }
    Ok(signed)
}
