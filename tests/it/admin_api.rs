//! The API's write side with an admin's token: open the current period's campaign of a
//! definition (once per period), close a campaign (refused above the revocation share until
//! confirmed, refused twice), and queue a sync that the scheduler's tick then runs. An
//! auditor's token is refused each action with 403 and changes nothing; no token gets 401.
//! Each action is recorded as the token's; the sync queue also on PostgreSQL. One campaign
//! generates at a time: a second opening meanwhile is told to retry.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::auth::{NewToken, Role, issue};
use attest::config::NoResponse;
use attest::ledger::EventKind;
use secrecy::ExposeSecret;

use crate::common::{self, TestApp, http_client};
use crate::open_review::open_campaign;
use crate::support::postgres::{self, PgDatabase};

/// The app on the fixture directory, not synced, its campaign opened only when asked, with
/// the scheduler on or off (its workers never run by themselves: the test ticks).
async fn app_on_fixture(
    scheduler: bool,
    postgres: Option<&PgDatabase>,
) -> (tempfile::TempDir, TestApp) {
    let dir = common::temp_dir();
    let url = postgres.map_or_else(|| common::sqlite_url(dir.path()), |db| db.url.clone());
    let mut config = common::fixture_config(&url, None, dir.path());
    let definition = config.campaigns.get_mut(common::DEFINITION).unwrap();
    definition.schedule = "manual".into();
    config.scheduler.enabled = scheduler;
    (dir, TestApp::spawn_without_background_workers(config).await)
}

/// A token of `role` (id, secret).
async fn token(app: &TestApp, role: Role) -> (String, String) {
    let email = format!("{}@example.com", role.as_str());
    app.blocking(move |db, clock, _| {
        let request = NewToken {
            name: "automation",
            role,
            email: &email,
            days: 30,
        };
        let now = attest::clock::Clock::now(clock);
        let issued = issue(&mut db.conn().unwrap(), now, &request, "test").unwrap();
        (issued.id, issued.secret.expose_secret().to_string())
    })
    .await
}

