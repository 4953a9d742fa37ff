//! Freezing a campaign's items: the accesses in scope, read page by page by their id, each
//! routed to its reviewer and written with the person and group as the snapshot has them.
//! Each page is one short write transaction (a few thousand rows), so that decisions on
//! other campaigns keep being answered on SQLite while a large campaign generates; each
//! first checks that the campaign is still this generation's.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;

use crate::campaigns::generate::insert_reviewers;
use crate::campaigns::model::{ITEM_PENDING, STATE_GENERATING};
use crate::campaigns::population::{Holders, Population, access_page};
use crate::campaigns::routing::RoutingPlan;
use crate::db::schema::{campaigns, review_items};
use crate::db::{DbConnection, new_id, write_tx};
use crate::error::{Error, Result};

/// Rows per INSERT statement (18 columns: well under SQLite's bind-parameter limit).
const ROWS_PER_INSERT: usize = 500;

/// `None` is written as NULL (not DEFAULT), which lets SQLite take many rows per INSERT.
#[derive(Insertable)]
#[diesel(table_name = review_items, treat_none_as_default_value = false)]
pub(crate) struct NewReviewItem {
    id: String,
    campaign_id: String,
    reviewer_id: String,
    routing: String,
    identity_external_id: String,
    identity_login: String,
    identity_name: String,
    identity_email: Option<String>,
    identity_status: String,
    entitlement_external_id: String,
    entitlement_name: String,
    entitlement_dn: String,
    privileged: bool,
    via: Option<String>,
    granted_since: chrono::NaiveDateTime,
    state: String,
}

/// What items are frozen from.
pub(crate) struct FrozenSnapshot<'a> {
    pub(crate) source: &'a str,
    pub(crate) seq: i64,
    pub(crate) population: &'a Population,
    pub(crate) holders: &'a Holders,
    pub(crate) plan: &'a RoutingPlan,
}

/// What freezing wrote.
pub(crate) struct Frozen {
    pub(crate) items: i64,
    /// Every reviewer's id, sorted.
    pub(crate) reviewer_ids: Vec<String>,
}

pub(crate) fn freeze_items(
    conn: &mut DbConnection,
    campaign_id: &str,
    snapshot: &FrozenSnapshot<'_>,
) -> Result<Frozen> {
    let no_holders = HashSet::new();
    let mut reviewer_ids: HashMap<String, String> = HashMap::new();
    let mut items_written = 0i64;
    let mut after = 0;
    loop {
        let page = access_page(conn, snapshot.source, snapshot.seq, after)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let mut items = Vec::with_capacity(page.len());
        let mut new_reviewers = Vec::new();
        for access in page {
            let (Some(group), Some(person)) = (
                snapshot.population.groups.get(&access.group),
                snapshot.population.people.get(&access.person),
            ) else {
                continue;
            };
            if !person.in_scope || !snapshot.population.reviews(&access) {
                continue;
            }
            let group_holders = match group.privileged {
                true => snapshot
                    .holders
                    .of_privileged
                    .get(&access.group)
                    .unwrap_or(&no_holders),
                false => &no_holders,
            };
            let (reviewer, routing) =
                snapshot
                    .plan
                    .reviewer_for(&access.person, &group.owner, group_holders)?;
            let key = reviewer.email.to_lowercase();
            let reviewer_id = match reviewer_ids.get(&key) {
                Some(id) => id.clone(),
                None => {
                    let id = new_id();
                    reviewer_ids.insert(key, id.clone());
                    new_reviewers.push((id.clone(), reviewer.clone()));
                    id
                }
            };
            items.push(NewReviewItem {
                id: new_id(),
                campaign_id: campaign_id.to_string(),
                reviewer_id,
                routing: routing.as_str().to_string(),
                identity_external_id: access.person,
                identity_login: person.login.clone(),
                identity_name: person.name.clone(),
                identity_email: person.email.clone(),
                identity_status: person.status.clone(),
                entitlement_external_id: access.group,
                entitlement_name: group.name.clone(),
                entitlement_dn: group.dn.clone(),
                privileged: group.privileged,
                via: access.via,
                granted_since: access.first_seen_at,
                state: ITEM_PENDING.to_string(),
            });
        }
        if items.is_empty() {
            continue;
        }
        write_tx(conn, |conn| {
            let ours = campaigns::table
                .find(campaign_id)
                .filter(campaigns::state.eq(STATE_GENERATING))
                .count()
                .get_result::<i64>(conn)?;
            if ours != 1 {
                return Err(Error::Conflict(format!(
                    "campaign {campaign_id} was removed while it generated"
                )));
            }
            insert_reviewers(conn, campaign_id, &new_reviewers)?;
            for chunk in items.chunks(ROWS_PER_INSERT) {
                crate::insert_rows!(conn, review_items::table, chunk)?;
            }
            Ok(())
        })?;
        items_written += items.len() as i64;
    }
    let mut ids: Vec<String> = reviewer_ids.into_values().collect();
    ids.sort();
    Ok(Frozen {
        items: items_written,
        reviewer_ids: ids,
    })
}
