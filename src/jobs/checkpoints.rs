//! Signing checkpoints of the event log from the scheduler: after each tick's jobs, when
//! events came in since the latest checkpoint and either `evidence.checkpoint_minutes` have
//! passed or a campaign closed since (its close is then covered by a signed tree head at
//! once). Several instances may try at once: a checkpoint of a given size is written once.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use crate::config::Config;
use crate::db::DbConnection;
use crate::db::schema::{campaigns, checkpoints, events};
use crate::db::time::from_db;
use crate::error::Result;
use crate::ledger::checkpoint::{CheckpointKey, write_checkpoint};

/// Whether a checkpoint is due at `now`.
fn due(conn: &mut DbConnection, config: &Config, now: DateTime<Utc>) -> Result<bool> {
    let size: Option<i64> = events::table
        .select(diesel::dsl::max(events::seq))
        .first(conn)?;
    let Some(size) = size else {
        return Ok(false);
    };
    let latest: Option<(i64, chrono::NaiveDateTime)> = checkpoints::table
        .order(checkpoints::size.desc())
        .select((checkpoints::size, checkpoints::created_at))
        .first(conn)
        .optional()?;
    Ok(match latest {
        None => true,
        Some((signed, _)) if signed >= size => false,
        Some((_, at)) => {
            let interval = Duration::minutes(config.evidence.checkpoint_minutes as i64);
            let closed_since: i64 = campaigns::table
                .filter(campaigns::closed_at.gt(at))
                .count()
                .get_result(conn)?;
            now - from_db(at) >= interval || closed_since > 0
        }
    })
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
