//! A campaign reviewed in two stages (the manager, then the group's owner), driven by the
//! injected clock: when the first stage's days are up, the accesses that go on move to the
//! owners with a digest each, the others keep their first decision as final, and the first
//! reviewer can no longer decide what moved on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::ReviewItem;
use attest::campaigns::model::campaign;
use attest::config::{ChainStep, StageDefinition, StageOutcome};
use attest::decisions::{DecisionOutcome, DecisionRequest, record_decision};
use attest::ledger::EventKind;
use chrono::Duration;

use crate::common::FALLBACK;
use crate::open_review::{
    Open, auth, events_of, mail_of_kind, open_campaign, open_campaign_on_postgres,
};

fn two_stages(outcome: StageOutcome) -> impl FnOnce(&mut attest::config::CampaignDefinition) {
    move |d| {
        d.stages = vec![
            StageDefinition {
                reviewer_chain: vec![ChainStep::Manager],
                days: Some(5),
            },
            StageDefinition {
                reviewer_chain: vec![ChainStep::Owner],
                days: None,
            },
        ];
        d.stage_outcome = outcome;
        d.group_owners.insert("vpn-users".into(), "heidi".into());
    }
}

/// Every item of the campaign with its reviewer's email.
async fn all_items(o: &Open) -> Vec<(String, ReviewItem)> {
    let campaign_id = o.campaign.clone();
    o.app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            let mut out = Vec::new();
            for reviewer in attest::campaigns::model::reviewers_of(&mut conn, &campaign_id).unwrap()
            {
                for item in
                    attest::campaigns::model::items_of_reviewer(&mut conn, &reviewer.id).unwrap()
                {
                    out.push((reviewer.email.clone(), item));
                }
            }
            out
        })
        .await
}

async fn item_of(o: &Open, person: &str, group: &str) -> (String, ReviewItem) {
    all_items(o)
        .await
        .into_iter()
        .find(|(_, i)| i.identity_login == person && i.entitlement_name == group)
        .unwrap()
}

/// `email` decides the access of `person` to `group`.
async fn decide(
    o: &Open,
    email: &str,
    person: &str,
    group: &str,
    outcome: DecisionOutcome,
) -> attest::error::Result<()> {
    let reviewer = o.app.reviewer_id(&o.campaign, email).await;
    let item = item_of(o, person, group).await.1.id;
    let campaign_id = o.campaign.clone();
    o.app
        .blocking(move |db, clock, _| {
            let request = DecisionRequest {
                campaign_id,
                reviewer_id: reviewer,
                item_id: item,
                outcome,
                comment: None,
                approved_until: None,
            };
            let now = attest::clock::Clock::now(clock);
            record_decision(&mut db.conn().unwrap(), now, &request, &auth()).map(|_| ())
        })
        .await
}

