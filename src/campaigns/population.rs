//! What a campaign reads from the source's snapshot as of one sync run: the people (all of
//! them, for managers), the groups in scope, and the accesses page by page. Each read is a
//! simple scan of one table (accesses by their id), so its cost grows with the snapshot and
//! not with the number of pages; people and groups are joined to accesses in memory, which
//! grows with people and groups, never with accesses. Reads only; generation writes.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use crate::campaigns::reviewers::{Candidate, ManagerFacts};
use crate::campaigns::routing::{ChainStep, GroupOwner, PersonFacts, Subject};
use crate::config::CampaignDefinition;
use crate::db::DbConnection;
use crate::db::schema::{entitlement_versions, grant_versions, identity_versions};
use crate::directory::snapshot::names_group;
use crate::error::{Error, Result};

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
    /// Its owner, when the reviewer chain asks for owners (`NotNamed` otherwise).
    pub(crate) owner: GroupOwner,
}

/// One access: who has which group, since when.
pub(crate) struct Access {
    pub(crate) id: i64,
    pub(crate) person: String,
    pub(crate) group: String,
    pub(crate) first_seen_at: chrono::NaiveDateTime,
}

/// The people and the groups in scope of one run of a source.
pub(crate) struct Population {
    pub(crate) people: HashMap<String, Person>,
    /// Normalised DN -> external id, to find managers.
    by_dn: HashMap<String, String>,
    pub(crate) groups: HashMap<String, Group>,
    /// An off-cycle review: only accesses first seen after this instant are reviewed.
    pub(crate) new_since: Option<chrono::NaiveDateTime>,
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
        let groups: Vec<GroupRow> = entitlement_versions::table
            .filter(entitlement_versions::source.eq(source))
            .filter(crate::as_of!(entitlement_versions, seq))
            .select((
                entitlement_versions::external_id,
                entitlement_versions::dn_norm,
                entitlement_versions::name,
                entitlement_versions::dn,
                entitlement_versions::privileged,
                entitlement_versions::owner_dn_norm,
            ))
            .load(conn)?;
        let owners = ConfiguredOwners::resolve(definition, &people, &groups)?;
        let by_owner = definition.stage_chains()[0].contains(&ChainStep::Owner);
        let groups = groups
            .into_iter()
            .filter(|(_, dn_norm, name, _, privileged, _)| {
                (definition.groups.is_empty()
                    || definition
                        .groups
                        .iter()
                        .any(|w| names_group(w, dn_norm, name)))
                    && (!definition.privileged_only || *privileged)
            })
            .map(|(id, dn_norm, name, dn, privileged, owner_dn)| {
                let owner = match (by_owner, owners.of(&dn_norm, &name), owner_dn) {
                    (false, ..) => GroupOwner::NotNamed,
                    (true, Some(configured), _) => GroupOwner::Person(configured.to_string()),
                    (true, None, Some(owner_dn)) => by_dn
                        .get(&owner_dn)
                        .map_or(GroupOwner::Missing, |id| GroupOwner::Person(id.clone())),
                    (true, None, None) => GroupOwner::NotNamed,
                };
                let group = Group {
                    name,
                    dn,
                    privileged,
                    owner,
                };
                (id, group)
            })
            .collect();
        Ok(Population {
            people,
            by_dn,
            groups,
            new_since: None,
        })
    }

    /// Whether the campaign reviews this access (of a person and a group in scope): all of
    /// them, or for an off-cycle review those that appeared since its reference snapshot.
    pub(crate) fn reviews(&self, access: &Access) -> bool {
        self.new_since
            .is_none_or(|since| access.first_seen_at > since)
    }

    /// The owners of the groups in scope who are people of the snapshot, as candidates.
    pub(crate) fn owner_facts(&self) -> HashMap<String, ManagerFacts> {
        self.groups
            .values()
            .filter_map(|g| match &g.owner {
                GroupOwner::Person(id) => Some(id),
                GroupOwner::NotNamed | GroupOwner::Missing => None,
            })
            .filter_map(|id| Some((id.clone(), self.candidate_facts(id)?)))
            .collect()
    }

    /// A person of the snapshot as a possible reviewer.
    fn candidate_facts(&self, id: &str) -> Option<ManagerFacts> {
        let person = self.people.get(id)?;
        Some(ManagerFacts {
            candidate: Candidate {
                external_id: Some(id.to_string()),
                login: Some(person.login.clone()),
                email: person.email.clone().unwrap_or_default(),
                display_name: person.name.clone(),
            },
            active: person.status == "active",
        })
    }

    /// What routing needs to know of `person`: email and manager (if found in the snapshot).
    pub(crate) fn facts(&self, person: &str) -> Option<PersonFacts> {
        let found = self.people.get(person)?;
        let manager = found
            .manager_dn
            .as_ref()
            .and_then(|dn| self.by_dn.get(dn))
            .and_then(|id| self.candidate_facts(id));
        Some(PersonFacts {
            external_id: person.to_string(),
            email: found.email.clone(),
            manager,
            manager_named: found.manager_dn.is_some(),
        })
    }
}

