//! Revoking review links (TESTPLAN A3): an admin revokes a campaign's or one reviewer's links
//! from the command line and may re-send; a revoked link gets the same page as any invalid
//! link; a newer digest leaves older links working unless `links.revoke_superseded` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use attest::campaigns::model::reviewers_of;
use attest::evidence::EventKind;
use attest::evidence::events::of_kind;
use attest::notify::outbox::enqueue_review_resend;
use attest::notify::revocation::revoke_campaign_links;

use crate::binary::{self, Running};
use crate::common::{self, TestApp, http_client, mails_on_disk, review_url};
use crate::support::wait_until;

async fn get(url: &str) -> (u16, String) {
    let response = http_client().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// The review URL in the newest digest to `address` among the files in `mail_dir`.
fn newest_link_to(mail_dir: &std::path::Path, address: &str) -> String {
    let mails = mails_on_disk(mail_dir);
    let (_, text) = mails
        .iter()
        .rev()
        .find(|(to, _)| to == address)
        .unwrap_or_else(|| panic!("no digest to {address}"));
    review_url(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_revokes_a_reviewers_links_and_resends_from_the_command_line() {
    let dir = common::temp_dir();
    let config = binary::write_config(dir.path(), None, None, "");
    binary::run_ok(dir.path(), &config, &["sync"]);
    let opened = binary::run_ok(
        dir.path(),
        &config,
        &["campaign", "start", "access-review", "--now"],
    );
    let campaign_id = opened.split_whitespace().nth(2).unwrap().to_string();
    let config_arg = config.to_str().unwrap().to_string();
    let server = Running::start(dir.path(), &["--config", &config_arg, "serve"]);
    let mail_dir = dir.path().join("mail");
    wait_until(
        "four digests",
        Duration::from_secs(30),
        || (mails_on_disk(&mail_dir).len() == 4).then_some(()),
        || server.stderr(),
    );
    let bob = newest_link_to(&mail_dir, "bob@example.com");
    let carol = newest_link_to(&mail_dir, "carol@example.com");
    assert_eq!(get(&bob).await.0, 200);
    let (invalid_status, invalid_page) = get(&format!("{}/r/not-a-link", server.base_url)).await;
    assert_eq!(invalid_status, 401);

    let printed = binary::run_ok(
        dir.path(),
        &config,
        &[
            "campaign",
            "revoke-links",
            &campaign_id,
            "--reviewer",
            "Bob@Example.com",
        ],
    );
    assert!(
        printed.starts_with("revoked 1 working link(s) of 1 reviewer(s)"),
        "{printed}"
    );
    assert_eq!(
        get(&bob).await,
        (invalid_status, invalid_page.clone()),
        "a revoked link gets the same page as any invalid link"
    );
    assert_eq!(get(&carol).await.0, 200, "other reviewers are untouched");

    // Unknown reviewer: an error naming the address, nothing revoked.
    let output = binary::run(
        dir.path(),
        &config,
        &[
            "campaign",
            "revoke-links",
            &campaign_id,
            "--reviewer",
            "x@example.com",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("x@example.com"), "{stderr}");
    assert_eq!(get(&carol).await.0, 200);

    // Revoke and re-send: bob gets a fifth mail whose new link works; the old one stays dead.
    let printed = binary::run_ok(
        dir.path(),
        &config,
        &[
            "campaign",
            "revoke-links",
            &campaign_id,
            "--reviewer",
            "bob@example.com",
            "--resend",
        ],
    );
    assert!(printed.contains("revoked 0 working link(s)"), "{printed}");
    assert!(printed.contains("queued 1 new digest(s)"), "{printed}");
    wait_until(
        "the re-sent digest",
        Duration::from_secs(30),
        || (mails_on_disk(&mail_dir).len() == 5).then_some(()),
        || server.stderr(),
    );
    let renewed = newest_link_to(&mail_dir, "bob@example.com");
    assert_ne!(renewed, bob);
    assert_eq!(get(&renewed).await.0, 200);
    assert_eq!(get(&bob).await.0, 401);

    // The whole campaign: every working link stops.
    let printed = binary::run_ok(
        dir.path(),
        &config,
        &["campaign", "revoke-links", &campaign_id],
    );
    assert!(
        printed.starts_with("revoked 4 working link(s) of 4 reviewer(s)"),
        "{printed}"
    );
    for link in [&renewed, &carol] {
        assert_eq!(get(link).await.0, 401);
    }
}

/// A campaign on the fixture directory whose digests have been sent once (file mailer), and
/// an older link for bob minted before them, as an earlier mail would have carried.
struct Reviewed {
    app: TestApp,
    _dir: tempfile::TempDir,
    /// Bob's link from before the digest.
    older: String,
    /// Bob's link in the digest.
    newer: String,
}

async fn campaign_with_an_older_link(revoke_superseded: bool) -> Reviewed {
    let dir = common::temp_dir();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    config.links.revoke_superseded = revoke_superseded;
    let mail_dir = config.mail.file_dir.clone();
    let app = TestApp::spawn_without_outbox_worker(config).await;
    app.sync().await.unwrap();
    let started = app.start_campaign().await;
    let id = started.campaign.id.clone();
    let bob = app
        .blocking(move |db, _, _| {
            reviewers_of(&mut db.conn().unwrap(), &id)
                .unwrap()
                .into_iter()
                .find(|r| r.email == "bob@example.com")
                .unwrap()
                .id
        })
        .await;
    let older = app
        .mint_link(&started.campaign.id, &bob, chrono::Duration::days(30))
        .await;
    app.clock.advance(chrono::Duration::minutes(1));
    while app.worker.drain_once().await.unwrap() > 0 {}
    let newer = newest_link_to(&mail_dir, "bob@example.com");
    Reviewed {
        app,
        _dir: dir,
        older,
        newer,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_links_keep_working_after_a_newer_digest_by_default() {
    let Reviewed {
        app,
        older,
        newer,
        _dir: _keep_dir,
    } = campaign_with_an_older_link(false).await;
    assert_ne!(older, newer);
    assert_eq!(get(&older).await.0, 200, "people open older mails");
    assert_eq!(get(&newer).await.0, 200);
    let revoked = app
        .blocking(|db, _, _| of_kind(&mut db.conn().unwrap(), EventKind::LinkRevoked).unwrap())
        .await;
    assert!(revoked.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sent_digest_revokes_older_links_when_configured() {
    let Reviewed {
        app,
        older,
        newer,
        _dir: _keep_dir,
    } = campaign_with_an_older_link(true).await;
    assert_eq!(get(&older).await.0, 401);
    assert_eq!(get(&newer).await.0, 200);
    let revoked = app
        .blocking(|db, _, _| of_kind(&mut db.conn().unwrap(), EventKind::LinkRevoked).unwrap())
        .await;
    assert_eq!(revoked.len(), 1, "only bob had an older link");
    let payload: serde_json::Value = serde_json::from_str(&revoked[0].payload).unwrap();
    assert_eq!(payload["reason"], "superseded");

    // A re-sent digest supersedes the one before it, and the latest link still works.
    let campaign_id = app
        .blocking(|db, _, _| {
            attest::campaigns::list_campaigns(&mut db.conn().unwrap()).unwrap()[0]
                .campaign
                .id
                .clone()
        })
        .await;
    let mail_dir = app.config.mail.file_dir.clone();
    app.blocking({
        let id = campaign_id.clone();
        move |db, clock, _| {
            let mut conn = db.conn().unwrap();
            let bob = reviewers_of(&mut conn, &id)
                .unwrap()
                .into_iter()
                .find(|r| r.email == "bob@example.com")
                .unwrap();
            let now = attest::clock::Clock::now(clock);
            attest::db::write_tx(&mut conn, |conn| {
                enqueue_review_resend(conn, now, &id, &bob.id, "test")
            })
            .unwrap();
        }
    })
    .await;
    app.clock.advance(chrono::Duration::minutes(1));
    while app.worker.drain_once().await.unwrap() > 0 {}
    let latest = newest_link_to(&mail_dir, "bob@example.com");
    assert_ne!(latest, newer);
    assert_eq!(get(&newer).await.0, 401);
    assert_eq!(get(&latest).await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_with_resend_needs_an_open_campaign_and_changes_nothing_otherwise() {
    let Reviewed {
        app,
        older,
        newer,
        _dir: _keep_dir,
    } = campaign_with_an_older_link(false).await;
    let campaign_id = app
        .blocking(|db, _, _| {
            attest::campaigns::list_campaigns(&mut db.conn().unwrap()).unwrap()[0]
                .campaign
                .id
                .clone()
        })
        .await;
    let (closed, refused) = app
        .blocking(move |db, clock, _| {
            let mut conn = db.conn().unwrap();
            let now = attest::clock::Clock::now(clock);
            let closed = attest::campaigns::close_campaign(&mut conn, now, &campaign_id, "test");
            let refused = revoke_campaign_links(&mut conn, now, &campaign_id, None, true, "test");
            (closed, refused)
        })
        .await;
    closed.unwrap();
    assert_eq!(refused.unwrap_err().code(), "conflict");
    // Nothing was revoked: both links still open the (now read-only) review.
    assert_eq!(get(&older).await.0, 200);
    assert_eq!(get(&newer).await.0, 200);
    app.stop().await;
}
