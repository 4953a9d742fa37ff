//! One record per review item for the evidence pack (`items.csv`, `items.jsonl`): the whole
//! population under review, decided or not, so that an auditor reconciles it against the
//! campaign without asking anyone. Each row says who held what (directly or via which
//! groups), who reviewed it and why them, where it ended (approved, revoked, or nobody
//! answered and what the no-response policy did), and the latest decision with how its
//! maker authenticated; the full history of decisions is `decisions.jsonl`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use chrono::{NaiveDateTime, SubsecRound};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::campaigns::model::{Campaign, ReviewItem};
use crate::db::DbConnection;
use crate::db::schema::{decisions, review_items};
use crate::db::stored_time::StoredTime;
use crate::db::time::{from_db, rfc3339};
use crate::decisions::DecisionOutcome;
use crate::error::{Error, Result};
use crate::evidence::exceptions::{EXCEPTIONS_CSV_HEADER, exception_rows_decided_at, kind_of};
use crate::evidence::group_runs::GroupCounts;
use crate::evidence::row_pipeline::{PageSender, read_and_format};
use crate::evidence::spreadsheet::safe_cell;
use crate::evidence::tally::{ItemTally, Reviewers};

/// Items read per query.
const PAGE: i64 = 1_000;

/// One review item as the pack shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ItemRecord {
    pub item_id: String,
    pub person_id: String,
    pub person_login: String,
    pub person_name: String,
    pub person_email: Option<String>,
    pub person_status: String,
    pub group_id: String,
    pub group_name: String,
    pub group_dn: String,
    pub privileged: bool,
    /// The chain of groups the access comes through; none for a direct member.
    pub via: Option<String>,
    /// When attest first saw the access (not necessarily when it was granted).
    pub first_seen_at: String,
    pub reviewer_email: String,
    pub reviewer_name: String,
    /// Why this reviewer (`manager`, `owner`, `fallback`, a reroute or a reassignment).
    pub routing: String,
    pub stage: i64,
    /// `approved`, `revoked`, `pending` (campaign still open) or `no_response`.
    pub outcome: String,
    /// For `no_response`: what the policy did (`flag`, `keep`, `revoke`).
    pub no_response_outcome: Option<String>,
    pub decided_at: Option<String>,
    pub approved_until: Option<String>,
    /// When an approval until a date expired into the revocation.
    pub approval_expired_at: Option<String>,
    pub last_decision_id: Option<String>,
    pub last_comment: Option<String>,
    pub last_auth_method: Option<String>,
}

pub const ITEM_CSV_HEADER: [&str; 24] = [
    "item_id",
    "person_id",
    "person_login",
    "person_name",
    "person_email",
    "person_status",
    "group_id",
    "group_name",
    "group_dn",
    "privileged",
    "via",
    "first_seen_at",
    "reviewer_email",
    "reviewer_name",
    "routing",
    "stage",
    "outcome",
    "no_response_outcome",
    "decided_at",
    "approved_until",
    "approval_expired_at",
    "last_decision_id",
    "last_comment",
    "last_auth_method",
];

impl ItemRecord {
    /// The CSV row, spreadsheet-safe.
    pub fn csv_row(&self) -> Vec<String> {
        self.csv_cells().into_iter().map(Cow::into_owned).collect()
    }

    /// The CSV row's cells, borrowed where they need no change.
    pub fn csv_cells(&self) -> [Cow<'_, str>; 24] {
        fn text(value: &Option<String>) -> Cow<'_, str> {
            safe_cell(value.as_deref().unwrap_or(""))
        }
        [
            safe_cell(&self.item_id),
            safe_cell(&self.person_id),
            safe_cell(&self.person_login),
            safe_cell(&self.person_name),
            text(&self.person_email),
            safe_cell(&self.person_status),
            safe_cell(&self.group_id),
            safe_cell(&self.group_name),
            safe_cell(&self.group_dn),
            Cow::Borrowed(if self.privileged { "true" } else { "false" }),
            text(&self.via),
            safe_cell(&self.first_seen_at),
            safe_cell(&self.reviewer_email),
            safe_cell(&self.reviewer_name),
            safe_cell(&self.routing),
            Cow::Owned(self.stage.to_string()),
            safe_cell(&self.outcome),
            text(&self.no_response_outcome),
            text(&self.decided_at),
            text(&self.approved_until),
            text(&self.approval_expired_at),
            text(&self.last_decision_id),
            text(&self.last_comment),
            text(&self.last_auth_method),
        ]
    }
}

