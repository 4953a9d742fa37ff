//! What happens to an open campaign with nobody but the scheduler at work, driven by the
//! injected clock: reminders go only to reviewers with undecided items, once each, and only
//! the latest after downtime; undecided items escalate to the reviewer's manager (then the
//! fallback) on time, and their first reviewer can no longer decide them; at the due date the
//! campaign closes and every undecided item gets the no-response outcome, with a breaker that
//! holds a close which would revoke too much until an admin confirms. A reviewer disabled in
//! the directory mid-campaign loses their links and their undecided items (TESTPLAN A8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::{CloseRules, close_campaign, preview_close};
use attest::config::NoResponse;
use attest::decisions::{DecisionOutcome, DecisionRequest, Recorded, record_decision};
use attest::ledger::EventKind;
use chrono::Duration;

use crate::common::{self, FALLBACK};
use crate::open_review::{
    Open, auth, decide_all_of, events_of, mail_of_kind, open_campaign, pending_of, recipients,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_go_only_to_reviewers_with_undecided_items_and_once() {
    let o = open_campaign(|_| {}).await;
    assert_eq!(
        decide_all_of(&o, "alice@example.com", DecisionOutcome::Approve).await,
        2
    );
    let week_before = o.due - Duration::days(7);

    o.app.tick_at(week_before - Duration::seconds(1)).await;
    assert!(mail_of_kind(&o, "reminder").await.is_empty(), "too early");
    o.app.tick_at(week_before).await;
    let first = mail_of_kind(&o, "reminder").await;
    assert_eq!(
        recipients(&first),
        ["bob@example.com", "carol@example.com", FALLBACK],
        "alice has decided everything"
    );
    o.app.tick_at(week_before + Duration::hours(1)).await;
    assert_eq!(mail_of_kind(&o, "reminder").await, first, "not twice");

    o.app.worker.drain_once().await.unwrap();
    let mail_dir = o.app.config.mail.file_dir.clone();
    let reminders: Vec<_> = common::mails_on_disk(&mail_dir)
        .into_iter()
        .filter(|(_, text)| text.contains("A reminder:"))
        .collect();
    assert_eq!(reminders.len(), 3);
    let bob = reminders
        .iter()
        .find(|(to, _)| to == "bob@example.com")
        .unwrap();
    assert!(bob.1.contains("6 accesses in"), "{}", bob.1);

    // carol finishes; two days before the due date only bob and the fallback are reminded.
    decide_all_of(&o, "carol@example.com", DecisionOutcome::Approve).await;
    o.app.tick_at(o.due - Duration::days(2)).await;
    let all = mail_of_kind(&o, "reminder").await;
    let second: Vec<_> = all
        .iter()
        .filter(|(_, key)| key.ends_with(":2"))
        .cloned()
        .collect();
    assert_eq!(recipients(&second), ["bob@example.com", FALLBACK]);
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_downtime_only_the_latest_reminder_goes() {
    let o = open_campaign(|_| {}).await;
    o.app.tick_at(o.due - Duration::days(1)).await;
    let sent = mail_of_kind(&o, "reminder").await;
    assert_eq!(
        sent.len(),
        4,
        "every reviewer has undecided items: {sent:?}"
    );
    assert!(sent.iter().all(|(_, key)| key.ends_with(":2")), "{sent:?}");
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecided_items_escalate_to_the_reviewers_manager_on_time() {
    let o = open_campaign(|d| d.escalate_after_days = Some(5)).await;
    let (alice_before, bob_before) = (
        pending_of(&o, "alice@example.com").await,
        pending_of(&o, "bob@example.com").await,
    );
    assert_eq!((alice_before.len(), bob_before.len()), (2, 6));

    o.app
        .tick_at(o.opened + Duration::days(5) - Duration::seconds(1))
        .await;
    assert!(events_of(&o, EventKind::ItemsReassigned).await.is_empty());
    o.app.tick_at(o.opened + Duration::days(5)).await;

    // bob's and carol's undecided items go to their manager alice; alice (no manager) passes
    // hers to the fallback; the fallback is the end of the chain and keeps its own.
    assert!(pending_of(&o, "bob@example.com").await.is_empty());
    assert!(pending_of(&o, "carol@example.com").await.is_empty());
    let alice = pending_of(&o, "alice@example.com").await;
    assert_eq!(alice.len(), 11, "{alice:?}");
    assert!(alice.iter().all(|(_, _, routing)| routing == "escalated"));
    let fallback = pending_of(&o, FALLBACK).await;
    assert_eq!(fallback.len(), 7);
    assert_eq!(
        fallback.iter().filter(|(_, _, r)| r == "escalated").count(),
        2
    );
    let moved: usize = events_of(&o, EventKind::ItemsReassigned)
        .await
        .iter()
        .map(|e| {
            assert_eq!(e["reason"], "escalated");
            e["items"].as_array().unwrap().len()
        })
        .sum();
    assert_eq!(moved, 13, "one event names every moved item");
    let notices = mail_of_kind(&o, "escalation").await;
    assert_eq!(recipients(&notices), ["alice@example.com", FALLBACK]);
    o.app.worker.drain_once().await.unwrap();
    let passed = common::mails_on_disk(&o.app.config.mail.file_dir)
        .into_iter()
        .filter(|(_, text)| text.contains("passed to you"))
        .count();
    assert_eq!(passed, 2);

    // bob can no longer decide what moved away from him; alice can.
    let bob = o.app.reviewer_id(&o.campaign, "bob@example.com").await;
    let alice_id = o.app.reviewer_id(&o.campaign, "alice@example.com").await;
    let (moved_item, campaign) = (bob_before[0].0.clone(), o.campaign.clone());
    let (by_bob, by_alice) = o
        .app
        .blocking(move |db, clock, _| {
            let mut conn = db.conn().unwrap();
            let now = attest::clock::Clock::now(clock);
            let mut request = DecisionRequest {
                campaign_id: campaign,
                reviewer_id: bob,
                item_id: moved_item,
                outcome: DecisionOutcome::Approve,
                comment: None,
                approved_until: None,
            };
            let by_bob = record_decision(&mut conn, now, &request, &auth());
            request.reviewer_id = alice_id;
            (by_bob, record_decision(&mut conn, now, &request, &auth()))
        })
        .await;
    assert_eq!(by_bob.unwrap_err().code(), "forbidden");
    assert!(matches!(by_alice.unwrap(), Recorded::New(_)));

    // Escalation happens once.
    o.app.tick_at(o.opened + Duration::days(6)).await;
    assert_eq!(events_of(&o, EventKind::ItemsReassigned).await.len(), 3);
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_due_date_undecided_items_are_flagged_and_the_campaign_closes() {
    let o = open_campaign(|_| {}).await;
    decide_all_of(&o, "bob@example.com", DecisionOutcome::Approve).await;
    o.app.tick_at(o.due - Duration::seconds(1)).await;
    assert!(events_of(&o, EventKind::CampaignClosed).await.is_empty());
    o.app.tick_at(o.due).await;
    let closed = events_of(&o, EventKind::CampaignClosed).await;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0]["approved"], 6);
    assert_eq!(closed[0]["no_response"]["items"], 12);
    assert_eq!(closed[0]["no_response"]["outcome"], "flag");
    let outcomes = no_response_outcomes(&o).await;
    assert_eq!(outcomes, vec![("flag".to_string(), 12)]);
    o.app.tick_at(o.due + Duration::hours(1)).await;
    assert_eq!(events_of(&o, EventKind::CampaignClosed).await.len(), 1);
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_disabled_mid_campaign_loses_their_links_and_items() {
    let o = open_campaign(|_| {}).await;
    let bob = o.app.reviewer_id(&o.campaign, "bob@example.com").await;
    let link = o.app.mint_link(&o.campaign, &bob, Duration::days(20)).await;
    let get = |url: String| async move {
        common::http_client()
            .get(url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(get(link.clone()).await, 200);
    o.app.tick_at(o.opened + Duration::days(1)).await;
    assert_eq!(
        get(link.clone()).await,
        200,
        "an unchanged directory changes nothing"
    );

    // bob is locked out of the directory; the next sync sees it.
    lock_out_bob(&o);
    o.app.clock.set(o.opened + Duration::days(2));
    o.app.sync().await.unwrap();
    o.app.tick_at(o.opened + Duration::days(2)).await;

    assert_eq!(get(link).await, 401, "bob's link stopped working");
    assert!(pending_of(&o, "bob@example.com").await.is_empty());
    let alice = pending_of(&o, "alice@example.com").await;
    let moved: Vec<_> = alice
        .iter()
        .filter(|(_, _, routing)| routing == "reviewer_unavailable")
        .collect();
    assert_eq!(moved.len(), 6, "bob's items went to his manager: {alice:?}");
    let reassigned = events_of(&o, EventKind::ItemsReassigned).await;
    assert_eq!(reassigned.len(), 1, "{reassigned:?}");
    assert_eq!(reassigned[0]["from_reviewer"], bob.as_str());
    assert_eq!(reassigned[0]["reason"], "reviewer_unavailable");
    let revoked = events_of(&o, EventKind::LinkRevoked).await;
    assert!(
        revoked
            .iter()
            .all(|e| e["reason"] == "reviewer_unavailable"),
        "{revoked:?}"
    );
    assert_eq!(
        recipients(&mail_of_kind(&o, "escalation").await),
        ["alice@example.com"]
    );
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dont_know_passes_the_access_to_the_reviewers_manager() {
    let o = open_campaign(|_| {}).await;
    let bob = o.app.reviewer_id(&o.campaign, "bob@example.com").await;
    let url = o.app.mint_link(&o.campaign, &bob, Duration::days(20)).await;
    let client = common::http_client();
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Don't know"));
    let (csrf, items) = (
        common::form_values(&page, "csrf")[0].clone(),
        common::form_values(&page, "item"),
    );
    assert_eq!(items.len(), 6);
    let fields = [
        ("csrf", csrf.as_str()),
        ("item", items[0].as_str()),
        ("outcome", "dont_know"),
        ("comment", "not my team any more"),
    ];
    assert_eq!(
        common::post_form(&client, format!("{url}/decide"), &fields).await,
        303
    );

    // The access left bob's page, undecided, for alice (bob's manager), with the reason.
    let after = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(common::form_values(&after, "item").len(), 5);
    let alice = pending_of(&o, "alice@example.com").await;
    let passed: Vec<_> = alice.iter().filter(|(id, _, _)| *id == items[0]).collect();
    assert_eq!(passed.len(), 1, "{alice:?}");
    assert_eq!(passed[0].2, "dont_know_escalated");
    let decisions = events_of(&o, EventKind::DecisionRecorded).await;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["outcome"], "dont_know");
    assert_eq!(decisions[0]["comment"], "not my team any more");
    let moved = events_of(&o, EventKind::ItemsReassigned).await;
    assert_eq!(moved[0]["reason"], "dont_know_escalated");
    assert_eq!(
        recipients(&mail_of_kind(&o, "escalation").await),
        ["alice@example.com"]
    );

    // The fallback reviewer is the end of the chain: "don't know" is refused, nothing written.
    let fallback = o.app.reviewer_id(&o.campaign, FALLBACK).await;
    let their_item = pending_of(&o, FALLBACK).await[0].0.clone();
    let campaign = o.campaign.clone();
    let refused = o
        .app
        .blocking(move |db, clock, _| {
            let request = DecisionRequest {
                campaign_id: campaign,
                reviewer_id: fallback,
                item_id: their_item,
                outcome: DecisionOutcome::DontKnow,
                comment: None,
                approved_until: None,
            };
            let now = attest::clock::Clock::now(clock);
            record_decision(&mut db.conn().unwrap(), now, &request, &auth())
        })
        .await;
    assert!(refused.unwrap_err().to_string().contains("nobody else"));
    assert_eq!(events_of(&o, EventKind::DecisionRecorded).await.len(), 1);
    o.app.stop().await;
}

/// (no-response outcome, items) of the campaign's unanswered items.
async fn no_response_outcomes(o: &Open) -> Vec<(String, i64)> {
    let campaign = o.campaign.clone();
    o.app
        .blocking(move |db, _, _| {
            use attest::db::schema::review_items as ri;
            use diesel::prelude::*;
            ri::table
                .filter(ri::campaign_id.eq(campaign))
                .filter(ri::state.eq("no_response"))
                .group_by(ri::no_response_outcome)
                .select((
                    ri::no_response_outcome.assume_not_null(),
                    diesel::dsl::count_star(),
                ))
                .load(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_of_unanswered_items_within_the_share_happens_at_close() {
    let o = open_campaign(|d| d.no_response = NoResponse::Revoke).await;
    for reviewer in ["bob@example.com", "carol@example.com", FALLBACK] {
        decide_all_of(&o, reviewer, DecisionOutcome::Approve).await;
    }
    // alice's 2 of 18 (11%) stay unanswered: within the default share of 0.2.
    o.app.tick_at(o.due).await;
    assert_eq!(
        no_response_outcomes(&o).await,
        vec![("revoke".to_string(), 2)]
    );
    // The evidence names each unanswered access and what the policy did to it.
    let unanswered = events_of(&o, EventKind::ItemsUnanswered).await;
    assert_eq!(unanswered.len(), 1, "{unanswered:?}");
    assert_eq!(unanswered[0]["outcome"], "revoke");
    assert_eq!(unanswered[0]["items"].as_array().unwrap().len(), 2);
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_that_would_revoke_too_much_waits_for_an_admin() {
    let o = open_campaign(|d| d.no_response = NoResponse::Revoke).await;
    decide_all_of(&o, "bob@example.com", DecisionOutcome::Approve).await;
    o.app.tick_at(o.due).await;
    o.app.tick_at(o.due + Duration::hours(1)).await;

    // Held, once, with nothing revoked.
    let held = events_of(&o, EventKind::CampaignCloseHeld).await;
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["would_revoke"], 12);
    assert!(events_of(&o, EventKind::CampaignClosed).await.is_empty());
    assert!(no_response_outcomes(&o).await.is_empty());

    // The dry run lists exactly what would go; a close without confirmation is refused.
    let (campaign, config) = (o.campaign.clone(), o.app.config.clone());
    let (preview, unconfirmed, confirmed) = o
        .app
        .blocking(move |db, clock, _| {
            let mut conn = db.conn().unwrap();
            let now = attest::clock::Clock::now(clock);
            let c = attest::campaigns::model::campaign(&mut conn, &campaign).unwrap();
            let rules = CloseRules::of(&config, &c);
            let preview = preview_close(&mut conn, &campaign, &rules).unwrap();
            let unconfirmed = close_campaign(&mut conn, now, &campaign, &rules, "admin");
            let confirmed = close_campaign(&mut conn, now, &campaign, &rules.confirmed(), "admin");
            (preview, unconfirmed, confirmed)
        })
        .await;
    assert!(preview.needs_confirmation);
    assert_eq!(preview.would_revoke, 12);
    assert_eq!(preview.would_revoke_listed.len(), 12);
    // erin, frank and grace are reviewed by bob only, who approved them.
    assert!(
        !preview
            .would_revoke_listed
            .iter()
            .any(|(person, _)| ["erin", "frank", "grace"].contains(&person.as_str())),
        "{:?}",
        preview.would_revoke_listed
    );
    let refusal = unconfirmed.unwrap_err().to_string();
    assert!(refusal.contains("--confirm-revocations"), "{refusal}");
    assert_eq!(confirmed.unwrap().no_response, 12);
    assert_eq!(
        no_response_outcomes(&o).await,
        vec![("revoke".to_string(), 12)]
    );
    let closed = events_of(&o, EventKind::CampaignClosed).await;
    assert_eq!(closed[0]["no_response"]["confirmed_above_share"], true);
    o.app.stop().await;
}

/// An admin's confirmed close whose revocations stay within the share records that it did
/// not go above it: `confirmed_above_share` says what happened, not what was typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_close_within_the_share_is_not_recorded_as_above_it() {
    let o = open_campaign(|d| d.no_response = NoResponse::Revoke).await;
    for reviewer in ["bob@example.com", "carol@example.com", FALLBACK] {
        decide_all_of(&o, reviewer, DecisionOutcome::Approve).await;
    }
    let (campaign, config) = (o.campaign.clone(), o.app.config.clone());
    let summary = o
        .app
        .blocking(move |db, clock, _| {
            let mut conn = db.conn().unwrap();
            let now = attest::clock::Clock::now(clock);
            let c = attest::campaigns::model::campaign(&mut conn, &campaign).unwrap();
            let rules = CloseRules::of(&config, &c).confirmed();
            close_campaign(&mut conn, now, &campaign, &rules, "admin").unwrap()
        })
        .await;
    assert_eq!(summary.no_response, 2, "alice's 2 of 18 are revoked");
    let closed = events_of(&o, EventKind::CampaignClosed).await;
    assert_eq!(closed[0]["no_response"]["outcome"], "revoke");
    assert_eq!(closed[0]["no_response"]["confirmed_above_share"], false);
    o.app.stop().await;
}

/// A reviewer the directory now shows locked, whose undecided items have not moved on yet,
/// gets no reminder: a reminder would mint a working link for someone who left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reminders_skip_a_reviewer_the_directory_shows_gone() {
    let o = open_campaign(|_| {}).await;
    lock_out_bob(&o);
    o.app.sync().await.unwrap();
    // The reminder runs before the reviewer check has moved bob's items.
    let (config, campaign, at) = (
        o.app.config.clone(),
        o.campaign.clone(),
        o.due - Duration::days(7),
    );
    o.app
        .blocking(move |db, _, _| {
            let task = attest::jobs::follow_up::FollowUp {
                campaign,
                days_before_due: Some(7),
                stage: None,
            };
            attest::jobs::follow_up::remind(&mut db.conn().unwrap(), &config, at, &task).unwrap();
        })
        .await;
    assert_eq!(
        pending_of(&o, "bob@example.com").await.len(),
        6,
        "still his"
    );
    let sent = mail_of_kind(&o, "reminder").await;
    let reminded = recipients(&sent);
    assert!(!reminded.contains(&"bob@example.com"), "{reminded:?}");
    assert_eq!(
        reminded.len(),
        3,
        "everyone else with undecided items: {reminded:?}"
    );
    o.app.stop().await;
}

/// Locks bob out in the test's directory file (the next sync sees it).
fn lock_out_bob(o: &Open) {
    let text = std::fs::read_to_string(&o.ldif).unwrap();
    let locked = text.replacen(
        "employeeNumber: 1002\n",
        "employeeNumber: 1002\npwdAccountLockedTime: 000001010000Z\n",
        1,
    );
    assert_ne!(locked, text);
    std::fs::write(&o.ldif, locked).unwrap();
}
