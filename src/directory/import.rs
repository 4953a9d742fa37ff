//! The streaming half of a sync: every person and group the source hands over is compared, by
//! a hash of its content, with the version that was current before this sync, and only what
//! changed is written: a new version valid from this run, the old one closed at this run, and
//! for a changed group the difference in its direct members. Writes go out in batches, each in
//! its own short write transaction, so that review pages and decisions keep answering while a
//! long directory read runs. Nothing written here is visible before the run becomes current;
//! if the run fails, `sync` removes it. The keys of everything seen (ids, DNs, logins, member
//! references) are kept for the nested-group expansion that follows; nothing else is.

use std::collections::HashMap;

use diesel::prelude::*;
use sha2::Digest;

use crate::clock::Clock;
use crate::db::schema::{entitlement_versions, identity_versions, membership_versions, sync_runs};
use crate::db::time::to_db;
use crate::db::{DbConnection, relax_commit_durability, write_tx};
use crate::directory::content_hash::{PersonFacts, content_hasher, person_content_sha256};
use crate::directory::effective::{DirectoryGraph, GroupKey, MemberRef, PersonKey};
use crate::directory::snapshot::SyncDiff;
use crate::directory::sync::{Quiet, SyncObserver};
use crate::error::{Error, Result};
use crate::sources::{GroupRecord, PersonRecord, RecordSink, SourceRecord, normalize_dn};

/// Rows per multi-row statement; small enough for SQLite's bind-parameter limit.
const ROWS_PER_STATEMENT: usize = 500;
/// Membership rows have 5 columns: larger statements stay under the parameter limit.
const MEMBERSHIPS_PER_STATEMENT: usize = 5_000;
/// Buffered changes that trigger a write (one short transaction).
const ROWS_PER_FLUSH: usize = 20_000;

#[derive(Insertable)]
#[diesel(table_name = identity_versions)]
#[diesel(treat_none_as_default_value = false)]
struct NewIdentityVersion {
    source: String,
    external_id: String,
    valid_from: i64,
    content_sha256: String,
    dn: String,
    dn_norm: String,
    login: String,
    display_name: String,
    email: Option<String>,
    title: Option<String>,
    department: Option<String>,
    manager_dn_norm: Option<String>,
    status: String,
    account_kind: String,
    member_of: String,
    gid_number: Option<String>,
    last_login_at: Option<chrono::NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = entitlement_versions)]
#[diesel(treat_none_as_default_value = false)]
struct NewEntitlementVersion {
    source: String,
    external_id: String,
    valid_from: i64,
    content_sha256: String,
    dn: String,
    dn_norm: String,
    name: String,
    kind: String,
    description: Option<String>,
    privileged: bool,
    gid_number: Option<String>,
    direct_members: i64,
    owner_dn_norm: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = membership_versions)]
#[diesel(treat_none_as_default_value = false)]
struct NewMembershipVersion {
    source: String,
    group_external_id: String,
    member_kind: String,
    member_ref: String,
    valid_from: i64,
}

/// The version of one person or group that was current before this sync.
struct Known {
    version_id: i64,
    content_sha256: String,
    /// People only: the last logon stored with the current version.
    last_login_at: Option<chrono::NaiveDateTime>,
    seen: bool,
}

/// What the streaming import found; the graph feeds the nested-group expansion.
pub(crate) struct Imported {
    pub graph: DirectoryGraph,
    pub diff: SyncDiff,
    /// (identity version, last logon) changed on unchanged people, applied when the run
    /// becomes current.
    pub logons: Vec<(i64, Option<chrono::NaiveDateTime>)>,
    /// Direct member references across all groups (resolved or not).
    pub member_references: u64,
}

/// Receives a source's records and writes the changes of run `run` of `source`.
pub(crate) struct DirectoryImport<'c> {
    conn: &'c mut DbConnection,
    clock: &'c dyn Clock,
    observer: &'c dyn SyncObserver,
    source: String,
    sync_run_id: String,
    run: i64,
    privileged: Vec<String>,
    people: HashMap<String, Known>,
    groups: HashMap<String, Known>,
    graph: DirectoryGraph,
    diff: SyncDiff,
    member_references: u64,
    new_identities: Vec<NewIdentityVersion>,
    new_entitlements: Vec<NewEntitlementVersion>,
    new_memberships: Vec<NewMembershipVersion>,
    closed_identities: Vec<i64>,
    closed_entitlements: Vec<i64>,
    closed_memberships: Vec<i64>,
    /// (identity version, last logon) to update when the run becomes current.
    logons: Vec<(i64, Option<chrono::NaiveDateTime>)>,
    /// When the run last showed it is alive.
    last_heartbeat: std::time::Instant,
}

