//! The people who can review: a candidate reviewer (a person of the snapshot, or an email
//! address named as fallback or delegate) and a person's manager as the snapshot has them, and
//! how a name from config or a form (an email address or a login) is found in a snapshot. Who
//! reviews which item is decided in `routing` and `reassign`.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::DbConnection;
use crate::db::schema::identity_versions;
use crate::error::{Error, Result};

/// A person who can receive review requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub external_id: Option<String>,
    pub login: Option<String>,
    pub email: String,
    pub display_name: String,
}

/// The manager as found in the same snapshot, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagerFacts {
    pub candidate: Candidate,
    pub active: bool,
}

/// What a name (email address or login) turned out to be in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Someone who can review: an active person with an email, or an address outside the
    /// directory.
    Reviewer(Candidate),
    /// A person the directory shows disabled (or otherwise not active): their external id
    /// and status.
    Inactive(String, String),
    /// Neither an email address nor a person with an email.
    Unknown,
}

/// Looks `name` up among the people of `source` as of snapshot `seq`: by email address
/// first, then by login (an address that is also someone's login means the address's owner).
pub fn find_person(conn: &mut DbConnection, source: &str, seq: i64, name: &str) -> Result<Found> {
    type PersonRow = (String, String, String, Option<String>, String);
    let columns = (
        identity_versions::external_id,
        identity_versions::login,
        identity_versions::display_name,
        identity_versions::email,
        identity_versions::status,
    );
    let by_email: Option<PersonRow> = identity_versions::table
        .filter(identity_versions::source.eq(source))
        .filter(crate::as_of!(identity_versions, seq))
        .filter(identity_versions::email.eq(name))
        .order(identity_versions::external_id.asc())
        .select(columns)
        .first(conn)
        .optional()?;
    let found = match by_email {
        Some(row) => Some(row),
        None => identity_versions::table
            .filter(identity_versions::source.eq(source))
            .filter(crate::as_of!(identity_versions, seq))
            .filter(identity_versions::login.eq(name))
            .order(identity_versions::external_id.asc())
            .select(columns)
            .first::<PersonRow>(conn)
            .optional()?,
    };
    Ok(match found {
        Some((external_id, .., status)) if status != "active" => {
            Found::Inactive(external_id, status)
        }
        Some((external_id, login, display_name, Some(email), _)) if !email.is_empty() => {
            Found::Reviewer(Candidate {
                external_id: Some(external_id),
                login: Some(login),
                email,
                display_name,
            })
        }
        _ if name.contains('@') => Found::Reviewer(Candidate {
            external_id: None,
            login: None,
            email: name.to_string(),
            display_name: name.to_string(),
        }),
        _ => Found::Unknown,
    })
}

/// What to do with a listed name that is nobody in the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IfUnknown {
    /// Refuse: a campaign about to open needs its configuration fixed first.
    Refuse,
    /// Skip with a warning: moving items of an open campaign must not stop for it.
    Skip,
}

/// The people of a configured list (`list` names it in messages: `fallback_reviewers`,
/// `named_reviewers`) who can review: found by email or login in the snapshot, or an address
/// outside the directory. A person the directory shows disabled is skipped with a warning.
/// Messages name an entry by its position, never by the name (it may be an address).
fn resolve_list(
    conn: &mut DbConnection,
    (source, seq): (&str, i64),
    list: &str,
    names: &[String],
    if_unknown: IfUnknown,
) -> Result<Vec<Candidate>> {
    let mut out = Vec::with_capacity(names.len());
    for (position, name) in names.iter().enumerate() {
        match find_person(conn, source, seq, name)? {
            Found::Reviewer(candidate) => out.push(candidate),
            Found::Inactive(external_id, status) => tracing::warn!(
                source,
                identity = %external_id,
                "{list}[{position}] is {status} in the directory and is skipped"
            ),
            Found::Unknown if if_unknown == IfUnknown::Skip => tracing::warn!(
                source,
                "{list}[{position}] is no longer in the directory and is skipped"
            ),
            Found::Unknown => {
                return Err(Error::Conflict(format!(
                    "{list}[{position}] is neither an email address nor a person with an \
                     email in the current snapshot"
                )));
            }
        }
    }
    Ok(out)
}

/// Fallback reviewers for a campaign about to open: a name that is nobody, or none usable
/// left, is an error the admin must fix before the campaign opens.
pub(crate) fn resolve_fallbacks(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    names: &[String],
) -> Result<Vec<Candidate>> {
    let out = resolve_list(
        conn,
        (source, seq),
        "fallback_reviewers",
        names,
        IfUnknown::Refuse,
    )?;
    if out.is_empty() && !names.is_empty() {
        return Err(Error::Conflict(
            "every fallback reviewer is disabled in the directory; name one who can act".into(),
        ));
    }
    Ok(out)
}

/// Named reviewers for a campaign about to open or moving on to its next stage: a name that
/// is nobody is an error; one the directory shows disabled is skipped (the chain goes on).
pub(crate) fn resolve_named(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    names: &[String],
) -> Result<Vec<Candidate>> {
    resolve_list(
        conn,
        (source, seq),
        "named_reviewers",
        names,
        IfUnknown::Refuse,
    )
}

/// The people of `list` who can act now, for moving items of an open campaign: a name that
/// no longer resolves is skipped with a warning rather than stopping every move.
pub(crate) fn available_people(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    list: &str,
    names: &[String],
) -> Result<Vec<Candidate>> {
    resolve_list(conn, (source, seq), list, names, IfUnknown::Skip)
}
