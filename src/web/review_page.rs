//! `GET /r/{token}`: the reviewer's page. It changes nothing (mail scanners fetch links). It
//! shows the reviewer's accesses grouped by person with what helps decide, a bar that keeps
//! the progress and the last post's result in view, and, for a queue too large for one page,
//! an overview by group whose groups open page by page.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::campaigns::item_context::item_context;
use crate::campaigns::model::{ITEM_PENDING, ReviewItem, items_of_reviewer};
use crate::db::time::from_db;
use crate::decisions::reasons::ReasonRules;
use crate::decisions::record::MAX_APPROVE_UNTIL_DAYS;
use crate::web::AppState;
use crate::web::csrf;
use crate::web::review::{authenticate, error_page, session_cookie};
use crate::web::review_items_view::{Focus, PersonView, TeamShares, people_views};
use crate::web::review_sign_in::{sign_in_path, sso_proof};

/// A queue larger than this opens as an overview by group instead of one long page.
const LARGE_QUEUE_ITEMS: usize = 300;
/// Items per page of one group in a large queue.
const GROUP_PAGE_ITEMS: usize = 200;

#[derive(Debug, Deserialize)]
pub struct ReviewQuery {
    /// From a mail link (with `intent`), or after a failed post: the item to move to.
    item: Option<String>,
    intent: Option<String>,
    /// Why the last post on `item` was not saved: `reason` or `stale`.
    problem: Option<String>,
    /// After a decision: the item it decided.
    saved: Option<String>,
    /// After a bulk decision: how many accesses it decided.
    decided: Option<usize>,
    /// After a delegation: how many accesses moved, and how many could not.
    moved: Option<usize>,
    stuck: Option<usize>,
    /// `pending`, `decided` or all (the default).
    show: Option<String>,
    /// In a large queue: the group (directory id) shown, and the first item of the page.
    group: Option<String>,
    from: Option<usize>,
}

#[derive(Serialize)]
struct CampaignView {
    title: String,
    due: String,
    open: bool,
    closed: Option<String>,
}

/// A choice of the bulk form: whose (or which group's) undecided accesses, and how many.
#[derive(Serialize)]
struct BulkChoice {
    value: String,
    label: String,
    count: usize,
}

/// One group of a large queue's overview.
#[derive(Serialize)]
struct GroupSummary {
    id: String,
    name: String,
    privileged: bool,
    total: usize,
    pending: usize,
}

#[derive(Serialize)]
struct Flash {
    text: String,
    /// `ok` or `warn`.
    kind: &'static str,
}

#[derive(Serialize)]
struct Pager {
    group_name: String,
    first: usize,
    last: usize,
    of: usize,
    previous_from: Option<usize>,
    next_from: Option<usize>,
}

#[derive(Serialize)]
struct ReviewPage {
    campaign: CampaignView,
    reviewer_name: String,
    /// `review.require_sso` and this browser has not signed in as the reviewer: where to.
    sign_in: Option<String>,
    /// A decision was just refused for want of that sign-in.
    sign_in_first: bool,
    people: Vec<PersonView>,
    csrf: String,
    base: String,
    bulk_people: Vec<BulkChoice>,
    bulk_groups: Vec<BulkChoice>,
    /// The range a temporary approval's end date may take.
    until_min: String,
    until_max: String,
    total: usize,
    decided: usize,
    pending: usize,
    flash: Option<Flash>,
    all_done: bool,
    show: &'static str,
    /// A large queue: its groups, shown when no group is chosen.
    overview: Option<Vec<GroupSummary>>,
    /// A large queue's chosen group (its directory id) and the page of it shown.
    group: Option<String>,
    pager: Option<Pager>,
    /// What the bulk form's reason box says about when a reason is required.
    reason_label: &'static str,
    /// The bulk form is shown open (its last post needs a reason).
    bulk_open: bool,
}

