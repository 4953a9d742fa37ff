//! Races on PostgreSQL, where several requests and instances really run at once: identical
//! decision POSTs record one decision and one event; simultaneous starts of the same
//! definition and period yield one campaign.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::model::reviewers_of;
use attest::campaigns::start_campaign;
use attest::ledger::EventKind;
use attest::ledger::events::of_kind;
use chrono::Duration;

use crate::common::{self, DEFINITION, TestApp, form_values, http_client, post_form};
use crate::support::postgres;

async fn postgres_app() -> (TestApp, postgres::PgDatabase, tempfile::TempDir) {
    let dir = common::temp_dir();
    let database = postgres::database();
    let config = common::fixture_config(&database.url, None, dir.path());
    let app = TestApp::spawn(config).await;
    app.sync().await.expect("LDIF sync");
    (app, database, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn identical_concurrent_decisions_record_once() {
    let (app, _db, _dir) = postgres_app().await;
    let started = app.start_campaign().await;
    let campaign_id = started.campaign.id.clone();
    let bob = app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            reviewers_of(&mut conn, &campaign_id)
                .unwrap()
                .into_iter()
                .find(|r| r.email == "bob@example.com")
                .unwrap()
        })
        .await;
    let url = app
        .mint_link(&started.campaign.id, &bob.id, Duration::days(1))
        .await;
    let client = http_client();
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    let csrf = form_values(&page, "csrf")[0].clone();
    let item = form_values(&page, "item")[0].clone();

    let mut posts = Vec::new();
    for _ in 0..8 {
        let (client, url, csrf, item) = (
            client.clone(),
            format!("{url}/decide"),
            csrf.clone(),
            item.clone(),
        );
        posts.push(tokio::spawn(async move {
            post_form(
                &client,
                url,
                &[("csrf", &csrf), ("item", &item), ("outcome", "approve")],
            )
            .await
        }));
    }
    for post in posts {
        assert_eq!(post.await.unwrap(), 303);
    }
    assert_eq!(app.count("decisions").await, 1);
    let events = app
        .blocking(|db, _, _| {
            of_kind(&mut db.conn().unwrap(), EventKind::DecisionRecorded)
                .unwrap()
                .len()
        })
        .await;
    assert_eq!(events, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_starts_of_one_period_open_one_campaign() {
    let (app, _db, _dir) = postgres_app().await;
    let results = app
        .blocking(|db, clock, config| {
            let barrier = std::sync::Barrier::new(4);
            std::thread::scope(|scope| {
                let starts: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            barrier.wait();
                            start_campaign(db, clock, config, DEFINITION, false, "test")
                        })
                    })
                    .collect();
                starts
                    .into_iter()
                    .map(|s| s.join().unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == "conflict"),
        "losers are told the campaign exists: {results:?}"
    );
    assert_eq!(app.count("campaigns").await, 1);
    assert_eq!(app.count("review_items").await, 18);
    assert_eq!(app.count("outbox").await, 4);
    app.stop().await;
}