/// POSTs `body` (none: empty) to `path` with `secret`; returns the status and the JSON answer.
async fn post(
    app: &TestApp,
    path: &str,
    secret: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut request = http_client().post(format!("{}{path}", app.base_url));
    if let Some(secret) = secret {
        request = request.bearer_auth(secret);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The actors of the events of `kind`.
async fn actors(app: &TestApp, kind: EventKind) -> Vec<String> {
    app.blocking(move |db, _, _| {
        attest::ledger::events::of_kind(&mut db.conn().unwrap(), kind)
            .unwrap()
            .into_iter()
            .map(|e| e.actor)
            .collect()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_closes_a_campaign_confirming_revocations_above_the_share() {
    let o = open_campaign(|definition| {
        definition.no_response = NoResponse::Revoke;
        definition.max_auto_revoke_share = 0.5;
    })
    .await;
    let (_, auditor) = token(&o.app, Role::Auditor).await;
    let (admin_id, admin) = token(&o.app, Role::Admin).await;
    let close = format!("/api/v1/campaigns/{}/close", o.campaign);

    let (status, body) = post(&o.app, &close, None, None).await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthorized")));
    let (status, body) = post(&o.app, &close, Some(&auditor), None).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    // Nothing decided: closing would revoke all 18 accesses, above half.
    let (status, body) = post(&o.app, &close, Some(&admin), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("would revoke 18 of 18"),
        "{body}"
    );
    // The message says how to confirm through the API, not only on the command line.
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(r#"{"confirm_revocations": true}"#),
        "{body}"
    );
    let (status, body) = post(
        &o.app,
        &close,
        Some(&admin),
        Some(serde_json::json!({"confirm_revocations": "yes"})),
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (400, Some("bad_request")));
    assert!(actors(&o.app, EventKind::CampaignClosed).await.is_empty());

    let (status, body) = post(
        &o.app,
        &close,
        Some(&admin),
        Some(serde_json::json!({"confirm_revocations": true})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], o.campaign.as_str());
    assert_eq!(body["state"], "closed");
    assert_eq!(
        (body["items"].as_i64(), body["no_response"].as_i64()),
        (Some(18), Some(18))
    );
    assert_eq!(
        actors(&o.app, EventKind::CampaignClosed).await,
        vec![format!("api_token:{admin_id}")]
    );
    let (status, body) = post(&o.app, &close, Some(&admin), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let unknown = "/api/v1/campaigns/0190f0a0-0000-7000-8000-000000000000/close";
    assert_eq!(post(&o.app, unknown, Some(&admin), None).await.0, 404);
    assert_eq!(
        post(&o.app, "/api/v1/campaigns/x/close", Some(&admin), None)
            .await
            .0,
        404
    );
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_opens_the_periods_campaign_once() {
    let (_dir, app) = app_on_fixture(false, None).await;
    let (_, auditor) = token(&app, Role::Auditor).await;
    let (admin_id, admin) = token(&app, Role::Admin).await;
    let open = format!("/api/v1/definitions/{}/campaigns", common::DEFINITION);

    // Before any sync there is nothing to review.
    let (status, body) = post(&app, &open, Some(&admin), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("no snapshot"),
        "{body}"
    );
    app.sync().await.unwrap();
    let (status, _) = post(&app, &open, Some(&auditor), None).await;
    assert_eq!(status, 403);
    assert_eq!(post(&app, &open, None, None).await.0, 401);
    assert_eq!(app.count("campaigns").await, 0, "an auditor opens nothing");

    let (status, opened) = post(&app, &open, Some(&admin), None).await;
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["definition"], common::DEFINITION);
    assert_eq!(opened["items"], 18);
    let listed: serde_json::Value = http_client()
        .get(format!(
            "{}{}",
            app.base_url,
            opened["campaigns"].as_str().unwrap()
        ))
        .bearer_auth(&auditor)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["campaigns"][0]["id"], opened["id"]);
    assert_eq!(
        actors(&app, EventKind::CampaignOpened).await,
        vec![format!("api_token:{admin_id}")]
    );
    let (status, body) = post(&app, &open, Some(&admin), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("already exists"),
        "{body}"
    );
    assert_eq!(app.count("campaigns").await, 1);
    let (status, body) = post(
        &app,
        "/api/v1/definitions/nope/campaigns",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_queues_one_sync_that_the_scheduler_runs() {
    let (_dir, app) = app_on_fixture(true, None).await;
    let (_, auditor) = token(&app, Role::Auditor).await;
    let (admin_id, admin) = token(&app, Role::Admin).await;

    assert_eq!(
        post(&app, "/api/v1/sources/corp/sync", None, None).await.0,
        401
    );
    assert_eq!(
        post(&app, "/api/v1/sources/corp/sync", Some(&auditor), None)
            .await
            .0,
        403
    );
    assert_eq!(app.count("jobs").await, 0);
    queue_twice_and_run(&app, &admin_id, &admin).await;
    assert_eq!(
        post(&app, "/api/v1/sources/nope/sync", Some(&admin), None)
            .await
            .0,
        404
    );

    // Where no scheduler runs, a queued sync would wait forever: refused.
    let (_dir, app) = app_on_fixture(false, None).await;
    let (_, admin) = token(&app, Role::Admin).await;
    let (status, body) = post(&app, "/api/v1/sources/corp/sync", Some(&admin), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("attest sync corp"),
        "{body}"
    );
    assert_eq!(app.count("jobs").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_queues_one_sync_on_postgres() {
    let database = postgres::database();
    let (_dir, app) = app_on_fixture(true, Some(&database)).await;
    let (admin_id, admin) = token(&app, Role::Admin).await;
    queue_twice_and_run(&app, &admin_id, &admin).await;
}

/// Asks twice for a sync of `corp` with the admin token: one job waits; the scheduler's tick
/// runs it as the token's; asked again after, another is queued.
async fn queue_twice_and_run(app: &TestApp, admin_id: &str, admin: &str) {
    let runs = app.count("sync_runs").await;
    let (status, body) = post(app, "/api/v1/sources/corp/sync", Some(admin), None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["source"].as_str(), body["queued"].as_bool()),
        (Some("corp"), Some(true))
    );
    let (status, body) = post(app, "/api/v1/sources/corp/sync", Some(admin), None).await;
    assert_eq!(
        (status, body["queued"].as_bool()),
        (202, Some(false)),
        "one waits"
    );
    assert_eq!(app.count("jobs").await, 1);

    let now = attest::clock::Clock::now(app.clock.as_ref());
    app.tick_at(now + chrono::Duration::minutes(1)).await;
    assert_eq!(app.count("sync_runs").await, runs + 1);
    assert_eq!(
        actors(app, EventKind::SyncStarted).await,
        vec![format!("api_token:{admin_id}")],
        "the sync is recorded as the token's"
    );

    let (status, body) = post(app, "/api/v1/sources/corp/sync", Some(admin), None).await;
    assert_eq!(
        (status, body["queued"].as_bool()),
        (202, Some(true)),
        "{body}"
    );
    assert_eq!(app.count("jobs").await, 2);
}

/// Two openings at once: one generates and the other is told to come back (503 with
/// Retry-After) instead of holding a second blocking thread and connection. The test holds
/// SQLite's write lock so that whichever opening got the slot waits inside its generation
/// until the other has been answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_opening_while_one_generates_is_told_to_retry() {
    use diesel::Connection as _;
    use diesel::connection::SimpleConnection as _;

    let dir = common::temp_dir();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    config
        .campaigns
        .get_mut(common::DEFINITION)
        .unwrap()
        .schedule = "manual".into();
    // The generating opening waits for the test's write lock however slow the machine is.
    config.database.busy_timeout_ms = 120_000;
    let app = TestApp::spawn_without_background_workers(config).await;
    let (_, admin) = token(&app, Role::Admin).await;
    app.sync().await.unwrap();
    let open = format!("/api/v1/definitions/{}/campaigns", common::DEFINITION);

    let mut writer =
        diesel::SqliteConnection::establish(&dir.path().join("attest.db").to_string_lossy())
            .unwrap();
    writer.batch_execute("BEGIN IMMEDIATE").unwrap();
    let app = std::sync::Arc::new(app);
    let opening = |app: std::sync::Arc<TestApp>, secret: String, path: String| {
        tokio::spawn(async move {
            let response = http_client()
                .post(format!("{}{path}", app.base_url))
                .bearer_auth(secret)
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().get("retry-after").cloned();
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, retry_after, body)
        })
    };
    let mut first = opening(app.clone(), admin.clone(), open.clone());
    let mut second = opening(app.clone(), admin.clone(), open.clone());
    // The opening without the slot is answered while the other waits for the write lock.
    let (told_to_retry, generating) = tokio::select! {
        answer = &mut first => (answer.unwrap(), second),
        answer = &mut second => (answer.unwrap(), first),
    };
    writer.batch_execute("ROLLBACK").unwrap();
    let (status, retry_after, body) = told_to_retry;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("busy")),
        "{body}"
    );
    assert_eq!(retry_after.unwrap(), "30");
    let (status, _, opened) = generating.await.unwrap();
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["items"], 18);
    assert_eq!(app.count("campaigns").await, 1);
    // The slot is free again: a third opening is answered, not told to retry.
    let (status, body) = post(&app, &open, Some(&admin), None).await;
    assert_eq!(status, 409, "{body}");
}
