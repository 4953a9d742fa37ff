//! What a task removes, worked out from the source's latest snapshot: the person as the
//! directory names them, whether the access still exists, and the group that actually holds
//! the membership. Access to `all-staff` that comes through `sre` (via "sre") is removed from
//! `sre`: removing the person from `all-staff` would change nothing.

use diesel::prelude::*;
use serde::Serialize;

use crate::as_of;
use crate::campaigns::model::{ITEM_APPROVED, ITEM_NO_RESPONSE, ITEM_REVOKED};
use crate::db::DbConnection;
use crate::db::schema::{
    campaigns, entitlement_versions, grant_versions, identity_versions, review_items,
};
use crate::directory::effective::VIA_SEPARATOR;
use crate::directory::snapshot::current_sync_run;
use crate::error::{Error, Result};

/// The review item a task comes from, as frozen in its campaign.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = review_items)]
pub struct FrozenItem {
    pub id: String,
    pub campaign_id: String,
    pub state: String,
    pub no_response_outcome: Option<String>,
    pub identity_external_id: String,
    pub identity_login: String,
    pub identity_email: Option<String>,
    pub entitlement_external_id: String,
    pub entitlement_name: String,
    pub entitlement_dn: String,
    pub via: Option<String>,
}

/// A person as the latest snapshot has them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Person {
    pub external_id: String,
    pub dn: String,
    pub login: String,
    pub gid_number: Option<String>,
}

/// A group as the latest snapshot has it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Group {
    pub external_id: String,
    pub dn: String,
    pub dn_norm: String,
    pub name: String,
    pub gid_number: Option<String>,
}

/// What removing the access means now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The latest snapshot no longer shows the access (or the person): nothing to remove.
    AlreadyAbsent { why: &'static str },
    /// Remove the person from the group that holds the membership.
    Remove(Box<Removal>),
}

/// Remove `person` from `holder`; `reviewed` is the group the access was reviewed on (the
/// same group for direct access).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub person: Person,
    pub holder: Group,
    pub reviewed: Group,
    pub via: Option<String>,
}

pub fn frozen_item(conn: &mut DbConnection, item_id: &str) -> Result<FrozenItem> {
    review_items::table
        .find(item_id)
        .select(FrozenItem::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| Error::NotFound(format!("review item {item_id} not found")))
}

/// Why `item`'s access must no longer be removed, if it must not: its decision changed
/// since the task was made, or a later review of the same source approved the same access.
pub fn no_longer_revoked(conn: &mut DbConnection, item: &FrozenItem) -> Result<Option<String>> {
    let revoked = item.state == ITEM_REVOKED
        || (item.state == ITEM_NO_RESPONSE
            && item.no_response_outcome.as_deref() == Some("revoke"));
    if !revoked {
        return Ok(Some(format!(
            "the item is {} now: its decision changed before the revocation was carried out",
            item.state
        )));
    }
    let (source, opened_at): (String, chrono::NaiveDateTime) = campaigns::table
        .find(&item.campaign_id)
        .select((campaigns::source, campaigns::opened_at))
        .first(conn)?;
    let approved_later: Option<String> = review_items::table
        .inner_join(campaigns::table)
        .filter(campaigns::source.eq(&source))
        .filter(campaigns::opened_at.gt(opened_at))
        .filter(review_items::identity_external_id.eq(&item.identity_external_id))
        .filter(review_items::entitlement_external_id.eq(&item.entitlement_external_id))
        .filter(review_items::state.eq(ITEM_APPROVED))
        .select(campaigns::id)
        .first(conn)
        .optional()?;
    Ok(approved_later
        .map(|campaign| format!("a later review (campaign {campaign}) approved this access")))
}