pub async fn show(
    state: web::Data<AppState>,
    request: HttpRequest,
    token: web::Path<String>,
    query: web::Query<ReviewQuery>,
) -> HttpResponse {
    let token = token.into_inner();
    let (claims, campaign, reviewer) = match authenticate(&state, &token).await {
        Ok(found) => found,
        Err(e) => return error_page(&state, &e),
    };
    let reviewer_id = reviewer.id.clone();
    let for_context = campaign.clone();
    let mut query = query.into_inner();
    let asked_group = query.group.clone();
    // The item a mail link or a post came back to (in a large queue, its group is shown).
    let target = query.item.clone().or_else(|| query.saved.clone());
    let loaded = state
        .db
        .run(move |conn| {
            let mut items = items_of_reviewer(conn, &reviewer_id)?;
            items.sort_by(|a, b| page_order(a).cmp(&page_order(b)));
            let chosen_group = asked_group.or_else(|| {
                let target = target.as_deref()?;
                (items.len() > LARGE_QUEUE_ITEMS)
                    .then(|| items.iter().find(|i| i.id == target))
                    .flatten()
                    .map(|i| i.entitlement_external_id.clone())
            });
            // A large queue reads the context of the chosen group's items only.
            let shown: Vec<&ReviewItem> = match &chosen_group {
                Some(group) => items
                    .iter()
                    .filter(|i| &i.entitlement_external_id == group)
                    .collect(),
                None if items.len() > LARGE_QUEUE_ITEMS => Vec::new(),
                None => items.iter().collect(),
            };
            let shown: Vec<ReviewItem> = shown.into_iter().cloned().collect();
            let context = item_context(conn, &for_context, &shown)?;
            Ok((items, context, chosen_group))
        })
        .await;
    let (items, context) = match loaded {
        Ok((items, context, chosen_group)) => {
            query.group = chosen_group;
            (items, context)
        }
        Err(e) => return error_page(&state, &e),
    };
    let existing = request
        .cookie(csrf::SESSION_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| csrf::is_well_formed(v));
    let session_id = existing.clone().unwrap_or_else(csrf::new_session_id);
    let csrf_token = csrf::token_for(&state.csrf_key, &session_id, &claims.jti_hash());

    let now = state.clock.now();
    let today = now.date_naive();
    let total = items.len();
    let pending = items.iter().filter(|i| i.state == ITEM_PENDING).count();
    let (bulk_people, bulk_groups) = bulk_choices(&items);
    let team = TeamShares::of(&items);
    let reasons = ReasonRules::configured(&state.config, &campaign.definition);
    let large = total > LARGE_QUEUE_ITEMS;
    let show = match query.show.as_deref() {
        Some("pending") => "pending",
        Some("decided") => "decided",
        _ => "all",
    };
    let flash = flash(&query, &items);
    let overview = (large && query.group.is_none()).then(|| group_summaries(&items));
    let mut shown: Vec<ReviewItem> = items
        .into_iter()
        .filter(|i| {
            query
                .group
                .as_ref()
                .is_none_or(|g| &i.entitlement_external_id == g)
        })
        .filter(|i| match show {
            "pending" => i.state == ITEM_PENDING,
            "decided" => i.state != ITEM_PENDING,
            _ => true,
        })
        .collect();
    if overview.is_some() {
        shown.clear();
    }
    // The page of a large queue's group that holds the target item, unless one was asked.
    let from = query.from.unwrap_or_else(|| {
        let target = query.item.as_deref().or(query.saved.as_deref());
        shown
            .iter()
            .position(|i| Some(i.id.as_str()) == target)
            .map_or(0, |at| at / GROUP_PAGE_ITEMS * GROUP_PAGE_ITEMS)
    });
    let pager = query
        .group
        .as_ref()
        .filter(|_| large && !shown.is_empty())
        .map(|_| page_of(&mut shown, from));
    let focus_item = query
        .item
        .clone()
        .or_else(|| next_pending_after(&shown, query.saved.as_deref()));
    let focus = Focus {
        item: focus_item.as_deref(),
        intent: match query.intent.as_deref() {
            Some("approve") => Some("approve"),
            Some("revoke") => Some("revoke"),
            _ => None,
        },
        problem: problem_text(query.problem.as_deref(), query.intent.as_deref()),
    };
    let page = ReviewPage {
        campaign: CampaignView {
            title: campaign.title.clone(),
            due: from_db(campaign.due_at).format("%Y-%m-%d").to_string(),
            open: campaign.is_open(),
            closed: campaign
                .closed_at
                .map(|t| from_db(t).format("%Y-%m-%d").to_string()),
        },
        sign_in: (state.config.review.require_sso
            && campaign.is_open()
            && sso_proof(&state, &request, &reviewer.id).is_none())
        .then(|| sign_in_path(&token)),
        sign_in_first: query.problem.as_deref() == Some("sign_in"),
        reviewer_name: reviewer.display_name,
        people: people_views(shown, &context, reasons, now, &focus, &team),
        csrf: csrf_token,
        base: format!("/r/{token}"),
        bulk_people,
        bulk_groups,
        until_min: (today + chrono::Duration::days(1)).to_string(),
        until_max: (today + chrono::Duration::days(MAX_APPROVE_UNTIL_DAYS)).to_string(),
        total,
        decided: total - pending,
        pending,
        flash,
        all_done: total > 0 && pending == 0 && campaign.is_open(),
        show,
        overview,
        group: query.group.clone(),
        pager,
        reason_label: reason_label(reasons),
        bulk_open: query.problem.as_deref() == Some("bulk_reason"),
    };
    let mut response = state.pages.render(StatusCode::OK, "review.html", page);
    if existing.is_none()
        && let Err(e) = response.add_cookie(&session_cookie(&state, session_id))
    {
        tracing::error!(error = %e, "cannot set review session cookie");
    }
    response
}