async fn campaign_stage(o: &Open) -> i64 {
    let id = o.campaign.clone();
    o.app
        .blocking(move |db, _, _| campaign(&mut db.conn().unwrap(), &id).unwrap().stage)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_undecided_accesses_go_on_and_revocations_are_final_on_sqlite() {
    approvals_and_undecided_accesses_go_on(
        open_campaign(two_stages(StageOutcome::AllApprove)).await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_and_undecided_accesses_go_on_and_revocations_are_final_on_postgres() {
    let o = open_campaign_on_postgres(two_stages(StageOutcome::AllApprove)).await;
    approvals_and_undecided_accesses_go_on(o).await;
}

/// Stage one's approvals and undecided accesses go on to the owners; its revocation is final.
async fn approvals_and_undecided_accesses_go_on(o: Open) {
    let total = all_items(&o).await.len();
    assert!(all_items(&o).await.iter().all(|(_, i)| i.stage == 1));
    let bob = "bob@example.com";
    decide(&o, bob, "dave", "vpn-users", DecisionOutcome::Approve)
        .await
        .unwrap();
    decide(&o, bob, "erin", "vpn-users", DecisionOutcome::Revoke)
        .await
        .unwrap();

    o.app
        .tick_at(o.opened + Duration::days(5) - Duration::minutes(1))
        .await;
    assert_eq!(
        campaign_stage(&o).await,
        1,
        "the first stage is not over yet"
    );
    o.app.tick_at(o.opened + Duration::days(5)).await;
    o.app
        .tick_at(o.opened + Duration::days(5) + Duration::hours(1))
        .await;
    assert_eq!(campaign_stage(&o).await, 2);

    // The revocation is final, with its first reviewer.
    let (reviewer, erin) = item_of(&o, "erin", "vpn-users").await;
    assert_eq!(
        (reviewer.as_str(), erin.stage, erin.state.as_str()),
        (bob, 1, "revoked")
    );
    // The approval goes on to the group's owner, undecided again.
    let (reviewer, dave) = item_of(&o, "dave", "vpn-users").await;
    assert_eq!(
        (
            reviewer.as_str(),
            dave.stage,
            dave.state.as_str(),
            dave.routing.as_str()
        ),
        ("heidi@example.com", 2, "pending", "owner")
    );
    // What nobody decided goes on too. Engineering's owner is bob, who had it in the first
    // stage: the second look is someone else's (the fallback). A group without an owner
    // goes to the fallback; the owner's own access past her.
    let (reviewer, frank) = item_of(&o, "frank", "engineering").await;
    assert_eq!(
        (reviewer.as_str(), frank.stage, frank.routing.as_str()),
        (FALLBACK, 2, "earlier_stage_reviewer_rerouted")
    );
    let (reviewer, alice) = item_of(&o, "alice", "prod-admins").await;
    assert_eq!(
        (reviewer.as_str(), alice.routing.as_str()),
        (FALLBACK, "fallback")
    );
    let (reviewer, heidi) = item_of(&o, "heidi", "vpn-users").await;
    assert_eq!(
        (reviewer.as_str(), heidi.routing.as_str()),
        (FALLBACK, "self_review_rerouted")
    );
    let advanced = events_of(&o, EventKind::CampaignStageAdvanced).await;
    assert_eq!(advanced.len(), 1, "{advanced:?}");
    assert_eq!(advanced[0]["items_settled"], 1);
    assert_eq!(advanced[0]["items_advanced"], total - 1);
    let stage_mail = stage_two_digests(&o).await;
    assert!(
        stage_mail.contains(&"heidi@example.com".to_string()),
        "{stage_mail:?}"
    );

    // bob can no longer decide what went on, nor overturn what his stage settled; heidi
    // decides what went on.
    let refused = decide(&o, bob, "dave", "vpn-users", DecisionOutcome::Revoke).await;
    assert!(refused.is_err());
    let settled = decide(&o, bob, "erin", "vpn-users", DecisionOutcome::Approve).await;
    assert!(
        settled.unwrap_err().to_string().contains("earlier stage"),
        "a settled decision is final"
    );
    assert_eq!(item_of(&o, "erin", "vpn-users").await.1.state, "revoked");
    decide(
        &o,
        "heidi@example.com",
        "dave",
        "vpn-users",
        DecisionOutcome::Approve,
    )
    .await
    .unwrap();

    // At the due date the campaign closes: the stage-2 decision and the stage-1 revocation
    // stand; nothing moves on again.
    o.app.tick_at(o.due).await;
    o.app.tick_at(o.due + Duration::days(1)).await;
    assert_eq!(item_of(&o, "dave", "vpn-users").await.1.state, "approved");
    assert_eq!(item_of(&o, "erin", "vpn-users").await.1.state, "revoked");
    assert_eq!(
        item_of(&o, "frank", "engineering").await.1.state,
        "no_response"
    );
    assert_eq!(
        events_of(&o, EventKind::CampaignStageAdvanced).await.len(),
        1
    );
    let closed = events_of(&o, EventKind::CampaignClosed).await;
    assert_eq!(
        (closed[0]["stage"].as_i64(), closed[0]["stages"].as_i64()),
        (Some(2), Some(2))
    );
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_any_approve_revocations_get_a_second_opinion_and_approvals_are_final() {
    let o = open_campaign(two_stages(StageOutcome::AnyApprove)).await;
    let bob = "bob@example.com";
    decide(&o, bob, "dave", "vpn-users", DecisionOutcome::Approve)
        .await
        .unwrap();
    decide(&o, bob, "erin", "vpn-users", DecisionOutcome::Revoke)
        .await
        .unwrap();
    o.app.tick_at(o.opened + Duration::days(5)).await;
    let (reviewer, dave) = item_of(&o, "dave", "vpn-users").await;
    assert_eq!(
        (reviewer.as_str(), dave.stage, dave.state.as_str()),
        (bob, 1, "approved")
    );
    let (reviewer, erin) = item_of(&o, "erin", "vpn-users").await;
    assert_eq!(
        (reviewer.as_str(), erin.stage, erin.state.as_str()),
        ("heidi@example.com", 2, "pending")
    );
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}

/// `escalate_after_days` counts again from the start of each stage: the second stage's
/// reviewers get the same time before their undecided items move to their managers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_stage_escalates_counted_from_its_own_start() {
    let stages = two_stages(StageOutcome::AllApprove);
    let o = open_campaign(move |d| {
        stages(d);
        d.escalate_after_days = Some(2);
    })
    .await;
    let escalated =
        |events: &[serde_json::Value]| events.iter().filter(|e| e["reason"] == "escalated").count();
    decide(
        &o,
        "bob@example.com",
        "dave",
        "vpn-users",
        DecisionOutcome::Approve,
    )
    .await
    .unwrap();
    o.app.tick_at(o.opened + Duration::days(2)).await;
    let in_stage_one = escalated(&events_of(&o, EventKind::ItemsReassigned).await);
    assert!(in_stage_one > 0, "stage one escalates after two days");

    o.app.tick_at(o.opened + Duration::days(5)).await;
    assert_eq!(campaign_stage(&o).await, 2);
    let (reviewer, dave) = item_of(&o, "dave", "vpn-users").await;
    assert_eq!(
        (reviewer.as_str(), dave.state.as_str()),
        ("heidi@example.com", "pending")
    );
    o.app
        .tick_at(o.opened + Duration::days(7) - Duration::seconds(1))
        .await;
    assert_eq!(
        escalated(&events_of(&o, EventKind::ItemsReassigned).await),
        in_stage_one,
        "two days after the second stage began, not after opening"
    );

    o.app.tick_at(o.opened + Duration::days(7)).await;
    let events = events_of(&o, EventKind::ItemsReassigned).await;
    assert!(escalated(&events) > in_stage_one, "{events:?}");
    // heidi's undecided access goes to her manager carol, still in stage two.
    let (reviewer, dave) = item_of(&o, "dave", "vpn-users").await;
    assert_eq!(
        (reviewer.as_str(), dave.stage, dave.routing.as_str()),
        ("carol@example.com", 2, "escalated")
    );
    // Once per stage: a later tick moves nothing again.
    o.app.tick_at(o.opened + Duration::days(8)).await;
    assert_eq!(
        escalated(&events_of(&o, EventKind::ItemsReassigned).await),
        escalated(&events)
    );
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}

/// Stage two reviewed by named people who are themselves reviewed: where the move has to
/// keep two of them from reviewing each other.
fn to_named_reviewers(d: &mut attest::config::CampaignDefinition) {
    two_stages(StageOutcome::AllApprove)(d);
    d.stages[1].reviewer_chain = vec![ChainStep::Named];
    d.group_owners.clear();
    d.named_reviewers = vec!["mallory".into(), "alice".into()];
}

/// Each access as (holder, group) -> (reviewer's email, routing), after the advance.
async fn routed(o: &Open) -> std::collections::BTreeMap<(String, String), (String, String)> {
    all_items(o)
        .await
        .into_iter()
        .map(|(email, i)| ((i.identity_login, i.entitlement_name), (email, i.routing)))
        .collect()
}

/// Advances `o` from stage one, a page of one access per transaction, stopping after
/// `stop_after_pages` pages when given.
async fn advance(o: &Open, stop_after_pages: Option<usize>) -> attest::campaigns::stages::Advanced {
    let (id, at) = (o.campaign.clone(), o.opened + Duration::days(5));
    o.app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            let paging = attest::campaigns::stage_moves::Paging {
                items_per_page: 1,
                stop_after_pages,
            };
            attest::campaigns::stages::advance_stage_paged(&mut conn, at, &id, 1, "test", paging)
                .unwrap()
        })
        .await
}

async fn in_stage_two(o: &Open) -> usize {
    all_items(o)
        .await
        .iter()
        .filter(|(_, i)| i.stage == 2)
        .count()
}

/// A move cut short after some pages (as by a crash) goes on from there when the job runs
/// again, and ends exactly as a move that never stopped: each access moved once, routed the
/// same (no two people reviewing each other), one digest per new reviewer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_cut_short_goes_on_and_ends_as_one_that_never_stopped() {
    let whole = open_campaign(to_named_reviewers).await;
    let total = all_items(&whole).await.len();
    let moved = advance(&whole, None).await;
    assert_eq!((moved.stage, moved.items), (2, total));
    let expected = routed(&whole).await;
    assert!(
        expected.values().any(|(_, r)| r == "mutual_pair_rerouted"),
        "{expected:?}"
    );
    whole.app.stop().await;

    for cut in [1, 4, 9] {
        let o = open_campaign(to_named_reviewers).await;
        let first = advance(&o, Some(cut)).await;
        assert_eq!(
            (first.stage, first.items),
            (2, cut),
            "cut after {cut} page(s)"
        );
        assert_eq!(campaign_stage(&o).await, 2);
        let rest = advance(&o, None).await;
        assert_eq!(first.items + rest.items, total);
        let again = advance(&o, None).await;
        assert_eq!(again.items, 0, "nothing moves twice");
        assert_eq!(routed(&o).await, expected, "cut after {cut} page(s)");
        let named: Vec<String> = events_of(&o, EventKind::ItemsAdvanced)
            .await
            .iter()
            .flat_map(|e| e["items"].as_array().unwrap().clone())
            .map(|id| id.as_str().unwrap().to_string())
            .collect();
        let mut unique = named.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(
            (named.len(), unique.len()),
            (total, total),
            "each access named once"
        );
        let stage_mail = stage_two_digests(&o).await;
        let mut once = stage_mail.clone();
        once.sort();
        once.dedup();
        assert_eq!(stage_mail.len(), once.len(), "{stage_mail:?}");
        assert_eq!(
            events_of(&o, EventKind::CampaignStageAdvanced).await.len(),
            1
        );
        o.app.stop().await;
    }
}

