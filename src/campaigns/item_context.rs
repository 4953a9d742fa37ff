//! What a reviewer sees next to each access beside the frozen item, read for a whole page of
//! items in a few queries (never one per item): the person's title, department and last
//! logon and the group's description from the campaign's snapshot, each item's decision
//! history, and when this definition's previous review opened (to tell which accesses were
//! granted since).

use std::collections::{HashMap, HashSet};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::campaigns::model::{Campaign, ReviewItem};
use crate::db::DbConnection;
use crate::db::schema::{campaigns, decisions, entitlement_versions, identity_versions, reviewers};
use crate::directory::snapshot::sync_run;
use crate::error::Result;

/// Ids per `IN (...)` list: well under SQLite's and PostgreSQL's parameter limits.
const IDS_PER_QUERY: usize = 500;

/// A person as the campaign's snapshot describes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonContext {
    pub title: Option<String>,
    pub department: Option<String>,
    /// Where the source reports it (Active Directory, OpenLDAP's ppolicy).
    pub last_logon: Option<NaiveDateTime>,
}

/// (directory id, title, department, last logon) of a person.
type PersonRow = (
    String,
    Option<String>,
    Option<String>,
    Option<NaiveDateTime>,
);

/// One decision in an item's history.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct PastDecision {
    pub id: String,
    pub item_id: String,
    pub outcome: String,
    pub comment: Option<String>,
    pub decided_at: NaiveDateTime,
    pub approved_until: Option<NaiveDateTime>,
    pub reviewer_name: String,
}

#[derive(Debug, Default)]
pub struct ItemContext {
    /// By the person's directory id.
    pub people: HashMap<String, PersonContext>,
    /// Group descriptions by the group's directory id.
    pub descriptions: HashMap<String, String>,
    /// By item id, oldest first.
    pub history: HashMap<String, Vec<PastDecision>>,
    /// When the previous campaign of the same definition opened, if there was one.
    pub previous_review_opened_at: Option<NaiveDateTime>,
}

/// The context of `items`, all of `campaign`.
pub fn item_context(
    conn: &mut DbConnection,
    campaign: &Campaign,
    items: &[ReviewItem],
) -> Result<ItemContext> {
    let run = sync_run(conn, &campaign.sync_run_id)?.seq;
    let people: Vec<&str> = distinct(items.iter().map(|i| i.identity_external_id.as_str()));
    let groups: Vec<&str> = distinct(items.iter().map(|i| i.entitlement_external_id.as_str()));
    let mut context = ItemContext::default();
    for chunk in people.chunks(IDS_PER_QUERY) {
        let rows: Vec<PersonRow> = identity_versions::table
            .filter(identity_versions::source.eq(&campaign.source))
            .filter(identity_versions::external_id.eq_any(chunk))
            .filter(crate::as_of!(identity_versions, run))
            .select((
                identity_versions::external_id,
                identity_versions::title,
                identity_versions::department,
                identity_versions::last_login_at,
            ))
            .load(conn)?;
        for (id, title, department, last_logon) in rows {
            context.people.insert(
                id,
                PersonContext {
                    title,
                    department,
                    last_logon,
                },
            );
        }
    }
    for chunk in groups.chunks(IDS_PER_QUERY) {
        let rows: Vec<(String, Option<String>)> = entitlement_versions::table
            .filter(entitlement_versions::source.eq(&campaign.source))
            .filter(entitlement_versions::external_id.eq_any(chunk))
            .filter(crate::as_of!(entitlement_versions, run))
            .select((
                entitlement_versions::external_id,
                entitlement_versions::description,
            ))
            .load(conn)?;
        context.descriptions.extend(
            rows.into_iter()
                .filter_map(|(id, description)| Some((id, description?)))
                .filter(|(_, description)| !description.trim().is_empty()),
        );
    }
    let item_ids: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    for chunk in item_ids.chunks(IDS_PER_QUERY) {
        let rows: Vec<PastDecision> = decisions::table
            .inner_join(reviewers::table.on(reviewers::id.eq(decisions::reviewer_id)))
            .filter(decisions::item_id.eq_any(chunk))
            .order((decisions::decided_at.asc(), decisions::id.asc()))
            .select((
                decisions::id,
                decisions::item_id,
                decisions::outcome,
                decisions::comment,
                decisions::decided_at,
                decisions::approved_until,
                reviewers::display_name,
            ))
            .load(conn)?;
        for row in rows {
            context
                .history
                .entry(row.item_id.clone())
                .or_default()
                .push(row);
        }
    }
    context.previous_review_opened_at = campaigns::table
        .filter(campaigns::definition.eq(&campaign.definition))
        .filter(campaigns::opened_at.lt(campaign.opened_at))
        .select(diesel::dsl::max(campaigns::opened_at))
        .first(conn)?;
    Ok(context)
}

fn distinct<'a>(ids: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    ids.filter(|id| seen.insert(*id)).collect()
}
