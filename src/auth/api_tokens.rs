//! API tokens: a bearer secret issued once to a staff member, for one role, until a date.
//! Only its SHA-256 is stored; the secret is shown at issue and never again. Issuing and
//! revoking write their event in the same transaction; the secret is in neither. A token
//! that is unknown, expired, revoked, or whose staff member is disabled authenticates nobody,
//! and the caller cannot tell which.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use rand::RngCore;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::Role;
use crate::auth::staff_users::local_staff_member;
use crate::db::schema::{api_tokens, staff_users};
use crate::db::time::{from_db, to_db};
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventKind, append};

/// Every token starts with this, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "attest_at_";
pub const DEFAULT_TOKEN_DAYS: i64 = 90;
pub const MAX_TOKEN_DAYS: i64 = 366;
pub use crate::auth::staff_users::LOCAL_ISSUER;

/// What an admin asks for.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    /// What the token is for ("FY2026 SOC 2 audit").
    pub name: &'a str,
    pub role: Role,
    /// The staff member it belongs to; created with this role when new.
    pub email: &'a str,
    pub days: i64,
}

/// A token just issued: the secret is here and nowhere else.
#[derive(Debug)]
pub struct IssuedToken {
    pub id: String,
    pub secret: SecretString,
    pub expires_at: DateTime<Utc>,
}

/// The bearer of a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub staff_user_id: String,
}

/// A token as `attest token list` shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TokenListing {
    pub id: String,
    pub name: String,
    pub role: String,
    pub email: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn rfc3339(t: NaiveDateTime) -> String {
    from_db(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Issues a token; `actor` is who asked (recorded in the event).
pub fn issue(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    request: &NewToken,
    actor: &str,
) -> Result<IssuedToken> {
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::BadRequest(
            "a token needs a name of 1 to 100 characters saying what it is for".into(),
        ));
    }
    let email = request.email.trim().to_lowercase();
    if !email.contains('@') || email.chars().count() > 254 {
        return Err(Error::BadRequest(format!(
            "`{email}` is not an email address"
        )));
    }
    if !(1..=MAX_TOKEN_DAYS).contains(&request.days) {
        return Err(Error::BadRequest(format!(
            "a token lasts 1 to {MAX_TOKEN_DAYS} days"
        )));
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{TOKEN_PREFIX}{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
    );
    let expires_at = now + Duration::days(request.days);
    let id = uuid::Uuid::now_v7().to_string();
    write_tx(conn, |conn| {
        let staff_user_id = local_staff_member(conn, now, &email, request.role)?;
        diesel::insert_into(api_tokens::table)
            .values((
                api_tokens::id.eq(&id),
                api_tokens::token_hash.eq(secret_hash(&secret)),
                api_tokens::staff_user_id.eq(&staff_user_id),
                api_tokens::name.eq(name),
                api_tokens::role.eq(request.role.as_str()),
                api_tokens::created_at.eq(to_db(now)),
                api_tokens::expires_at.eq(Some(to_db(expires_at))),
            ))
            .execute(conn)?;
        append(
            conn,
            now,
            EventKind::ApiTokenCreated,
            actor,
            Some(&id),
            &json!({
                "token": id,
                "name": name,
                "role": request.role.as_str(),
                "staff_user": staff_user_id,
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
        )?;
        Ok(())
    })?;
    Ok(IssuedToken {
        id,
        secret: SecretString::from(secret),
        expires_at,
    })
}

/// The bearer of `presented`, if it is a valid token at `now`.
pub fn authenticate(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    presented: &str,
) -> Result<ApiToken> {
    if !presented.starts_with(TOKEN_PREFIX) {
        return Err(Error::Unauthorized);
    }
    let found: Option<(String, String, String, String, Option<NaiveDateTime>)> = api_tokens::table
        .inner_join(staff_users::table)
        .filter(api_tokens::token_hash.eq(secret_hash(presented)))
        .filter(api_tokens::revoked_at.is_null())
        .filter(staff_users::disabled_at.is_null())
        // The token's role, as long as its staff member still holds it.
        .filter(staff_users::role.eq(api_tokens::role))
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::role,
            api_tokens::staff_user_id,
            api_tokens::expires_at,
        ))
        .first(conn)
        .optional()?;
    let Some((id, name, role, staff_user_id, expires_at)) = found else {
        return Err(Error::Unauthorized);
    };
    if expires_at.is_none_or(|at| from_db(at) <= now) {
        return Err(Error::Unauthorized);
    }
    let role = role.parse().map_err(|_| Error::Unauthorized)?;
    Ok(ApiToken {
        id,
        name,
        role,
        staff_user_id,
    })
}

/// id, name, role, email, created, expires, revoked.
type TokenRow = (
    String,
    String,
    String,
    String,
    NaiveDateTime,
    Option<NaiveDateTime>,
    Option<NaiveDateTime>,
);

/// Every token, newest first.
pub fn list_tokens(conn: &mut DbConnection) -> Result<Vec<TokenListing>> {
    let rows: Vec<TokenRow> = api_tokens::table
        .inner_join(staff_users::table)
        .order(api_tokens::created_at.desc())
        .select((
            api_tokens::id,
            api_tokens::name,
            api_tokens::role,
            staff_users::email,
            api_tokens::created_at,
            api_tokens::expires_at,
            api_tokens::revoked_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(id, name, role, email, created, expires, revoked)| TokenListing {
                id,
                name,
                role,
                email,
                created_at: rfc3339(created),
                expires_at: expires.map(rfc3339),
                revoked_at: revoked.map(rfc3339),
            },
        )
        .collect())
}

/// Revokes token `id`; revoking a revoked token changes nothing. Returns whether it was live.
pub fn revoke(conn: &mut DbConnection, now: DateTime<Utc>, id: &str, actor: &str) -> Result<bool> {
    write_tx(conn, |conn| {
        let known: i64 = api_tokens::table
            .filter(api_tokens::id.eq(id))
            .count()
            .get_result(conn)?;
        if known == 0 {
            return Err(Error::NotFound(format!("no API token {id}")));
        }
        // Only a live token is revoked; of two concurrent revokes one changes the row.
        let revoked = diesel::update(
            api_tokens::table
                .filter(api_tokens::id.eq(id))
                .filter(api_tokens::revoked_at.is_null()),
        )
        .set(api_tokens::revoked_at.eq(Some(to_db(now))))
        .execute(conn)?;
        if revoked == 0 {
            return Ok(false);
        }
        append(
            conn,
            now,
            EventKind::ApiTokenRevoked,
            actor,
            Some(id),
            &json!({ "token": id }),
        )?;
        Ok(true)
    })
}