/// A move whose job gave up half way is planned again by the scheduler and finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_finishes_a_move_that_stopped() {
    let o = open_campaign(to_named_reviewers).await;
    let total = all_items(&o).await.len();
    advance(&o, Some(2)).await;
    assert_eq!(in_stage_two(&o).await, 2);
    // Meanwhile escalation takes only the current stage's accesses: those still waiting in
    // stage one go with the move.
    let (config, campaign, at) = (
        o.app.config.clone(),
        o.campaign.clone(),
        o.opened + Duration::days(5),
    );
    o.app
        .blocking(move |db, _, _| {
            let task = attest::jobs::follow_up::FollowUp {
                campaign,
                days_before_due: None,
                stage: Some(2),
            };
            attest::jobs::follow_up::escalate(&mut db.conn().unwrap(), &config, at, &task).unwrap();
        })
        .await;
    let stage_of: std::collections::HashMap<String, i64> = all_items(&o)
        .await
        .into_iter()
        .map(|(_, i)| (i.id, i.stage))
        .collect();
    let reassigned = events_of(&o, EventKind::ItemsReassigned).await;
    for event in &reassigned {
        for item in event["items"].as_array().unwrap() {
            assert_eq!(stage_of[item.as_str().unwrap()], 2, "{event}");
        }
    }
    o.app
        .tick_at(o.opened + Duration::days(5) + Duration::hours(1))
        .await;
    assert_eq!(in_stage_two(&o).await, total, "the tick finished the move");
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}

