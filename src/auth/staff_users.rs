//! Staff records, keyed by (issuer, subject): staff created from the command line have the
//! issuer `local` and their email as subject; staff signing in through OpenID Connect have
//! their provider's issuer and subject.

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;

use crate::auth::Role;
use crate::db::DbConnection;
use crate::db::schema::staff_users;
use crate::db::time::to_db;
use crate::error::{Error, Result};

/// Staff created from the command line (no identity provider) carry this issuer.
pub const LOCAL_ISSUER: &str = "local";

/// A staff member to create.
pub(crate) struct NewStaff<'a> {
    pub issuer: &'a str,
    pub subject: &'a str,
    pub email: &'a str,
    pub display_name: &'a str,
    pub role: Role,
}

/// Creates the staff member unless one with the same issuer and subject exists (two first
/// sign-ins or token issues racing: one row wins); returns the id of the one that exists.
pub(crate) fn create_or_find(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    staff: &NewStaff<'_>,
) -> Result<String> {
    let row = (
        staff_users::id.eq(uuid::Uuid::now_v7().to_string()),
        staff_users::issuer.eq(staff.issuer),
        staff_users::subject.eq(staff.subject),
        staff_users::email.eq(staff.email),
        staff_users::display_name.eq(staff.display_name),
        staff_users::role.eq(staff.role.as_str()),
        staff_users::created_at.eq(to_db(now)),
    );
    match conn {
        DbConnection::Postgres(pg) => diesel::insert_into(staff_users::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(pg)?,
        DbConnection::Sqlite(sqlite) => diesel::insert_into(staff_users::table)
            .values(row)
            .on_conflict_do_nothing()
            .execute(sqlite)?,
    };
    Ok(staff_users::table
        .filter(staff_users::issuer.eq(staff.issuer))
        .filter(staff_users::subject.eq(staff.subject))
        .select(staff_users::id)
        .first(conn)?)
}

/// The local staff member with this email (created with `role` when new).
pub(crate) fn local_staff_member(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    email: &str,
    role: Role,
) -> Result<String> {
    let existing: Option<(String, String, Option<NaiveDateTime>)> = staff_users::table
        .filter(staff_users::issuer.eq(LOCAL_ISSUER))
        .filter(staff_users::subject.eq(email))
        .select((staff_users::id, staff_users::role, staff_users::disabled_at))
        .first(conn)
        .optional()?;
    match existing {
        Some((_, _, Some(_))) => Err(Error::Forbidden(format!(
            "{email} is disabled; nothing is issued to them"
        ))),
        Some((id, held, None)) if held == role.as_str() => Ok(id),
        Some((_, held, None)) => Err(Error::BadRequest(format!(
            "{email} is staff with the role {held}; they cannot be given {role}"
        ))),
        None => {
            // Two admins issuing the first token of one address at once: one row wins, the
            // other issue uses it (or is told the role differs).
            let staff = NewStaff {
                issuer: LOCAL_ISSUER,
                subject: email,
                email,
                display_name: email,
                role,
            };
            create_or_find(conn, now, &staff)?;
            local_staff_member(conn, now, email, role)
        }
    }
}

/// A staff member as the console lists them.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq)]
pub struct StaffListing {
    pub email: String,
    pub display_name: String,
    pub role: String,
    /// `local` (command line, sign-in links) or the provider's issuer.
    pub issuer: String,
    pub created_at: NaiveDateTime,
    pub disabled: bool,
}

/// Every staff member, by email.
pub fn list_staff(conn: &mut DbConnection) -> Result<Vec<StaffListing>> {
    let rows: Vec<(
        String,
        String,
        String,
        String,
        NaiveDateTime,
        Option<NaiveDateTime>,
    )> = staff_users::table
        .order((staff_users::email.asc(), staff_users::issuer.asc()))
        .select((
            staff_users::email,
            staff_users::display_name,
            staff_users::role,
            staff_users::issuer,
            staff_users::created_at,
            staff_users::disabled_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(email, display_name, role, issuer, created_at, disabled_at)| StaffListing {
                email,
                display_name,
                role,
                issuer,
                created_at,
                disabled: disabled_at.is_some(),
            },
        )
        .collect())
}
