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
    let stage_mail: Vec<_> = mail_of_kind(&o, "review_request")
        .await
        .into_iter()
        .filter(|(_, key)| key.ends_with(":stage-2"))
        .map(|(to, _)| to)
        .collect();
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

/// A move that stopped after the campaign's stage moved on (the process died) goes on from
/// there when the job runs again: every access that goes on moves once, and each new
/// reviewer gets one digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_advance_goes_on_where_it_stopped() {
    let o = open_campaign(two_stages(StageOutcome::AllApprove)).await;
    decide(
        &o,
        "bob@example.com",
        "erin",
        "vpn-users",
        DecisionOutcome::Revoke,
    )
    .await
    .unwrap();
    let total = all_items(&o).await.len();
    // What the first transaction of an advance leaves behind: the stage moved on, nothing
    // moved yet.
    let id = o.campaign.clone();
    let at = o.opened + Duration::days(5);
    o.app
        .blocking(move |db, _, _| {
            use attest::db::schema::campaigns;
            use diesel::prelude::*;
            let mut conn = db.conn().unwrap();
            diesel::update(campaigns::table.find(&id))
                .set(campaigns::stage.eq(2))
                .execute(&mut *conn)
                .unwrap();
            let advanced =
                attest::campaigns::stages::advance_stage(&mut conn, at, &id, 1, "test").unwrap();
            assert_eq!(
                (advanced.stage, advanced.items, advanced.settled),
                (2, total - 1, 1)
            );
            // Run again (a retried job): nothing moves twice.
            let again =
                attest::campaigns::stages::advance_stage(&mut conn, at, &id, 1, "test").unwrap();
            assert_eq!((again.stage, again.items), (2, 0));
        })
        .await;
    let (reviewer, dave) = item_of(&o, "dave", "vpn-users").await;
    assert_eq!((reviewer.as_str(), dave.stage), ("heidi@example.com", 2));
    let moved: usize = events_of(&o, EventKind::ItemsAdvanced)
        .await
        .iter()
        .map(|e| e["items"].as_array().unwrap().len())
        .sum();
    assert_eq!(moved, total - 1, "each moved access is named once");
    let stage_mail: Vec<_> = mail_of_kind(&o, "review_request")
        .await
        .into_iter()
        .filter(|(_, key)| key.ends_with(":stage-2"))
        .map(|(to, _)| to)
        .collect();
    let mut unique = stage_mail.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(stage_mail.len(), unique.len(), "{stage_mail:?}");
    assert!(stage_mail.contains(&"heidi@example.com".to_string()));
    o.app.stop().await;
}