/// One page of a campaign's items, read on the database's thread, with their decisions.
pub struct ItemPage {
    items: Vec<ReviewItem>,
    /// Every decision of the page's items in the history's order: (item id, decision id,
    /// comment, auth method, outcome, decided at).
    decisions: Vec<DecisionOfItem>,
}

type DecisionOfItem = (String, String, Option<String>, String, String, StoredTime);

/// The latest decision of an item, and when it was first approved or revoked.
struct LatestDecision {
    id: String,
    comment: Option<String>,
    auth_method: String,
    first_decided_at: Option<NaiveDateTime>,
}

/// Reads every item of the campaign, by outcome and then id, a page at a time, with the
/// decisions of each page's items, and hands the pages to `pages`.
fn read_item_pages(
    conn: &mut DbConnection,
    campaign_id: &str,
    pages: &PageSender<ItemPage>,
) -> Result<()> {
    // By outcome, then id: the (campaign, state, id) index serves each page in order.
    let mut states: Vec<String> = review_items::table
        .filter(review_items::campaign_id.eq(campaign_id))
        .select(review_items::state)
        .distinct()
        .load(conn)?;
    states.sort();
    let mut after = String::new();
    let mut state_index = 0;
    while let Some(state) = states.get(state_index) {
        let items: Vec<ReviewItem> = review_items::table
            .filter(review_items::campaign_id.eq(campaign_id))
            .filter(review_items::state.eq(state))
            .filter(review_items::id.gt(&after))
            .order(review_items::id.asc())
            .limit(PAGE)
            .select(ReviewItem::as_select())
            .load(conn)?;
        let Some(last) = items.last() else {
            state_index += 1;
            after.clear();
            continue;
        };
        after = last.id.clone();
        let ids: Vec<&String> = items.iter().map(|i| &i.id).collect();
        // Ties by id, as the history orders.
        let decisions: Vec<DecisionOfItem> = decisions::table
            .filter(decisions::item_id.eq_any(&ids))
            .order((decisions::decided_at.asc(), decisions::id.asc()))
            .select((
                decisions::item_id,
                decisions::id,
                decisions::comment,
                decisions::auth_method,
                decisions::outcome,
                decisions::decided_at,
            ))
            .load(conn)?;
        pages.send(ItemPage { items, decisions })?;
    }
    Ok(())
}

/// The record of `item`, reviewed by `reviewer` (email, name), whose latest decision is `last`.
fn record_of(item: ReviewItem, reviewer: (&str, &str), last: Option<LatestDecision>) -> ItemRecord {
    let (last_decision_id, last_comment, last_auth_method) = match last {
        Some(last) => (Some(last.id), last.comment, Some(last.auth_method)),
        None => (None, None, None),
    };
    ItemRecord {
        person_id: item.identity_external_id,
        person_login: item.identity_login,
        person_name: item.identity_name,
        person_email: item.identity_email,
        person_status: item.identity_status,
        group_id: item.entitlement_external_id,
        group_name: item.entitlement_name,
        group_dn: item.entitlement_dn,
        privileged: item.privileged,
        via: item.via,
        first_seen_at: rfc3339(item.granted_since),
        reviewer_email: reviewer.0.to_string(),
        reviewer_name: reviewer.1.to_string(),
        routing: item.routing,
        stage: item.stage,
        outcome: item.state,
        no_response_outcome: item.no_response_outcome,
        decided_at: item.decided_at.map(rfc3339),
        approved_until: item.approved_until.map(rfc3339),
        approval_expired_at: item.expired_at.map(rfc3339),
        last_decision_id,
        last_comment,
        last_auth_method,
        item_id: item.id,
    }
}

