//! Campaign generation rules on the fixture directory: scope by group, one campaign per
//! definition and period, and nobody reviewing their own access.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::model::{items_of_reviewer, reviewers_of};
use attest::campaigns::start_campaign;
use attest::config::Config;

use crate::common::{self, DEFINITION, TestApp};

async fn app_with(adjust: impl FnOnce(&mut Config)) -> (TestApp, tempfile::TempDir) {
    let dir = common::temp_dir();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    adjust(&mut config);
    let app = TestApp::spawn(config).await;
    app.sync().await.expect("LDIF sync");
    (app, dir)
}

fn definition(config: &mut Config) -> &mut attest::config::CampaignDefinition {
    config.campaigns.get_mut(DEFINITION).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_reviews_only_the_named_groups() {
    let (app, _dir) = app_with(|c| definition(c).groups = vec!["prod-admins".into()]).await;
    let started = app.start_campaign().await;
    assert_eq!(started.items, 4);
    let (app2, _dir2) = app_with(|c| definition(c).privileged_only = true).await;
    assert_eq!(
        app2.start_campaign().await.items,
        4,
        "only prod-admins is privileged"
    );
    app.stop().await;
    app2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_in_definition_is_refused_before_anything_is_written() {
    // A configuration error found before the first insert; a generation that fails part-way
    // is tested in generation_faults.rs.
    let (app, _dir) = app_with(|c| definition(c).groups = vec!["no-such-group".into()]).await;
    let error = app
        .blocking(|db, clock, config| start_campaign(db, clock, config, DEFINITION, true, "test"))
        .await
        .expect_err("unknown group");
    assert!(error.to_string().contains("no-such-group"), "{error}");
    assert_eq!(app.count("campaigns").await, 0);
    assert_eq!(app.count("review_items").await, 0);
    assert_eq!(app.count("outbox").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_campaign_per_definition_and_period() {
    let (app, _dir) = app_with(|_| {}).await;
    let first = app
        .blocking(|db, clock, config| start_campaign(db, clock, config, DEFINITION, false, "test"))
        .await
        .unwrap();
    let second = app
        .blocking(|db, clock, config| start_campaign(db, clock, config, DEFINITION, false, "test"))
        .await;
    assert_eq!(second.unwrap_err().code(), "conflict");
    assert_eq!(app.count("campaigns").await, 1);
    assert_eq!(app.count("review_items").await, first.items);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_access_is_rerouted_to_another_reviewer() {
    // alice (the CEO, no manager) is also the first fallback reviewer.
    let (app, _dir) = app_with(|c| {
        definition(c).fallback_reviewers =
            vec!["alice@example.com".into(), "security@example.com".into()];
    })
    .await;
    let started = app.start_campaign().await;
    let id = started.campaign.id.clone();
    let items = app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            let mut all = Vec::new();
            for reviewer in reviewers_of(&mut conn, &id).unwrap() {
                for item in items_of_reviewer(&mut conn, &reviewer.id).unwrap() {
                    all.push((reviewer.email.clone(), item.identity_login, item.routing));
                }
            }
            all
        })
        .await;
    assert!(
        items
            .iter()
            .all(|(reviewer, person, _)| reviewer != &format!("{person}@example.com"))
    );
    let alice_own = items
        .iter()
        .find(|(_, person, _)| person == "alice")
        .unwrap();
    assert_eq!(
        (alice_own.0.as_str(), alice_own.2.as_str()),
        ("security@example.com", "self_review_rerouted")
    );
    let oscar: Vec<_> = items
        .iter()
        .filter(|(_, person, _)| person == "oscar")
        .collect();
    assert_eq!(oscar.len(), 2);
    assert!(
        oscar
            .iter()
            .all(|(r, _, routing)| r == "alice@example.com" && routing == "fallback")
    );
    app.stop().await;
}
