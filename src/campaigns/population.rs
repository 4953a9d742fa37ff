//! What a campaign reads from the source's snapshot as of one sync run: the groups in scope,
//! the accesses page by page with person, group and manager, the people with an item, who
//! holds each privileged group, and the fallback reviewers. Reads only; generation writes.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use crate::campaigns::reviewers::{Candidate, ManagerFacts};
use crate::campaigns::routing::PersonFacts;
use crate::config::CampaignDefinition;
use crate::db::DbConnection;
use crate::db::schema::{entitlement_versions, grant_versions, identity_versions};
use crate::directory::snapshot::names_group;
use crate::error::{Error, Result};

pub(crate) const GRANT_PAGE: i64 = 1_000;

diesel::alias!(identity_versions as managers: ManagersAlias);

/// Every person with an item, with what routing needs to know of them (one pass over the
/// accesses in scope; memory grows with people, not with accesses).
pub(crate) fn people_in_scope(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    entitlement_ids: Option<&[String]>,
) -> Result<HashMap<String, PersonFacts>> {
    let mut people = HashMap::new();
    let mut after = 0;
    loop {
        let page = grant_page(conn, source, seq, entitlement_ids, after)?;
        let Some(last) = page.last() else { break };
        after = last.grant_id;
        for row in page {
            people
                .entry(row.identity_external_id.clone())
                .or_insert_with(|| PersonFacts {
                    external_id: row.identity_external_id,
                    email: row.identity_email,
                    manager: row.manager,
                    manager_named: row.manager_named,
                });
        }
    }
    Ok(people)
}

/// For each privileged group, who holds it (as of run `seq`): they do not review it.
pub(crate) fn privileged_holders(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
) -> Result<HashMap<String, HashSet<String>>> {
    let rows: Vec<(String, String)> = grant_versions::table
        .inner_join(
            entitlement_versions::table.on(entitlement_versions::source
                .eq(grant_versions::source)
                .and(entitlement_versions::external_id.eq(grant_versions::entitlement_external_id))
                .and(crate::as_of!(entitlement_versions, seq))),
        )
        .filter(grant_versions::source.eq(source))
        .filter(crate::as_of!(grant_versions, seq))
        .filter(entitlement_versions::privileged.eq(true))
        .select((
            grant_versions::entitlement_external_id,
            grant_versions::identity_external_id,
        ))
        .load(conn)?;
    let mut holders: HashMap<String, HashSet<String>> = HashMap::new();
    for (group, person) in rows {
        holders.entry(group).or_default().insert(person);
    }
    Ok(holders)
}

/// External ids of the groups the definition covers (as of run `seq`).
pub(crate) fn entitlements_in_scope(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    definition: &CampaignDefinition,
) -> Result<Vec<String>> {
    let all: Vec<(String, String, String, bool)> = entitlement_versions::table
        .filter(entitlement_versions::source.eq(source))
        .filter(crate::as_of!(entitlement_versions, seq))
        .select((
            entitlement_versions::external_id,
            entitlement_versions::dn_norm,
            entitlement_versions::name,
            entitlement_versions::privileged,
        ))
        .load(conn)?;
    Ok(all
        .into_iter()
        .filter(|(_, dn, name, privileged)| {
            (definition.groups.is_empty()
                || definition.groups.iter().any(|w| names_group(w, dn, name)))
                && (!definition.privileged_only || *privileged)
        })
        .map(|(id, ..)| id)
        .collect())
}

/// Fallback reviewers named by email or login: looked up in the snapshot for their name; an
/// email address not in the directory is still usable. A fallback whom the directory shows
/// disabled is skipped (reviewers must be able to act); none usable left is an error.
pub(crate) fn resolve_fallbacks(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    names: &[String],
) -> Result<Vec<Candidate>> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let found: Option<(String, String, String, Option<String>, String)> =
            identity_versions::table
                .filter(identity_versions::source.eq(source))
                .filter(crate::as_of!(identity_versions, seq))
                .filter(
                    identity_versions::email
                        .eq(name)
                        .or(identity_versions::login.eq(name)),
                )
                .select((
                    identity_versions::external_id,
                    identity_versions::login,
                    identity_versions::display_name,
                    identity_versions::email,
                    identity_versions::status,
                ))
                .first(conn)
                .optional()?;
        match found {
            Some((external_id, .., status)) if status != "active" => {
                tracing::warn!(
                    source,
                    identity = %external_id,
                    "a fallback reviewer is {status} in the directory and is skipped"
                );
            }
            Some((external_id, login, display_name, Some(email), _)) => out.push(Candidate {
                external_id: Some(external_id),
                login: Some(login),
                email,
                display_name,
            }),
            _ if name.contains('@') => out.push(Candidate {
                external_id: None,
                login: None,
                email: name.clone(),
                display_name: name.clone(),
            }),
            _ => {
                return Err(Error::Conflict(format!(
                    "fallback reviewer `{name}` is neither an email address nor a person with an \
                     email in the current snapshot"
                )));
            }
        }
    }
    if out.is_empty() && !names.is_empty() {
        return Err(Error::Conflict(
            "every fallback reviewer is disabled in the directory; name one who can act".into(),
        ));
    }
    Ok(out)
}

