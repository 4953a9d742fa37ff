//! The evidence tables refuse to change, on both backends: the event log and the decision
//! history take inserts only. UPDATE and DELETE (and on PostgreSQL TRUNCATE, which row
//! triggers do not see) fail in the database itself, whoever issues them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::model::{items_of_reviewer, reviewers_of};
use attest::decisions::{AuthContext, DecisionOutcome, DecisionRequest, record_decision};
use diesel::RunQueryDsl;

use crate::common::{self, TestApp};
use crate::support::postgres;

/// An app with one open campaign and one recorded decision.
async fn app_with_a_decision(database_url: &str, dir: &std::path::Path) -> TestApp {
    let config = common::fixture_config(database_url, None, dir);
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let started = app.start_campaign().await;
    app.blocking(move |db, clock, _| {
        let mut conn = db.conn().unwrap();
        let bob = reviewers_of(&mut conn, &started.campaign.id)
            .unwrap()
            .into_iter()
            .find(|r| r.email == "bob@example.com")
            .unwrap();
        let item = items_of_reviewer(&mut conn, &bob.id).unwrap().remove(0);
        let request = DecisionRequest {
            campaign_id: started.campaign.id.clone(),
            reviewer_id: bob.id,
            item_id: item.id,
            outcome: DecisionOutcome::Revoke,
            comment: Some("left the team".into()),
            approved_until: None,
        };
        let auth = AuthContext {
            method: "test".into(),
            link_jti_sha256: None,
            session_tag: None,
            user_agent: None,
            ip: None,
            sso_subject_tag: None,
        };
        record_decision(&mut conn, attest::clock::Clock::now(clock), &request, &auth).unwrap();
    })
    .await;
    app
}

/// Runs each statement on its own; returns the ones the database accepted.
async fn accepted(app: &TestApp, statements: &'static [&'static str]) -> Vec<&'static str> {
    app.blocking(move |db, _, _| {
        let mut conn = db.conn().unwrap();
        statements
            .iter()
            .copied()
            .filter(|sql| diesel::sql_query(*sql).execute(&mut *conn).is_ok())
            .collect()
    })
    .await
}

const ROW_CHANGES: &[&str] = &[
    "UPDATE decisions SET outcome = 'approve'",
    "UPDATE decisions SET comment = NULL",
    "DELETE FROM decisions",
    "UPDATE events SET payload = '{}'",
    "DELETE FROM events",
];

async fn assert_evidence_is_append_only(app: &TestApp, extra: &'static [&'static str]) {
    let before = (app.count("decisions").await, app.count("events").await);
    assert_eq!(before.0, 1);
    assert_eq!(accepted(app, ROW_CHANGES).await, Vec::<&str>::new());
    assert_eq!(accepted(app, extra).await, Vec::<&str>::new());
    let outcome = app
        .blocking(|db, _, _| {
            use diesel::prelude::*;
            attest::db::schema::decisions::table
                .select(attest::db::schema::decisions::outcome)
                .first::<String>(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(outcome, "revoke");
    assert_eq!(
        (app.count("decisions").await, app.count("events").await),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_tables_refuse_changes_on_sqlite() {
    let dir = common::temp_dir();
    let app = app_with_a_decision(&common::sqlite_url(dir.path()), dir.path()).await;
    assert_evidence_is_append_only(&app, &[]).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_tables_refuse_changes_and_truncation_on_postgres() {
    let dir = common::temp_dir();
    let database = postgres::database();
    let app = app_with_a_decision(&database.url, dir.path()).await;
    assert_evidence_is_append_only(
        &app,
        &[
            "TRUNCATE events",
            "TRUNCATE decisions",
            "TRUNCATE review_items CASCADE",
            "TRUNCATE campaigns CASCADE",
        ],
    )
    .await;
    assert_eq!(app.count("review_items").await, 18);
    app.stop().await;
}