impl<'c> DirectoryImport<'c> {
    /// Loads the versions current before run `run` (ids and hashes only).
    pub fn start(
        conn: &'c mut DbConnection,
        clock: &'c dyn Clock,
        source: &str,
        sync_run_id: &str,
        run: i64,
        privileged_groups: &[String],
    ) -> Result<DirectoryImport<'c>> {
        let people = identity_versions::table
            .filter(identity_versions::source.eq(source))
            .filter(identity_versions::valid_to.is_null())
            .select((
                identity_versions::external_id,
                identity_versions::id,
                identity_versions::content_sha256,
                identity_versions::last_login_at,
            ))
            .load::<(String, i64, String, Option<chrono::NaiveDateTime>)>(conn)?;
        let groups = entitlement_versions::table
            .filter(entitlement_versions::source.eq(source))
            .filter(entitlement_versions::valid_to.is_null())
            .select((
                entitlement_versions::external_id,
                entitlement_versions::id,
                entitlement_versions::content_sha256,
                diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamp>>(
                    "NULL",
                ),
            ))
            .load::<(String, i64, String, Option<chrono::NaiveDateTime>)>(conn)?;
        let known = |rows: Vec<(String, i64, String, Option<chrono::NaiveDateTime>)>| {
            rows.into_iter()
                .map(|(id, version_id, content_sha256, last_login_at)| {
                    let known = Known {
                        version_id,
                        content_sha256,
                        last_login_at,
                        seen: false,
                    };
                    (id, known)
                })
                .collect::<HashMap<_, _>>()
        };
        Ok(DirectoryImport {
            conn,
            clock,
            observer: &Quiet,
            source: source.to_string(),
            sync_run_id: sync_run_id.to_string(),
            run,
            privileged: privileged_groups.iter().map(|p| normalize_dn(p)).collect(),
            people: known(people),
            groups: known(groups),
            graph: DirectoryGraph::default(),
            diff: SyncDiff::default(),
            member_references: 0,
            new_identities: Vec::new(),
            new_entitlements: Vec::new(),
            new_memberships: Vec::new(),
            closed_identities: Vec::new(),
            closed_entitlements: Vec::new(),
            closed_memberships: Vec::new(),
            logons: Vec::new(),
            last_heartbeat: std::time::Instant::now(),
        })
    }

    /// Reports progress to `observer`.
    pub fn observed_by(mut self, observer: &'c dyn SyncObserver) -> Self {
        self.observer = observer;
        self
    }

    fn add_person(&mut self, person: PersonRecord) -> Result<()> {
        let key = PersonKey::of(&person);
        let manager_dn_norm = person.manager_dn.as_deref().map(normalize_dn);
        let status = if person.disabled {
            "disabled"
        } else {
            "active"
        };
        let account_kind = if person.service_account {
            "service"
        } else {
            "person"
        };
        let member_of = serde_json::to_string(&key.member_of)?;
        let sha256 = person_content_sha256(
            &person,
            &PersonFacts {
                manager_dn_norm: manager_dn_norm.as_deref(),
                status,
                account_kind,
                member_of: &member_of,
            },
        );
        let last_login_at = person.last_logon.map(to_db);
        self.graph.people.push(key);
        match self.people.get_mut(&person.external_id) {
            Some(known) if known.seen => return Err(duplicate("person", &person.external_id)),
            Some(known) => {
                known.seen = true;
                if known.content_sha256 == sha256 {
                    // The last logon is an observation, not a new version of the person.
                    if known.last_login_at != last_login_at {
                        self.logons.push((known.version_id, last_login_at));
                        self.diff.logons_updated += 1;
                    }
                    return Ok(());
                }
                self.closed_identities.push(known.version_id);
                self.diff.movers += 1;
            }
            None => {
                self.people.insert(
                    person.external_id.clone(),
                    Known {
                        version_id: 0,
                        content_sha256: sha256.clone(),
                        last_login_at,
                        seen: true,
                    },
                );
                self.diff.joiners += 1;
            }
        }
        self.new_identities.push(NewIdentityVersion {
            source: self.source.clone(),
            external_id: person.external_id,
            valid_from: self.run,
            content_sha256: sha256,
            dn_norm: normalize_dn(&person.dn),
            dn: person.dn,
            login: person.login,
            display_name: person.display_name,
            email: person.email,
            title: person.title,
            department: person.department,
            manager_dn_norm,
            status: status.to_string(),
            account_kind: account_kind.to_string(),
            member_of,
            gid_number: person.gid_number,
            last_login_at,
        });
        Ok(())
    }

    fn add_group(&mut self, group: GroupRecord) -> Result<()> {
        let dn_norm = normalize_dn(&group.dn);
        let privileged = self
            .privileged
            .iter()
            .any(|p| *p == dn_norm || *p == group.name.to_lowercase())
            || group.privileged;
        // A member written twice (two spellings of one DN) is one membership.
        let key = GroupKey::of(&group);
        let members = &key.members;
        self.member_references += members.len() as u64;
        let mut hasher = content_hasher(&[
            Some(&group.dn),
            Some(&group.name),
            group.description.as_deref(),
            Some(if privileged { "privileged" } else { "" }),
            group.gid_number.as_deref(),
        ]);
        for member in members {
            // The field `kind:value`, written in parts (this runs for every member).
            let (kind, value) = (member.kind(), member.value());
            hasher.update([1u8]);
            hasher.update(((kind.len() + 1 + value.len()) as u64).to_be_bytes());
            hasher.update(kind.as_bytes());
            hasher.update(b":");
            hasher.update(value.as_bytes());
        }
        // Only a group with an owner hashes one (groups without keep their earlier hash).
        let owner_dn_norm = group.owner_dn.as_deref().map(normalize_dn);
        if let Some(owner) = &owner_dn_norm {
            hasher.update([2u8]);
            hasher.update((owner.len() as u64).to_be_bytes());
            hasher.update(owner.as_bytes());
        }
        let sha256 = hex::encode(hasher.finalize());
        let previous = match self.groups.get_mut(&group.external_id) {
            Some(known) if known.seen => return Err(duplicate("group", &group.external_id)),
            Some(known) => {
                known.seen = true;
                if known.content_sha256 == sha256 {
                    self.graph.groups.push(key);
                    return Ok(());
                }
                self.closed_entitlements.push(known.version_id);
                self.diff.groups_changed += 1;
                true
            }
            None => {
                self.groups.insert(
                    group.external_id.clone(),
                    Known {
                        version_id: 0,
                        content_sha256: sha256.clone(),
                        last_login_at: None,
                        seen: true,
                    },
                );
                self.diff.groups_added += 1;
                false
            }
        };
        self.diff_memberships(&group.external_id, &key.members, previous)?;
        self.new_entitlements.push(NewEntitlementVersion {
            source: self.source.clone(),
            external_id: group.external_id,
            valid_from: self.run,
            content_sha256: sha256,
            dn: group.dn,
            dn_norm,
            name: group.name,
            kind: "group".to_string(),
            description: group.description,
            privileged,
            gid_number: group.gid_number,
            direct_members: key.members.len() as i64,
            owner_dn_norm,
        });
        self.graph.groups.push(key);
        self.flush_if_full()
    }

    /// Records the difference between a group's direct members now and before this run.
    fn diff_memberships(
        &mut self,
        group_external_id: &str,
        members: &[MemberRef],
        existed: bool,
    ) -> Result<()> {
        let mut before: HashMap<MemberRef, i64> = HashMap::new();
        if existed {
            let rows: Vec<(i64, String, String)> = membership_versions::table
                .filter(membership_versions::source.eq(&self.source))
                .filter(membership_versions::group_external_id.eq(group_external_id))
                .filter(membership_versions::valid_to.is_null())
                .select((
                    membership_versions::id,
                    membership_versions::member_kind,
                    membership_versions::member_ref,
                ))
                .load(self.conn)?;
            before = rows
                .into_iter()
                .map(|(id, kind, value)| (MemberRef::from_parts(&kind, value), id))
                .collect();
        }
        for member in members {
            if before.remove(member).is_none() {
                self.diff.memberships_added += 1;
                self.new_memberships.push(NewMembershipVersion {
                    source: self.source.clone(),
                    group_external_id: group_external_id.to_string(),
                    member_kind: member.kind().to_string(),
                    member_ref: member.value().to_string(),
                    valid_from: self.run,
                });
            }
        }
        self.diff.memberships_removed += before.len() as u64;
        self.closed_memberships.extend(before.into_values());
        Ok(())
    }

    fn pending_rows(&self) -> usize {
        self.new_identities.len()
            + self.new_entitlements.len()
            + self.new_memberships.len()
            + self.closed_identities.len()
            + self.closed_entitlements.len()
            + self.closed_memberships.len()
    }

    fn flush_if_full(&mut self) -> Result<()> {
        if self.pending_rows() >= ROWS_PER_FLUSH {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffered changes in one short transaction, and shows the run is alive.
    fn flush(&mut self) -> Result<()> {
        let identities = std::mem::take(&mut self.new_identities);
        let entitlements = std::mem::take(&mut self.new_entitlements);
        let memberships = std::mem::take(&mut self.new_memberships);
        let closed_identities = std::mem::take(&mut self.closed_identities);
        let closed_entitlements = std::mem::take(&mut self.closed_entitlements);
        let closed_memberships = std::mem::take(&mut self.closed_memberships);
        self.last_heartbeat = std::time::Instant::now();
        let (run, now) = (self.run, to_db(self.clock.now()));
        let sync_run_id = self.sync_run_id.clone();
        write_tx(self.conn, |conn| {
            relax_commit_durability(conn)?;
            still_running(conn, &sync_run_id, now)?;
            crate::bulk_insert!(
                conn,
                identity_versions::table,
                &identities,
                ROWS_PER_STATEMENT
            )?;
            crate::bulk_insert!(
                conn,
                entitlement_versions::table,
                &entitlements,
                ROWS_PER_STATEMENT
            )?;
            crate::bulk_insert!(
                conn,
                membership_versions::table,
                &memberships,
                MEMBERSHIPS_PER_STATEMENT
            )?;
            for chunk in closed_identities.chunks(ROWS_PER_STATEMENT) {
                diesel::update(
                    identity_versions::table.filter(identity_versions::id.eq_any(chunk)),
                )
                .set(identity_versions::valid_to.eq(Some(run)))
                .execute(conn)?;
            }
            for chunk in closed_entitlements.chunks(ROWS_PER_STATEMENT) {
                diesel::update(
                    entitlement_versions::table.filter(entitlement_versions::id.eq_any(chunk)),
                )
                .set(entitlement_versions::valid_to.eq(Some(run)))
                .execute(conn)?;
            }
            for chunk in closed_memberships.chunks(ROWS_PER_STATEMENT) {
                diesel::update(
                    membership_versions::table.filter(membership_versions::id.eq_any(chunk)),
                )
                .set(membership_versions::valid_to.eq(Some(run)))
                .execute(conn)?;
            }
            Ok(())
        })
    }

    /// After the last record: closes what the directory no longer has (people, groups and
    /// their memberships) and writes everything still buffered.
    pub fn finish(mut self) -> Result<Imported> {
        let leavers: Vec<i64> = self
            .people
            .values()
            .filter(|k| !k.seen)
            .map(|k| k.version_id)
            .collect();
        self.diff.leavers = leavers.len() as u64;
        self.closed_identities.extend(leavers);
        let removed: Vec<(String, i64)> = self
            .groups
            .iter()
            .filter(|(_, k)| !k.seen)
            .map(|(id, k)| (id.clone(), k.version_id))
            .collect();
        self.diff.groups_removed = removed.len() as u64;
        for (external_id, version_id) in removed {
            self.closed_entitlements.push(version_id);
            self.diff_memberships(&external_id, &[], true)?;
            self.flush_if_full()?;
        }
        self.flush()?;
        Ok(Imported {
            graph: self.graph,
            diff: self.diff,
            logons: self.logons,
            member_references: self.member_references,
        })
    }
}

impl RecordSink for DirectoryImport<'_> {
    fn accept(&mut self, record: SourceRecord) -> Result<()> {
        match record {
            SourceRecord::Person(person) => self.add_person(person)?,
            SourceRecord::Group(group) => self.add_group(group)?,
        }
        let (people, groups) = (self.graph.people.len(), self.graph.groups.len());
        if (people + groups) % 100 == 0 {
            self.observer.read(people as u64, groups as u64);
        }
        // A long read that changes little still shows, now and then, that it is alive.
        if self.last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            let (sync_run_id, now) = (self.sync_run_id.clone(), to_db(self.clock.now()));
            write_tx(self.conn, |conn| still_running(conn, &sync_run_id, now))?;
            self.last_heartbeat = std::time::Instant::now();
        }
        self.flush_if_full()
    }
}

/// How often a run that writes little shows it is alive.
const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Inside a write transaction: marks the run alive, or fails if it was ended meanwhile (swept
/// as abandoned by another process), so that nothing more is written for it.
pub(crate) fn still_running(
    conn: &mut DbConnection,
    sync_run_id: &str,
    now: chrono::NaiveDateTime,
) -> Result<()> {
    let alive = diesel::update(
        sync_runs::table
            .find(sync_run_id)
            .filter(sync_runs::status.eq(crate::directory::snapshot::STATUS_RUNNING)),
    )
    .set(sync_runs::heartbeat_at.eq(Some(now)))
    .execute(conn)?;
    if alive == 0 {
        return Err(Error::Conflict(
            "this sync run was ended by another process (it looked abandoned); it stops".into(),
        ));
    }
    Ok(())
}

fn duplicate(what: &str, external_id: &str) -> Error {
    Error::source(
        "directory",
        format!(
            "two {what} entries share the id `{external_id}`; ids must be unique (check the \
             id attribute), so the sync is aborted"
        ),
    )
}