/// What writing the item files found: how many items, exceptions of each kind, and the
/// campaign's figures.
pub struct ItemFiles {
    pub items: u64,
    pub exceptions: BTreeMap<String, u64>,
    pub tally: ItemTally,
    pub groups: GroupCounts,
    /// The campaign's reviewers, as the tally numbers them.
    pub reviewers: Reviewers,
}

/// Writes, in one pass over the campaign's items, `items.csv` to `csv_out`, `items.jsonl` to
/// `jsonl_out` and `exceptions.csv` to `exceptions_out`, counting the campaign's figures on
/// the way (per group with temporary files in `scratch` when there are many groups). The
/// database is read on this thread, the rows formatted on another.
pub fn write_item_files(
    conn: &mut DbConnection,
    campaign: &Campaign,
    scratch: &Path,
    csv_out: &mut (impl Write + Send),
    jsonl_out: &mut (impl Write + Send),
    exceptions_out: &mut (impl Write + Send),
) -> Result<ItemFiles> {
    let reviewers = Reviewers::of_campaign(conn, &campaign.id)?;
    let due_at = campaign.due_at;
    read_and_format(
        |pages| read_item_pages(conn, &campaign.id, pages),
        move |pages| {
            let csv_error = |e: csv::Error| Error::Io(format!("cannot write the item files: {e}"));
            let mut items_csv = csv::Writer::from_writer(csv_out);
            items_csv.write_record(ITEM_CSV_HEADER).map_err(csv_error)?;
            let mut exceptions_csv = csv::Writer::from_writer(exceptions_out);
            exceptions_csv
                .write_record(EXCEPTIONS_CSV_HEADER)
                .map_err(csv_error)?;
            let mut files = ItemFiles {
                items: 0,
                exceptions: BTreeMap::new(),
                tally: ItemTally::for_reviewers(reviewers.len()),
                groups: GroupCounts::new(scratch),
                reviewers: Reviewers::default(),
            };
            for page in pages {
                let mut latest: HashMap<String, LatestDecision> = HashMap::new();
                for (item_id, id, comment, auth_method, outcome, at) in page.decisions {
                    let first = (outcome != DecisionOutcome::DontKnow.as_str()).then_some(at.0);
                    match latest.get_mut(&item_id) {
                        // A later decision of the item (the history's order).
                        Some(last) => {
                            last.id = id;
                            last.comment = comment;
                            last.auth_method = auth_method;
                            last.first_decided_at = last.first_decided_at.or(first);
                        }
                        None => {
                            let first_decided_at = first;
                            latest.insert(
                                item_id,
                                LatestDecision {
                                    id,
                                    comment,
                                    auth_method,
                                    first_decided_at,
                                },
                            );
                        }
                    }
                }
                for item in page.items {
                    let last = latest.remove(&item.id);
                    let first_decided_at = last.as_ref().and_then(|l| l.first_decided_at);
                    let (reviewer, person) =
                        reviewers.find(&item.reviewer_id).ok_or_else(|| {
                            Error::Internal(format!("item {} has no reviewer", item.id))
                        })?;
                    files.tally.count(&item, reviewer, first_decided_at, due_at);
                    files.groups.count(&item)?;
                    // As items.csv writes it (microseconds), for the exceptions.
                    let decided_at = item.decided_at.map(|at| from_db(at.trunc_subsecs(6)));
                    let record = record_of(item, person, last);
                    items_csv
                        .write_record(record.csv_cells().iter().map(|c| c.as_bytes()))
                        .map_err(csv_error)?;
                    serde_json::to_writer(&mut *jsonl_out, &record)?;
                    jsonl_out.write_all(b"\n")?;
                    for row in exception_rows_decided_at(&record, decided_at, from_db(due_at)) {
                        *files
                            .exceptions
                            .entry(kind_of(&row).to_string())
                            .or_insert(0) += 1;
                        exceptions_csv.write_record(&row).map_err(csv_error)?;
                    }
                    files.items += 1;
                }
            }
            items_csv.flush()?;
            exceptions_csv.flush()?;
            files.reviewers = reviewers;
            Ok(files)
        },
    )
}
