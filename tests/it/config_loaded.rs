//! Each start of the service records the settings that govern reviews (`config.loaded`): a
//! fingerprint, whether it differs from the previous start's, and the settings themselves
//! without any secret, so that the evidence shows which rules were in force and when they
//! changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::ledger::EventKind;

use crate::common::{self, DEFINITION, TestApp};

async fn loaded(app: &TestApp) -> Vec<serde_json::Value> {
    app.blocking(|db, _, _| {
        attest::ledger::events::of_kind(&mut db.conn().unwrap(), EventKind::ConfigLoaded)
            .unwrap()
            .into_iter()
            .map(|e| serde_json::from_str(&e.payload).unwrap())
            .collect()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_start_records_the_governing_settings_and_whether_they_changed() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(dir.path());
    let mut config = common::config(
        &url,
        common::ldif_source(&common::fixture()),
        None,
        dir.path(),
    );
    config.links.signing_key = Some(secrecy::SecretString::from(
        "a-secret-that-must-not-be-recorded-0123456789",
    ));
    let first = TestApp::spawn_without_background_workers(config.clone()).await;
    first.stop().await;
    let again = TestApp::spawn_without_background_workers(config.clone()).await;
    again.stop().await;
    config.campaigns.get_mut(DEFINITION).unwrap().duration_days += 7;
    let changed = TestApp::spawn_without_background_workers(config).await;
    let events = loaded(&changed).await;
    changed.stop().await;
    assert_eq!(events.len(), 3);
    let flags: Vec<bool> = events
        .iter()
        .map(|e| e["changed"].as_bool().unwrap())
        .collect();
    assert_eq!(flags, [true, false, true]);
    assert_eq!(events[0]["fingerprint"], events[1]["fingerprint"]);
    assert_ne!(events[1]["fingerprint"], events[2]["fingerprint"]);
    let settings = &events[2]["settings"];
    assert!(settings["campaigns"][DEFINITION]["duration_days"].is_number());
    assert_eq!(settings["sources"][common::SOURCE]["kind"], "ldif");
    let text = events[2].to_string();
    assert!(
        !text.contains("a-secret-that-must-not-be-recorded"),
        "{text}"
    );
    assert!(
        !text.contains(dir.path().to_str().unwrap()),
        "no file path: {text}"
    );
}
