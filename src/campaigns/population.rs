//! What a campaign reads from the source's snapshot as of one sync run: the people (all of
//! them, for managers), the groups in scope, and the accesses page by page. Each read is a
//! simple scan of one table (accesses by their id), so its cost grows with the snapshot and
//! not with the number of pages; people and groups are joined to accesses in memory, which
//! grows with people and groups, never with accesses. Reads only; generation writes.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use crate::campaigns::reviewers::{Candidate, ManagerFacts};
use crate::campaigns::routing::PersonFacts;
use crate::config::CampaignDefinition;
use crate::db::DbConnection;
use crate::db::schema::{entitlement_versions, grant_versions, identity_versions};
use crate::directory::snapshot::names_group;
use crate::error::Result;

/// Accesses read per query.
pub(crate) const GRANT_PAGE: i64 = 5_000;

/// A person as the snapshot has them.
pub(crate) struct Person {
    pub(crate) login: String,
    pub(crate) name: String,
    pub(crate) email: Option<String>,
    pub(crate) status: String,
    manager_dn: Option<String>,
    /// The campaign reviews this person's access (service accounts and disabled accounts
    /// may be left out by the definition).
    pub(crate) in_scope: bool,
}

/// A group in the campaign's scope.
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) dn: String,
    pub(crate) privileged: bool,
}

/// One access: who has which group, directly or via which groups, since when.
pub(crate) struct Access {
    pub(crate) id: i64,
    pub(crate) person: String,
    pub(crate) group: String,
    pub(crate) via: Option<String>,
    pub(crate) first_seen_at: chrono::NaiveDateTime,
}

/// The people and the groups in scope of one run of a source.
pub(crate) struct Population {
    pub(crate) people: HashMap<String, Person>,
    /// Normalised DN -> external id, to find managers.
    by_dn: HashMap<String, String>,
    pub(crate) groups: HashMap<String, Group>,
}

impl Population {
    pub(crate) fn load(
        conn: &mut DbConnection,
        source: &str,
        seq: i64,
        definition: &CampaignDefinition,
    ) -> Result<Population> {
        type PersonRow = (
            String,
            String,
            String,
            Option<String>,
            String,
            String,
            Option<String>,
            String,
        );
        let rows: Vec<PersonRow> = identity_versions::table
            .filter(identity_versions::source.eq(source))
            .filter(crate::as_of!(identity_versions, seq))
            .select((
                identity_versions::external_id,
                identity_versions::login,
                identity_versions::display_name,
                identity_versions::email,
                identity_versions::status,
                identity_versions::dn_norm,
                identity_versions::manager_dn_norm,
                identity_versions::account_kind,
            ))
            .load(conn)?;
        let mut people = HashMap::with_capacity(rows.len());
        let mut by_dn = HashMap::with_capacity(rows.len());
        for (id, login, name, email, status, dn, manager_dn, kind) in rows {
            by_dn.insert(dn, id.clone());
            let in_scope = (definition.include_service_accounts || kind != "service")
                && (definition.include_disabled || status == "active");
            people.insert(
                id,
                Person {
                    login,
                    name,
                    email,
                    status,
                    manager_dn,
                    in_scope,
                },
            );
        }
        let groups: Vec<(String, String, String, String, bool)> = entitlement_versions::table
            .filter(entitlement_versions::source.eq(source))
            .filter(crate::as_of!(entitlement_versions, seq))
            .select((
                entitlement_versions::external_id,
                entitlement_versions::dn_norm,
                entitlement_versions::name,
                entitlement_versions::dn,
                entitlement_versions::privileged,
            ))
            .load(conn)?;
        let groups = groups
            .into_iter()
            .filter(|(_, dn_norm, name, _, privileged)| {
                (definition.groups.is_empty()
                    || definition
                        .groups
                        .iter()
                        .any(|w| names_group(w, dn_norm, name)))
                    && (!definition.privileged_only || *privileged)
            })
            .map(|(id, _, name, dn, privileged)| {
                (
                    id,
                    Group {
                        name,
                        dn,
                        privileged,
                    },
                )
            })
            .collect();
        Ok(Population {
            people,
            by_dn,
            groups,
        })
    }

    /// What routing needs to know of `person`: email and manager (if found in the snapshot).
    pub(crate) fn facts(&self, person: &str) -> Option<PersonFacts> {
        let found = self.people.get(person)?;
        let manager = found
            .manager_dn
            .as_ref()
            .and_then(|dn| self.by_dn.get(dn))
            .and_then(|id| Some((id, self.people.get(id)?)))
            .map(|(id, m)| ManagerFacts {
                candidate: Candidate {
                    external_id: Some(id.clone()),
                    login: Some(m.login.clone()),
                    email: m.email.clone().unwrap_or_default(),
                    display_name: m.name.clone(),
                },
                active: m.status == "active",
            });
        Some(PersonFacts {
            external_id: person.to_string(),
            email: found.email.clone(),
            manager,
            manager_named: found.manager_dn.is_some(),
        })
    }
}

/// Who has an access in scope, and who holds each privileged group in scope: one pass over
/// the accesses.
pub(crate) struct Holders {
    pub(crate) people: HashSet<String>,
    pub(crate) of_privileged: HashMap<String, HashSet<String>>,
}

impl Holders {
    pub(crate) fn read(
        conn: &mut DbConnection,
        source: &str,
        seq: i64,
        population: &Population,
    ) -> Result<Holders> {
        let mut holders = Holders {
            people: HashSet::new(),
            of_privileged: HashMap::new(),
        };
        let mut after = 0;
        loop {
            let page = access_page(conn, source, seq, after)?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for access in page {
                let Some(group) = population.groups.get(&access.group) else {
                    continue;
                };
                if !population
                    .people
                    .get(&access.person)
                    .is_some_and(|p| p.in_scope)
                {
                    continue;
                }
                if group.privileged {
                    holders
                        .of_privileged
                        .entry(access.group)
                        .or_default()
                        .insert(access.person.clone());
                }
                holders.people.insert(access.person);
            }
        }
        Ok(holders)
    }
}

/// One page of the accesses of run `seq` after access `after`, by id.
pub(crate) fn access_page(
    conn: &mut DbConnection,
    source: &str,
    seq: i64,
    after: i64,
) -> Result<Vec<Access>> {
    let rows: Vec<(i64, String, String, Option<String>, chrono::NaiveDateTime)> =
        grant_versions::table
            .filter(grant_versions::source.eq(source))
            .filter(grant_versions::id.gt(after))
            .filter(crate::as_of!(grant_versions, seq))
            .order(grant_versions::id.asc())
            .limit(GRANT_PAGE)
            .select((
                grant_versions::id,
                grant_versions::identity_external_id,
                grant_versions::entitlement_external_id,
                grant_versions::via,
                grant_versions::first_seen_at,
            ))
            .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, person, group, via, first_seen_at)| Access {
            id,
            person,
            group,
            via,
            first_seen_at,
        })
        .collect())
}
