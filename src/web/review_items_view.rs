//! How each access on the review page reads: grouped by person, with what helps decide (the
//! group's description, privileged, direct or through which group, first seen, the person's
//! title and last logon, hints) and the item's decision history. Built from the frozen items
//! and their [`ItemContext`], in memory: no query per item.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Serialize;

use crate::campaigns::item_context::{ItemContext, PastDecision};
use crate::campaigns::model::{ITEM_PENDING, ReviewItem};
use crate::db::time::from_db;
use crate::decisions::DecisionOutcome;
use crate::decisions::reasons::ReasonRules;

/// A person whose last logon is older than this is flagged as not using their access.
const UNUSED_AFTER_DAYS: i64 = 90;
/// The "few of the team have this" hint needs a team at least this large...
const MIN_TEAM_FOR_HINT: usize = 4;
/// ...and at most this share of it holding the access.
const FEW_OF_TEAM_SHARE: f64 = 0.25;

#[derive(Serialize)]
pub(crate) struct PersonView {
    pub(crate) name: String,
    pub(crate) login: String,
    pub(crate) status: String,
    pub(crate) title: Option<String>,
    pub(crate) department: Option<String>,
    /// The reviewer reviews this person as their manager of record.
    pub(crate) reports_to_reviewer: bool,
    pub(crate) last_logon: Option<String>,
    pub(crate) pending: usize,
    pub(crate) items: Vec<ItemView>,
}

#[derive(Serialize)]
pub(crate) struct ItemView {
    pub(crate) id: String,
    /// "jira-users for Ann Smith": what every control of the item is named after.
    pub(crate) label: String,
    pub(crate) group_name: String,
    pub(crate) description: Option<String>,
    pub(crate) privileged: bool,
    pub(crate) via: Option<String>,
    pub(crate) first_seen: String,
    pub(crate) routing_note: Option<&'static str>,
    pub(crate) stage: i64,
    pub(crate) state: String,
    pub(crate) approved_until: Option<String>,
    pub(crate) hints: Vec<String>,
    pub(crate) history: Vec<HistoryView>,
    /// The latest decision's id ("" for none): sent back with a decision, so that one made
    /// on a stale page is noticed.
    pub(crate) seen: String,
    pub(crate) revoke_needs_reason: bool,
    pub(crate) approve_needs_reason: bool,
    /// Arrived at from a mail link or a post: the item the page moves focus to.
    pub(crate) focus: bool,
    /// From a mail link: the choice to confirm.
    pub(crate) intent: Option<&'static str>,
    /// What went wrong with the last post on this item, shown at the item.
    pub(crate) problem: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct HistoryView {
    pub(crate) outcome: &'static str,
    pub(crate) by: String,
    pub(crate) at: String,
    pub(crate) comment: Option<String>,
}

/// Where the page was opened at, and what to say there.
#[derive(Default)]
pub(crate) struct Focus<'a> {
    pub(crate) item: Option<&'a str>,
    pub(crate) intent: Option<&'static str>,
    pub(crate) problem: Option<String>,
}

/// Groups `items` (already in page order: person, then privileged first, then group) by
/// person.
pub(crate) fn people_views(
    items: Vec<ReviewItem>,
    context: &ItemContext,
    reasons: ReasonRules,
    now: DateTime<Utc>,
    focus: &Focus<'_>,
    team: &TeamShares,
) -> Vec<PersonView> {
    let mut people: Vec<PersonView> = Vec::new();
    let mut last_person: Option<String> = None;
    for item in items {
        if last_person.as_deref() != Some(item.identity_external_id.as_str()) {
            let person = context.people.get(&item.identity_external_id);
            people.push(PersonView {
                name: item.identity_name.clone(),
                login: item.identity_login.clone(),
                status: item.identity_status.clone(),
                title: person.and_then(|p| p.title.clone()),
                department: person.and_then(|p| p.department.clone()),
                reports_to_reviewer: item.routing == "manager",
                last_logon: person.and_then(|p| p.last_logon).map(day),
                pending: 0,
                items: Vec::new(),
            });
            last_person = Some(item.identity_external_id.clone());
        }
        let Some(person) = people.last_mut() else {
            continue;
        };
        if item.state == ITEM_PENDING {
            person.pending += 1;
        }
        let hints = hints(&item, context, now, team);
        let history: &[PastDecision] = context.history.get(&item.id).map_or(&[], Vec::as_slice);
        let is_focus = focus.item == Some(item.id.as_str());
        person.items.push(ItemView {
            label: format!("{} for {}", item.entitlement_name, item.identity_name),
            description: context
                .descriptions
                .get(&item.entitlement_external_id)
                .cloned(),
            first_seen: day(item.granted_since),
            routing_note: routing_note(&item.routing),
            approved_until: item.approved_until.map(day),
            seen: history.last().map(|d| d.id.clone()).unwrap_or_default(),
            history: history.iter().map(history_view).collect(),
            revoke_needs_reason: reasons.needs_reason(DecisionOutcome::Revoke, item.privileged),
            approve_needs_reason: reasons.needs_reason(DecisionOutcome::Approve, item.privileged),
            focus: is_focus,
            intent: focus.intent.filter(|_| is_focus),
            problem: focus.problem.clone().filter(|_| is_focus),
            hints,
            id: item.id,
            group_name: item.entitlement_name,
            privileged: item.privileged,
            via: item.via,
            stage: item.stage,
            state: item.state,
        });
    }
    people
}

