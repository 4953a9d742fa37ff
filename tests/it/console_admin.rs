//! Admin pages of the console. Closing a campaign: an admin sees decisions over time (inline
//! SVG) and what closing now would do; a close that would revoke more than the definition
//! allows needs the confirmation box; the close is recorded as that staff member's. Sources:
//! each source's latest sync, "sync now" queued once and run by the scheduler's tick, and
//! "test connection", which reads a source and writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::config::NoResponse;

use crate::common::{self, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_closes_a_campaign_in_the_console_confirming_its_revocations() {
    let dir = common::temp_dir();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    config
        .campaigns
        .get_mut(common::DEFINITION)
        .unwrap()
        .no_response = NoResponse::Revoke;
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let (campaign, _) = crate::remediation_steps::revoke(&app, "dave", "vpn-users").await;

    let client = common::admin_client(&app).await;
    let url = format!("{}/console/campaigns/{campaign}", app.base_url);
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Decisions over time") && page.contains("<polyline"),
        "{page}"
    );
    assert!(page.contains("Accesses decided so far"), "{page}");
    assert!(page.contains("17 undecided accesses get"), "{page}");
    assert!(page.contains("name=\"confirm_revocations\""), "{page}");
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let close_url = format!("{url}/close");

    // Without the box: refused in words, nothing closed.
    let refused = client
        .post(&close_url)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 409);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("max_auto_revoke_share")
    );
    let closed_events = || async {
        app.blocking(|db, _, _| {
            attest::ledger::events::of_kind(
                &mut db.conn().unwrap(),
                attest::ledger::EventKind::CampaignClosed,
            )
            .unwrap()
        })
        .await
    };
    assert!(closed_events().await.is_empty());

    let closed = client
        .post(&close_url)
        .form(&[("csrf", csrf.as_str()), ("confirm_revocations", "yes")])
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status().as_u16(), 303);
    let location = closed.headers()["location"].to_str().unwrap().to_string();
    let page = client
        .get(format!("{}{location}", app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Campaign closed.") && !page.contains("/close\""),
        "{page}"
    );
    let events = closed_events().await;
    assert_eq!(events.len(), 1);
    assert!(events[0].actor.starts_with("staff:"), "{:?}", events[0]);
    let payload: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
    assert_eq!(payload["no_response"]["confirmed_above_share"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sees_each_sources_latest_sync_and_asks_for_another() {
    let dir = common::temp_dir();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    config.scheduler.enabled = true;
    // Only the asked-for sync runs at the tick (no scheduled opening syncs too).
    config
        .campaigns
        .get_mut(common::DEFINITION)
        .unwrap()
        .schedule = "manual".into();
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let client = common::admin_client(&app).await;
    let url = format!("{}/console/sources", app.base_url);
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains(">corp<") || page.contains("corp<br>"),
        "{page}"
    );
    assert!(page.contains("12 people, 4 groups, 18 accesses"), "{page}");
    assert!(page.contains("/console/sources/corp/sync"), "{page}");
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let ask = || async {
        client
            .post(format!("{url}/corp/sync"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(ask().await, 303);
    assert_eq!(ask().await, 303);
    assert_eq!(
        app.count("jobs").await,
        1,
        "one sync waits, however often asked"
    );
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("sync queued"), "{page}");

    let runs = app.count("sync_runs").await;
    let now = attest::clock::Clock::now(app.clock.as_ref());
    app.tick_at(now + chrono::Duration::minutes(1)).await;
    assert_eq!(app.count("sync_runs").await, runs + 1);
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        !page.contains("sync queued") && page.contains("Sync now"),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_issues_and_revokes_an_auditors_api_token_in_the_console() {
    let dir = common::temp_dir();
    let config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    let client = common::admin_client(&app).await;
    let url = format!("{}/console/staff", app.base_url);
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("it-admin@example.com") && page.contains("No API token yet"));
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let issued = client
        .post(format!("{}/console/tokens", app.base_url))
        .form(&[
            ("csrf", csrf.as_str()),
            ("name", "FY2026 SOC 2 audit"),
            ("email", "auditor@audit.example"),
            ("role", "auditor"),
            ("days", "30"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(issued.headers()["cache-control"], "no-store");
    let page = issued.text().await.unwrap();
    let at = page.find("id=\"issued-secret\" readonly value=\"").unwrap()
        + "id=\"issued-secret\" readonly value=\"".len();
    let secret = page[at..at + page[at..].find('"').unwrap()].to_string();
    assert!(page.contains("auditor@audit.example") && page.contains("FY2026 SOC 2 audit"));

    let api = || async {
        common::http_client()
            .get(format!("{}/api/v1/campaigns", app.base_url))
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(api().await, 200);
    let token_id = app
        .blocking(|db, _, _| {
            attest::auth::list_tokens(&mut db.conn().unwrap()).unwrap()[0]
                .id
                .clone()
        })
        .await;
    let revoked = client
        .post(format!("{}/console/tokens/{token_id}/revoke", app.base_url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status().as_u16(), 303);
    assert_eq!(api().await, 401);
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("revoked "), "{page}");
    assert!(!page.contains(&secret), "the secret is shown once");
}

/// "Test connection" reads a source as a sync would and writes nothing: the page says what
/// it found, or why the source could not be read (auditors are refused it in
/// `staff_console`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_tests_a_source_connection_without_syncing() {
    let dir = common::temp_dir();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    let missing = dir.path().join("gone.ldif");
    config
        .sources
        .insert("broken".into(), common::ldif_source(&missing));
    let app = TestApp::spawn_without_background_workers(config).await;
    let client = common::admin_client(&app).await;
    let url = format!("{}/console/sources", app.base_url);
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/console/sources/corp/test"), "{page}");
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let test = |name: &'static str, csrf: String| {
        let client = client.clone();
        let url = format!("{url}/{name}/test");
        async move {
            let response = client
                .post(url)
                .form(&[("csrf", csrf)])
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, page) = test("corp", csrf.clone()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("12 people"), "{page}");
    assert!(page.contains("18 accesses"), "{page}");
    assert!(page.contains("this was not a sync"), "{page}");
    assert_eq!(app.count("sync_runs").await, 0, "nothing written");

    let (status, page) = test("broken", csrf.clone()).await;
    assert_eq!(status, 502, "{page}");
    assert!(
        page.contains("could not be read") && page.contains("gone.ldif"),
        "{page}"
    );
    // Without the session's CSRF token: refused.
    let (status, _) = test("corp", "forged".into()).await;
    assert_eq!(status, 403);
}