fn reason_label(reasons: ReasonRules) -> &'static str {
    use crate::decisions::DecisionOutcome::{Approve, Revoke};
    match (
        reasons.needs_reason(Revoke, false),
        reasons.needs_reason(Approve, false),
        reasons.needs_reason(Approve, true),
    ) {
        (true, true, _) => "Reason (required, kept with each decision)",
        (true, false, true) => {
            "Reason (kept with each decision; required to revoke, or to approve privileged access)"
        }
        (true, false, false) => "Reason (kept with each decision; required to revoke)",
        (false, true, _) => "Reason (kept with each decision; required to approve)",
        (false, false, true) => {
            "Reason (kept with each decision; required to approve privileged access)"
        }
        (false, false, false) => "Reason (optional, kept with each decision)",
    }
}

/// Person by person (by name), privileged accesses first, then by group name.
fn page_order(item: &ReviewItem) -> (&str, &str, bool, &str, &str) {
    (
        &item.identity_name,
        &item.identity_external_id,
        !item.privileged,
        &item.entitlement_name,
        &item.id,
    )
}

/// After a decision: the next undecided item on the page (after the decided one, else the
/// first), where the page moves focus.
fn next_pending_after(items: &[ReviewItem], saved: Option<&str>) -> Option<String> {
    let saved = saved?;
    let at = items.iter().position(|i| i.id == saved).unwrap_or(0);
    items[at..]
        .iter()
        .chain(&items[..at])
        .find(|i| i.state == ITEM_PENDING)
        .map(|i| i.id.clone())
}

fn problem_text(problem: Option<&str>, intent: Option<&str>) -> Option<String> {
    match problem? {
        "reason" if intent == Some("revoke") => {
            Some("Not saved: say why this access should be revoked.".into())
        }
        "reason" => Some("Not saved: say why this access is still needed.".into()),
        "stale" => Some(
            "Not saved: while your page was open, this access was decided (see its history \
             below). Look again and decide."
                .into(),
        ),
        _ => None,
    }
}

/// Keeps one page of a large queue's group; returns where it is.
fn page_of(items: &mut Vec<ReviewItem>, from: usize) -> Pager {
    let of = items.len();
    let first = from.min(of.saturating_sub(1) / GROUP_PAGE_ITEMS * GROUP_PAGE_ITEMS);
    let last = (first + GROUP_PAGE_ITEMS).min(of);
    let group_name = items
        .first()
        .map(|i| i.entitlement_name.clone())
        .unwrap_or_default();
    items.truncate(last);
    items.drain(..first);
    Pager {
        group_name,
        first: first + 1,
        last,
        of,
        previous_from: (first > 0).then(|| first.saturating_sub(GROUP_PAGE_ITEMS)),
        next_from: (last < of).then_some(last),
    }
}