pub(crate) struct GrantRow {
    pub(crate) grant_id: i64,
    /// The directory names a manager for the person (found in the snapshot or not).
    pub(crate) manager_named: bool,
    pub(crate) via: Option<String>,
    pub(crate) first_seen_at: chrono::NaiveDateTime,
    pub(crate) identity_external_id: String,
    pub(crate) identity_login: String,
    pub(crate) identity_name: String,
    pub(crate) identity_email: Option<String>,
    pub(crate) identity_status: String,
    pub(crate) entitlement_external_id: String,
    pub(crate) entitlement_name: String,
    pub(crate) entitlement_dn: String,
    pub(crate) privileged: bool,
    pub(crate) manager: Option<ManagerFacts>,
}

type ManagerColumns = (String, String, String, Option<String>, String);
type GrantColumns = (
    (i64, Option<String>, chrono::NaiveDateTime),
    (
        String,
        String,
        String,
        Option<String>,
        String,
        Option<String>,
    ),
    (String, String, String, bool),
    Option<ManagerColumns>,
);

/// One page (after grant `after`) of the accesses of run `seq`, with person, group and (if
/// found) manager as they were in that run; limited to `entitlement_ids` when given.
pub(crate) fn grant_page(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    entitlement_ids: Option<&[String]>,
    after: i64,
) -> Result<Vec<GrantRow>> {
    let mut query = grant_versions::table
        .inner_join(
            identity_versions::table.on(identity_versions::source
                .eq(grant_versions::source)
                .and(identity_versions::external_id.eq(grant_versions::identity_external_id))
                .and(crate::as_of!(identity_versions, seq))),
        )
        .inner_join(
            entitlement_versions::table.on(entitlement_versions::source
                .eq(grant_versions::source)
                .and(entitlement_versions::external_id.eq(grant_versions::entitlement_external_id))
                .and(crate::as_of!(entitlement_versions, seq))),
        )
        .left_join(
            managers.on(managers
                .field(identity_versions::source)
                .eq(identity_versions::source)
                .and(
                    managers
                        .field(identity_versions::dn_norm)
                        .nullable()
                        .eq(identity_versions::manager_dn_norm),
                )
                .and(managers.field(identity_versions::valid_from).le(seq))
                .and(
                    managers
                        .field(identity_versions::valid_to)
                        .is_null()
                        .or(managers.field(identity_versions::valid_to).gt(seq)),
                )),
        )
        .filter(grant_versions::source.eq(source))
        .filter(crate::as_of!(grant_versions, seq))
        .filter(grant_versions::id.gt(after))
        .into_boxed();
    if let Some(ids) = entitlement_ids {
        query = query.filter(grant_versions::entitlement_external_id.eq_any(ids));
    }
    let rows: Vec<GrantColumns> = query
        .order(grant_versions::id.asc())
        .limit(GRANT_PAGE)
        .select((
            (
                grant_versions::id,
                grant_versions::via,
                grant_versions::first_seen_at,
            ),
            (
                identity_versions::external_id,
                identity_versions::login,
                identity_versions::display_name,
                identity_versions::email,
                identity_versions::status,
                identity_versions::manager_dn_norm,
            ),
            (
                entitlement_versions::external_id,
                entitlement_versions::name,
                entitlement_versions::dn,
                entitlement_versions::privileged,
            ),
            managers
                .fields((
                    identity_versions::external_id,
                    identity_versions::login,
                    identity_versions::display_name,
                    identity_versions::email,
                    identity_versions::status,
                ))
                .nullable(),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(grant, person, group, manager)| GrantRow {
            grant_id: grant.0,
            manager_named: person.5.is_some(),
            via: grant.1,
            first_seen_at: grant.2,
            identity_external_id: person.0,
            identity_login: person.1,
            identity_name: person.2,
            identity_email: person.3,
            identity_status: person.4,
            entitlement_external_id: group.0,
            entitlement_name: group.1,
            entitlement_dn: group.2,
            privileged: group.3,
            manager: manager.map(|(external_id, login, display_name, email, status)| {
                ManagerFacts {
                    candidate: Candidate {
                        external_id: Some(external_id),
                        login: Some(login),
                        email: email.unwrap_or_default(),
                        display_name,
                    },
                    active: status == "active",
                }
            }),
        })
        .collect())
}