/// A group as read: external id, normalised DN, name, DN, privileged, owner's normalised DN.
type GroupRow = (String, String, String, String, bool, Option<String>);

/// Owners named in the definition (`group_owners`), found among the snapshot's people.
struct ConfiguredOwners<'a> {
    /// (group name or DN as written, owner's external id).
    owners: Vec<(&'a str, String)>,
}

impl<'a> ConfiguredOwners<'a> {
    fn resolve(
        definition: &'a CampaignDefinition,
        people: &HashMap<String, Person>,
        groups: &[GroupRow],
    ) -> Result<Self> {
        let mut owners = Vec::with_capacity(definition.group_owners.len());
        for (group, owner) in &definition.group_owners {
            if !groups
                .iter()
                .any(|(_, dn_norm, name, ..)| names_group(group, dn_norm, name))
            {
                return Err(Error::Conflict(format!(
                    "group_owners names the group `{group}`, which the source's current \
                     snapshot does not have"
                )));
            }
            let found = people.iter().find(|(_, p)| {
                p.login == *owner
                    || p.email
                        .as_deref()
                        .is_some_and(|e| e.eq_ignore_ascii_case(owner))
            });
            let Some((id, _)) = found else {
                // The owner's name may be an address: the message names the key only.
                return Err(Error::Conflict(format!(
                    "group_owners: the owner named for `{group}` is not a person of the \
                     source's current snapshot"
                )));
            };
            owners.push((group.as_str(), id.clone()));
        }
        Ok(ConfiguredOwners { owners })
    }

    fn of(&self, dn_norm: &str, name: &str) -> Option<&str> {
        self.owners
            .iter()
            .find(|(group, _)| names_group(group, dn_norm, name))
            .map(|(_, id)| id.as_str())
    }
}

/// Who has an access in scope (with the owner of the group, which their chain may depend
/// on), and who holds each privileged group in scope: one pass over the accesses.
pub(crate) struct Holders {
    pub(crate) subjects: HashSet<Subject>,
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
            subjects: HashSet::new(),
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
                let reviewed = population.reviews(&access);
                if group.privileged {
                    holders
                        .of_privileged
                        .entry(access.group)
                        .or_default()
                        .insert(access.person.clone());
                }
                // Every holder counts for the independence rule; only new access is reviewed
                // by an off-cycle review.
                if reviewed {
                    holders
                        .subjects
                        .insert((access.person, group.owner.clone()));
                }
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
    let rows: Vec<(i64, String, String, chrono::NaiveDateTime)> = grant_versions::table
        .filter(grant_versions::source.eq(source))
        .filter(grant_versions::id.gt(after))
        .filter(crate::as_of!(grant_versions, seq))
        .order(grant_versions::id.asc())
        .limit(GRANT_PAGE)
        .select((
            grant_versions::id,
            grant_versions::identity_external_id,
            grant_versions::entitlement_external_id,
            grant_versions::first_seen_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, person, group, first_seen_at)| Access {
            id,
            person,
            group,
            first_seen_at,
        })
        .collect())
}
