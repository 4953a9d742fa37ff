//! Staff browser sessions: a random secret in a cookie, only its SHA-256 stored, with the
//! role and how its holder authenticated. A session ends at sign-out, after the configured
//! idle time without use, at its absolute lifetime, when its staff member is disabled or
//! their role changes, or when the provider no longer admits them.
//! Each sign-in starts a new session (the id is never carried over) and ends the one the
//! browser had; sign-in and sign-out are events, written in the same transaction.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::Role;
use crate::db::schema::{sessions, staff_users};
use crate::db::time::{from_db, to_db};
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventKind, append};

/// A session's last use is written at most this often (reads would otherwise all write).
const TOUCH_EVERY_SECONDS: i64 = 60;

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub absolute: Duration,
}

impl SessionLimits {
    pub fn of(config: &crate::config::AuthConfig) -> SessionLimits {
        SessionLimits {
            idle: Duration::minutes(i64::from(config.session_idle_minutes)),
            absolute: Duration::hours(i64::from(config.session_absolute_hours)),
        }
    }
}

/// How a staff member proved who they are at sign-in, kept with the session and its event.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StaffAuth {
    pub issuer: String,
    pub acr: Option<String>,
    pub amr: Vec<String>,
}

/// The holder of a valid session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffSession {
    /// SHA-256 of the session secret: how logs and CSRF tokens refer to the session.
    pub id_hash: String,
    pub staff_user_id: String,
    pub display_name: String,
    pub role: Role,
}

pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random secret (32 bytes, URL-safe base64).
pub(crate) fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

/// Starts a session for a staff member who just signed in, ending `replaced` (the session
/// the browser had, if any). Returns the new secret, for the cookie only.
pub fn start_session(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    staff_user_id: &str,
    role: Role,
    auth: &StaffAuth,
    limits: SessionLimits,
    replaced: Option<&str>,
) -> Result<String> {
    let secret = new_secret();
    let id_hash = secret_hash(&secret);
    write_tx(conn, |conn| {
        if let Some(old) = replaced {
            diesel::update(
                sessions::table
                    .filter(sessions::id_hash.eq(secret_hash(old)))
                    .filter(sessions::revoked_at.is_null()),
            )
            .set(sessions::revoked_at.eq(Some(to_db(now))))
            .execute(conn)?;
        }
        diesel::insert_into(sessions::table)
            .values((
                sessions::id_hash.eq(&id_hash),
                sessions::staff_user_id.eq(staff_user_id),
                sessions::created_at.eq(to_db(now)),
                sessions::expires_at.eq(to_db(now + limits.absolute)),
                sessions::role.eq(role.as_str()),
                sessions::last_seen_at.eq(Some(to_db(now))),
                sessions::auth_context.eq(serde_json::to_string(auth)?),
            ))
            .execute(conn)?;
        append(
            conn,
            now,
            EventKind::StaffSignedIn,
            &format!("staff:{staff_user_id}"),
            Some(staff_user_id),
            &json!({
                "staff_user": staff_user_id,
                "role": role.as_str(),
                "session": &id_hash[..16],
                "issuer": auth.issuer,
                "acr": auth.acr,
                "amr": auth.amr,
            }),
        )?;
        Ok(())
    })?;
    Ok(secret)
}

/// The session of `secret` if it is valid now; its last use is recorded.
pub fn session_of(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    secret: &str,
    limits: SessionLimits,
) -> Result<StaffSession> {
    let id_hash = secret_hash(secret);
    type Row = (
        String,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
        Option<NaiveDateTime>,
        String,
        Option<NaiveDateTime>,
        String,
    );
    let found: Option<Row> = sessions::table
        .inner_join(staff_users::table.on(staff_users::id.eq(sessions::staff_user_id)))
        .filter(sessions::id_hash.eq(&id_hash))
        .select((
            sessions::staff_user_id,
            sessions::role,
            sessions::expires_at,
            sessions::revoked_at,
            sessions::last_seen_at,
            staff_users::display_name,
            staff_users::disabled_at,
            staff_users::role,
        ))
        .first(conn)
        .optional()?;
    let Some((
        staff_user_id,
        role,
        expires_at,
        revoked_at,
        last_seen_at,
        name,
        disabled_at,
        staff_role,
    )) = found
    else {
        return Err(Error::Unauthorized);
    };
    // A staff member whose role changed since (a later sign-in) keeps no session of the
    // old role.
    if staff_role != role {
        return Err(Error::Unauthorized);
    }
    let last_seen = last_seen_at.map(from_db);
    let idle = last_seen.is_some_and(|seen| now - seen >= limits.idle);
    if revoked_at.is_some() || disabled_at.is_some() || now >= from_db(expires_at) || idle {
        return Err(Error::Unauthorized);
    }
    let role: Role = role.parse().map_err(|_| Error::Unauthorized)?;
    if last_seen.is_none_or(|seen| now - seen >= Duration::seconds(TOUCH_EVERY_SECONDS)) {
        diesel::update(sessions::table.find(&id_hash))
            .set(sessions::last_seen_at.eq(Some(to_db(now))))
            .execute(conn)?;
    }
    Ok(StaffSession {
        id_hash,
        staff_user_id,
        display_name: name,
        role,
    })
}

/// Ends the session of `secret` (sign-out); nothing when it is not a live session.
pub fn end_session(conn: &mut DbConnection, now: DateTime<Utc>, secret: &str) -> Result<()> {
    let id_hash = secret_hash(secret);
    write_tx(conn, |conn| {
        let staff_user_id: Option<String> = sessions::table
            .filter(sessions::id_hash.eq(&id_hash))
            .filter(sessions::revoked_at.is_null())
            .select(sessions::staff_user_id)
            .first(conn)
            .optional()?;
        let Some(staff_user_id) = staff_user_id else {
            return Ok(());
        };
        diesel::update(sessions::table.find(&id_hash))
            .set(sessions::revoked_at.eq(Some(to_db(now))))
            .execute(conn)?;
        append(
            conn,
            now,
            EventKind::StaffSignedOut,
            &format!("staff:{staff_user_id}"),
            Some(&staff_user_id),
            &json!({ "staff_user": staff_user_id, "session": &id_hash[..16] }),
        )?;
        Ok(())
    })
}
