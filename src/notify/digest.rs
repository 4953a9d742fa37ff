//! What a digest mail says: the reviewer's undecided accesses, each with the context that
//! helps decide (the group's description, privileged, direct or through which group, first
//! seen) and its approve and revoke links. A queue too long to read in a mail is summarised
//! instead: counts per group, and the privileged accesses listed.

use serde::Serialize;

use crate::campaigns::item_context::item_context;
use crate::campaigns::model::{Campaign, ITEM_PENDING, ReviewItem, Reviewer};
use crate::db::DbConnection;
use crate::db::time::from_db;
use crate::error::Result;
use crate::notify::templates::single_line;

/// A digest lists each access up to this many; beyond, it summarises.
pub const DIGEST_LIST_LIMIT: usize = 50;
/// A summarised digest still lists this many privileged accesses.
const PRIVILEGED_LIST_LIMIT: usize = 50;

#[derive(Serialize)]
pub struct DigestItem {
    person_name: String,
    person_login: String,
    group_name: String,
    description: Option<String>,
    privileged: bool,
    via: Option<String>,
    first_seen: String,
    /// The same as `first_seen`, for templates written before it was named so.
    since: String,
    approve_url: String,
    revoke_url: String,
}

#[derive(Serialize)]
pub struct GroupCount {
    name: String,
    privileged: bool,
    count: usize,
}

#[derive(Serialize)]
pub struct DigestContext {
    reviewer_name: String,
    campaign_title: String,
    due_date: String,
    review_url: String,
    item_count: usize,
    /// Every undecided access is listed in `items`; otherwise `groups` and
    /// `privileged_items` summarise them.
    listed: bool,
    items: Vec<DigestItem>,
    groups: Vec<GroupCount>,
    privileged_items: Vec<DigestItem>,
    /// Privileged accesses beyond those listed.
    more_privileged: usize,
}

/// Who a digest is for and what it is about.
pub struct DigestHeader<'a> {
    pub reviewer_name: &'a str,
    pub campaign_title: &'a str,
    pub due_date: String,
    pub review_url: &'a str,
}

/// The digest of `reviewer`'s undecided `items` in `campaign`, linking to `review_url`.
pub(crate) fn digest_context(
    conn: &mut DbConnection,
    campaign: &Campaign,
    reviewer: &Reviewer,
    items: Vec<ReviewItem>,
    review_url: &str,
) -> Result<DigestContext> {
    let pending: Vec<ReviewItem> = items
        .into_iter()
        .filter(|i| i.state == ITEM_PENDING)
        .collect();
    // Descriptions only for what the digest lists.
    let listed: Vec<ReviewItem> = if pending.len() <= DIGEST_LIST_LIMIT {
        pending.clone()
    } else {
        pending
            .iter()
            .filter(|i| i.privileged)
            .take(PRIVILEGED_LIST_LIMIT)
            .cloned()
            .collect()
    };
    let context = item_context(conn, campaign, &listed)?;
    let header = DigestHeader {
        reviewer_name: &reviewer.display_name,
        campaign_title: &campaign.title,
        due_date: from_db(campaign.due_at).format("%Y-%m-%d").to_string(),
        review_url,
    };
    Ok(assemble_digest(&header, pending, |group| {
        context.descriptions.get(group).cloned()
    }))
}

/// The digest of the undecided `pending` items: each listed, or summarised when there are
/// more than [`DIGEST_LIST_LIMIT`]. `describe` gives a group's description by its id.
pub fn assemble_digest(
    header: &DigestHeader<'_>,
    mut pending: Vec<ReviewItem>,
    describe: impl Fn(&str) -> Option<String>,
) -> DigestContext {
    let review_url = header.review_url;
    let item_count = pending.len();
    let listed = item_count <= DIGEST_LIST_LIMIT;
    let mut groups = Vec::new();
    let mut more_privileged = 0;
    if !listed {
        let mut counts: std::collections::BTreeMap<(bool, &str, &str), usize> = Default::default();
        for item in &pending {
            *counts
                .entry((
                    !item.privileged,
                    &item.entitlement_name,
                    &item.entitlement_external_id,
                ))
                .or_default() += 1;
        }
        groups = counts
            .into_iter()
            .map(|((unprivileged, name, _), count)| GroupCount {
                name: single_line(name),
                privileged: !unprivileged,
                count,
            })
            .collect();
        pending.retain(|i| i.privileged);
        more_privileged = pending.len().saturating_sub(PRIVILEGED_LIST_LIMIT);
        pending.truncate(PRIVILEGED_LIST_LIMIT);
    }
    let digest_items: Vec<DigestItem> = pending
        .iter()
        .map(|i| DigestItem {
            person_name: single_line(&i.identity_name),
            person_login: single_line(&i.identity_login),
            group_name: single_line(&i.entitlement_name),
            description: describe(&i.entitlement_external_id).map(|d| single_line(&d)),
            privileged: i.privileged,
            via: i.via.as_deref().map(single_line),
            first_seen: from_db(i.granted_since).format("%Y-%m-%d").to_string(),
            since: from_db(i.granted_since).format("%Y-%m-%d").to_string(),
            approve_url: format!("{review_url}?item={}&intent=approve#item-{}", i.id, i.id),
            revoke_url: format!("{review_url}?item={}&intent=revoke#item-{}", i.id, i.id),
        })
        .collect();
    let (items, privileged_items) = if listed {
        (digest_items, Vec::new())
    } else {
        (Vec::new(), digest_items)
    };
    DigestContext {
        reviewer_name: single_line(header.reviewer_name),
        campaign_title: single_line(header.campaign_title),
        due_date: header.due_date.clone(),
        review_url: review_url.to_string(),
        item_count,
        listed,
        items,
        groups,
        privileged_items,
        more_privileged,
    }
}