/// With `any_approve` an approval is final, also one given until a date that has come and
/// turned into a revocation: that revocation is settled, and no advance takes it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_final_approval_stays_with_its_stage() {
    let o = open_campaign(two_stages(StageOutcome::AnyApprove)).await;
    let bob = o.app.reviewer_id(&o.campaign, "bob@example.com").await;
    let item = item_of(&o, "dave", "vpn-users").await.1.id;
    let (campaign_id, until) = (
        o.campaign.clone(),
        (o.opened + Duration::days(2)).date_naive(),
    );
    o.app
        .blocking(move |db, clock, _| {
            let request = DecisionRequest {
                campaign_id,
                reviewer_id: bob,
                item_id: item,
                outcome: DecisionOutcome::Approve,
                comment: None,
                approved_until: Some(until),
            };
            let now = attest::clock::Clock::now(clock);
            record_decision(&mut db.conn().unwrap(), now, &request, &auth()).unwrap();
        })
        .await;
    o.app.tick_at(o.opened + Duration::days(3)).await;
    let dave = item_of(&o, "dave", "vpn-users").await.1;
    assert_eq!(dave.state, "revoked");
    assert!(dave.expired_at.is_some(), "the approval expired");

    o.app.tick_at(o.opened + Duration::days(5)).await;
    assert_eq!(campaign_stage(&o).await, 2);
    // Run again, as a retried job would.
    advance(&o, None).await;
    let (reviewer, dave) = item_of(&o, "dave", "vpn-users").await;
    assert_eq!(
        (reviewer.as_str(), dave.stage, dave.state.as_str()),
        ("bob@example.com", 1, "revoked")
    );
    assert!(dave.expired_at.is_some(), "the expiry stays on record");
    o.app.stop().await;
}

/// The recipients of stage-two digests, one entry per digest queued.
async fn stage_two_digests(o: &Open) -> Vec<String> {
    mail_of_kind(o, "review_request")
        .await
        .into_iter()
        .filter(|(_, key)| key.ends_with(":stage-2"))
        .map(|(to, _)| to)
        .collect()
}