fn history_view(decision: &PastDecision) -> HistoryView {
    let outcome = match (decision.outcome.as_str(), decision.approved_until) {
        ("approve", Some(_)) => "Approved until a date",
        ("approve", None) => "Approved",
        ("revoke", _) => "Revoke requested",
        _ => "Passed on (did not know)",
    };
    HistoryView {
        outcome,
        by: decision.reviewer_name.clone(),
        at: from_db(decision.decided_at)
            .format("%Y-%m-%d %H:%M UTC")
            .to_string(),
        comment: decision.comment.clone(),
    }
}

fn day(time: NaiveDateTime) -> String {
    from_db(time).format("%Y-%m-%d").to_string()
}

/// Why an access came to this reviewer, when it is not the usual route.
fn routing_note(routing: &str) -> Option<&'static str> {
    Some(match routing {
        "manager" | "named" => return None,
        "owner" => "you own this group",
        "fallback" => "sent to you as fallback reviewer",
        "escalated" => "passed to you: not decided in time",
        "dont_know_escalated" => "passed to you: the first reviewer did not know",
        "reviewer_unavailable" => "passed to you: the first reviewer has left",
        "delegated" => "passed to you by its reviewer",
        "reassigned_by_admin" => "given to you by an administrator",
        _ => "sent to you: the usual reviewer could not review it independently",
    })
}

/// Hints that help decide: unused, rare in the team, new since the last review.
fn hints(
    item: &ReviewItem,
    context: &ItemContext,
    now: DateTime<Utc>,
    team: &TeamShares,
) -> Vec<String> {
    let mut hints = Vec::new();
    let last_logon = context
        .people
        .get(&item.identity_external_id)
        .and_then(|p| p.last_logon);
    if let Some(last_logon) = last_logon {
        let idle = now - from_db(last_logon);
        if idle >= Duration::days(UNUSED_AFTER_DAYS) {
            hints.push(format!("no sign-in for {} days", idle.num_days()));
        }
    }
    if item.routing == "manager"
        && let Some((holders, size)) = team.share(&item.entitlement_external_id)
    {
        hints.push(format!(
            "only {holders} of the {size} people who report to you have this"
        ));
    }
    if context
        .previous_review_opened_at
        .is_some_and(|previous| item.granted_since > previous)
    {
        hints.push("granted since the last review".to_string());
    }
    hints
}

/// Among the people a reviewer reviews as their manager: how many hold each group.
pub(crate) struct TeamShares {
    size: usize,
    holders: HashMap<String, usize>,
}

impl TeamShares {
    pub(crate) fn of(items: &[ReviewItem]) -> TeamShares {
        let mut team = HashSet::new();
        let mut holders: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
        for item in items.iter().filter(|i| i.routing == "manager") {
            team.insert(item.identity_external_id.as_str());
            holders
                .entry(item.entitlement_external_id.as_str())
                .or_default()
                .insert(item.identity_external_id.as_str());
        }
        TeamShares {
            size: team.len(),
            holders: holders
                .into_iter()
                .map(|(group, people)| (group.to_string(), people.len()))
                .collect(),
        }
    }

    /// (holders, team size) when few of a large enough team hold `group`.
    fn share(&self, group: &str) -> Option<(usize, usize)> {
        let holders = *self.holders.get(group)?;
        (self.size >= MIN_TEAM_FOR_HINT && holders as f64 <= self.size as f64 * FEW_OF_TEAM_SHARE)
            .then_some((holders, self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(person: &str, group: &str, routing: &str) -> ReviewItem {
        ReviewItem {
            id: format!("{person}-{group}"),
            campaign_id: "c".into(),
            reviewer_id: "r".into(),
            routing: routing.into(),
            identity_external_id: person.into(),
            identity_login: person.into(),
            identity_name: person.into(),
            identity_email: None,
            identity_status: "active".into(),
            entitlement_external_id: group.into(),
            entitlement_name: group.into(),
            entitlement_dn: group.into(),
            privileged: false,
            via: None,
            granted_since: chrono::NaiveDateTime::default(),
            stage: 1,
            state: ITEM_PENDING.into(),
            decided_at: None,
            no_response_outcome: None,
            approved_until: None,
            expired_at: None,
        }
    }

    #[test]
    fn few_of_the_reports_holding_an_access_is_a_hint_and_many_is_not() {
        let mut items: Vec<ReviewItem> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|p| item(p, "wiki", "manager"))
            .collect();
        items.push(item("a", "prod-db", "manager"));
        // Held by someone the reviewer reviews as fallback, not as their manager: not counted.
        items.push(item("z", "prod-db", "fallback"));
        let team = TeamShares::of(&items);
        assert_eq!(team.share("prod-db"), Some((1, 5)));
        assert_eq!(team.share("wiki"), None, "everyone has it");
        let small = TeamShares::of(&items[3..6]);
        assert_eq!(
            small.share("prod-db"),
            None,
            "a team of 3 is too small to tell"
        );
    }
}
