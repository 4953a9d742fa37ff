//! One-time sign-in links for staff where no identity provider is configured: `attest admin
//! link` makes one for a local staff member (created with the role when new), valid for a
//! few minutes; only its SHA-256 is stored. Redeeming it uses it up, in the transaction that
//! checks it, and is refused when `auth.require_mfa` is on (a link is one factor).

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde_json::json;

use crate::auth::Role;
use crate::auth::sessions::{StaffAuth, new_secret, secret_hash};
use crate::auth::staff_users::{LOCAL_ISSUER, local_staff_member};
use crate::db::schema::{staff_sign_in_links, staff_users};
use crate::db::time::to_db;
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventKind, append};

pub const DEFAULT_LINK_MINUTES: i64 = 15;
pub const MAX_LINK_MINUTES: i64 = 24 * 60;

/// A link's secret (for the URL only) and when it stops working.
pub struct SignInLink {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

/// Makes a link for the local staff member `email` with `role`; `actor` made it.
pub fn create_link(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    email: &str,
    role: Role,
    minutes: i64,
    actor: &str,
) -> Result<SignInLink> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.chars().count() > 254 {
        return Err(Error::BadRequest(format!(
            "`{email}` is not an email address"
        )));
    }
    if !(1..=MAX_LINK_MINUTES).contains(&minutes) {
        return Err(Error::BadRequest(format!(
            "a sign-in link lasts 1 to {MAX_LINK_MINUTES} minutes"
        )));
    }
    let secret = new_secret();
    let expires_at = now + Duration::minutes(minutes);
    write_tx(conn, |conn| {
        let staff_user_id = local_staff_member(conn, now, &email, role)?;
        let hash = secret_hash(&secret);
        diesel::insert_into(staff_sign_in_links::table)
            .values((
                staff_sign_in_links::secret_hash.eq(&hash),
                staff_sign_in_links::staff_user_id.eq(&staff_user_id),
                staff_sign_in_links::role.eq(role.as_str()),
                staff_sign_in_links::created_at.eq(to_db(now)),
                staff_sign_in_links::expires_at.eq(to_db(expires_at)),
            ))
            .execute(conn)?;
        append(
            conn,
            now,
            EventKind::StaffSignInLinkCreated,
            actor,
            Some(&staff_user_id),
            &json!({
                "staff_user": staff_user_id,
                "role": role.as_str(),
                "link": &hash[..16],
                "expires_at": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            }),
        )?;
        Ok(())
    })?;
    Ok(SignInLink { secret, expires_at })
}

/// Uses the link of `secret` up: (staff member, role, how they authenticated). Unknown,
/// used, expired links and disabled staff are refused alike.
pub fn redeem(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    secret: &str,
    require_mfa: bool,
) -> Result<(String, Role, StaffAuth)> {
    let hash = secret_hash(secret);
    write_tx(conn, |conn| {
        let used = diesel::update(
            staff_sign_in_links::table
                .filter(staff_sign_in_links::secret_hash.eq(&hash))
                .filter(staff_sign_in_links::used_at.is_null())
                .filter(staff_sign_in_links::expires_at.gt(to_db(now))),
        )
        .set(staff_sign_in_links::used_at.eq(Some(to_db(now))))
        .execute(conn)?;
        if used != 1 {
            return Err(Error::Unauthorized);
        }
        let (staff_user_id, role, held, disabled_at): (
            String,
            String,
            String,
            Option<NaiveDateTime>,
        ) = staff_sign_in_links::table
            .inner_join(
                staff_users::table.on(staff_users::id.eq(staff_sign_in_links::staff_user_id)),
            )
            .filter(staff_sign_in_links::secret_hash.eq(&hash))
            .select((
                staff_sign_in_links::staff_user_id,
                staff_sign_in_links::role,
                staff_users::role,
                staff_users::disabled_at,
            ))
            .first(conn)?;
        if disabled_at.is_some() || role != held {
            return Err(Error::Unauthorized);
        }
        let auth = StaffAuth {
            issuer: LOCAL_ISSUER.to_string(),
            acr: None,
            amr: vec!["link".to_string()],
        };
        if require_mfa {
            append(
                conn,
                now,
                EventKind::StaffSignInRefused,
                "auth:link",
                Some(&staff_user_id),
                &json!({
                    "staff_user": staff_user_id,
                    "issuer": LOCAL_ISSUER,
                    "reason": "second_factor_required",
                    "amr": auth.amr,
                }),
            )?;
            // The link is used up either way; the refusal is committed with it.
            return Ok(Err(Error::Forbidden(
                "auth.require_mfa is on: sign in through the identity provider with a second \
                 factor (a sign-in link is one factor)"
                    .into(),
            )));
        }
        let role: Role = role.parse()?;
        Ok(Ok((staff_user_id, role, auth)))
    })?
}