/// What the status bar says after a post redirected back to the page.
fn flash(query: &ReviewQuery, items: &[ReviewItem]) -> Option<Flash> {
    let plural = |n: usize| if n == 1 { "access" } else { "accesses" };
    let ok = |text: String| Some(Flash { text, kind: "ok" });
    let warn = |text: &str| {
        Some(Flash {
            text: text.to_string(),
            kind: "warn",
        })
    };
    match (query.problem.as_deref(), query.intent.as_deref()) {
        (Some("bulk_reason"), Some("revoke")) => {
            return warn("Not saved: say why these accesses should be revoked.");
        }
        (Some("bulk_reason"), _) => {
            return warn("Not saved: say why these accesses are still needed.");
        }
        (Some(_), _) => {
            return warn("Your last choice was not saved: see the access marked below.");
        }
        (None, _) => {}
    }
    if let Some(moved) = query.moved {
        let mut text = format!("{moved} {} passed on. Thank you.", plural(moved));
        if let Some(stuck) = query.stuck.filter(|n| *n > 0) {
            text.push_str(&format!(
                " {stuck} {} stayed with you: that person holds them or is reviewed by their \
                 holder.",
                plural(stuck)
            ));
        }
        return ok(text);
    }
    if let Some(decided) = query.decided {
        return ok(match decided {
            0 => "Nothing was left to decide there.".to_string(),
            n => format!("Saved {n} {}. Thank you.", plural(n)),
        });
    }
    let saved_id = query.saved.as_deref()?;
    let Some(saved) = items.iter().find(|i| i.id == saved_id) else {
        // "Don't know" moved it to the next reviewer.
        return ok("Passed on to the next reviewer. Thank you.".to_string());
    };
    let outcome = match saved.state.as_str() {
        "approved" => "approved",
        "revoked" => "revoke requested",
        _ => "passed on",
    };
    ok(format!(
        "Saved: {} for {}, {outcome}.",
        saved.entitlement_name, saved.identity_name
    ))
}

/// A large queue's groups, privileged first, then by name.
fn group_summaries(items: &[ReviewItem]) -> Vec<GroupSummary> {
    let mut groups: BTreeMap<(bool, &str, &str), (usize, usize)> = BTreeMap::new();
    for item in items {
        let counts = groups
            .entry((
                !item.privileged,
                &item.entitlement_name,
                &item.entitlement_external_id,
            ))
            .or_default();
        counts.0 += 1;
        if item.state == ITEM_PENDING {
            counts.1 += 1;
        }
    }
    groups
        .into_iter()
        .map(
            |((unprivileged, name, id), (total, pending))| GroupSummary {
                id: id.to_string(),
                name: name.to_string(),
                privileged: !unprivileged,
                total,
                pending,
            },
        )
        .collect()
}

/// The people and groups among the reviewer's undecided items, for the bulk form.
fn bulk_choices(items: &[ReviewItem]) -> (Vec<BulkChoice>, Vec<BulkChoice>) {
    let mut people: BTreeMap<(&str, &str), (&str, usize)> = BTreeMap::new();
    let mut groups: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for item in items.iter().filter(|i| i.state == ITEM_PENDING) {
        people
            .entry((&item.identity_name, &item.identity_external_id))
            .or_insert((&item.identity_login, 0))
            .1 += 1;
        *groups
            .entry((&item.entitlement_name, &item.entitlement_external_id))
            .or_default() += 1;
    }
    let people = people
        .into_iter()
        .map(|((name, id), (login, count))| BulkChoice {
            value: format!("person:{id}"),
            label: format!("{name} ({login})"),
            count,
        })
        .collect();
    let groups = groups
        .into_iter()
        .map(|((name, id), count)| BulkChoice {
            value: format!("group:{id}"),
            label: name.to_string(),
            count,
        })
        .collect();
    (people, groups)
}