/// What removing `item`'s access from `source` means according to its latest snapshot.
pub fn resolve(conn: &mut DbConnection, source: &str, item: &FrozenItem) -> Result<Target> {
    let Some(run) = current_sync_run(conn, source)? else {
        return Err(Error::Conflict(format!(
            "source {source} has no successful sync: nothing to act on"
        )));
    };
    let person: Option<(String, String, Option<String>)> = identity_versions::table
        .filter(identity_versions::source.eq(source))
        .filter(identity_versions::external_id.eq(&item.identity_external_id))
        .filter(as_of!(identity_versions, run.seq))
        .select((
            identity_versions::dn,
            identity_versions::login,
            identity_versions::gid_number,
        ))
        .first(conn)
        .optional()?;
    let Some((dn, login, gid_number)) = person else {
        return Ok(Target::AlreadyAbsent {
            why: "the person is no longer in the directory",
        });
    };
    let grant: Option<Option<String>> = grant_versions::table
        .filter(grant_versions::source.eq(source))
        .filter(grant_versions::identity_external_id.eq(&item.identity_external_id))
        .filter(grant_versions::entitlement_external_id.eq(&item.entitlement_external_id))
        .filter(as_of!(grant_versions, run.seq))
        .select(grant_versions::via)
        .first(conn)
        .optional()?;
    let Some(via) = grant else {
        return Ok(Target::AlreadyAbsent {
            why: "the latest sync no longer shows this access",
        });
    };
    let Some(reviewed) = group_by_id(conn, source, run.seq, &item.entitlement_external_id)? else {
        return Ok(Target::AlreadyAbsent {
            why: "the group is no longer in the directory",
        });
    };
    // The chain runs from the reviewed group down to the person: its last group holds them.
    let holder = match via.as_deref().and_then(|v| v.rsplit(VIA_SEPARATOR).next()) {
        None => reviewed.clone(),
        Some(name) => group_by_name(conn, source, run.seq, name)?.ok_or_else(|| {
            Error::Conflict(format!(
                "the group `{name}` that holds this access is not in the latest sync"
            ))
        })?,
    };
    Ok(Target::Remove(Box::new(Removal {
        person: Person {
            external_id: item.identity_external_id.clone(),
            dn,
            login,
            gid_number,
        },
        holder,
        reviewed,
        via,
    })))
}

type GroupRow = (String, String, String, String, Option<String>);

fn group_of(row: GroupRow) -> Group {
    let (external_id, dn, dn_norm, name, gid_number) = row;
    Group {
        external_id,
        dn,
        dn_norm,
        name,
        gid_number,
    }
}

fn group_by_id(
    conn: &mut DbConnection,
    source: &str,
    run: i64,
    external_id: &str,
) -> Result<Option<Group>> {
    let row: Option<GroupRow> = entitlement_versions::table
        .filter(entitlement_versions::source.eq(source))
        .filter(entitlement_versions::external_id.eq(external_id))
        .filter(as_of!(entitlement_versions, run))
        .select(group_columns())
        .first(conn)
        .optional()?;
    Ok(row.map(group_of))
}

fn group_by_name(
    conn: &mut DbConnection,
    source: &str,
    run: i64,
    name: &str,
) -> Result<Option<Group>> {
    let rows: Vec<GroupRow> = entitlement_versions::table
        .filter(entitlement_versions::source.eq(source))
        .filter(entitlement_versions::name.eq(name))
        .filter(as_of!(entitlement_versions, run))
        .select(group_columns())
        .limit(2)
        .load(conn)?;
    if rows.len() > 1 {
        return Err(Error::Conflict(format!(
            "several groups are named `{name}`: remove this access by hand"
        )));
    }
    Ok(rows.into_iter().next().map(group_of))
}

#[allow(clippy::type_complexity)]
fn group_columns() -> (
    entitlement_versions::external_id,
    entitlement_versions::dn,
    entitlement_versions::dn_norm,
    entitlement_versions::name,
    entitlement_versions::gid_number,
) {
    (
        entitlement_versions::external_id,
        entitlement_versions::dn,
        entitlement_versions::dn_norm,
        entitlement_versions::name,
        entitlement_versions::gid_number,
    )
}
