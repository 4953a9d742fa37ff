//! Revoking review links (TESTPLAN A3): an admin revokes a campaign's or one reviewer's links
//! from the command line and may re-send; a revoked link gets the same page as any invalid
//! link; a newer digest leaves older links working unless `links.revoke_superseded` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use attest::ledger::EventKind;
use attest::ledger::events::of_kind;
use attest::notify::outbox::enqueue_review_resend;
use attest::notify::revocation::revoke_campaign_links;

use crate::binary::{self, Running};
use crate::common::{self, TestApp, http_client, mails_on_disk, review_url};
use crate::support::wait_until;

async fn get(url: &str) -> (u16, String) {
    let response = http_client().get(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[track_caller]
fn stdout_of(output: std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The one review link mailed to `address` that is not among `known` (files are not ordered:
/// what is new is told by what was there before).
#[track_caller]
fn new_link_to(mail_dir: &std::path::Path, address: &str, known: &[&str]) -> String {
    let fresh: Vec<String> = mails_on_disk(mail_dir)
        .iter()
        .filter(|(to, _)| to == address)
        .map(|(_, text)| review_url(text))
        .filter(|link| !known.contains(&link.as_str()))
        .collect();
    assert_eq!(fresh.len(), 1, "new links to {address}: {fresh:?}");
    fresh.into_iter().next().unwrap()
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
    let bob = new_link_to(&mail_dir, "bob@example.com", &[]);
    let carol = new_link_to(&mail_dir, "carol@example.com", &[]);
    assert_eq!(get(&bob).await.0, 200);
    let (invalid_status, invalid_page) = get(&format!("{}/r/not-a-link", server.base_url)).await;
    assert_eq!(invalid_status, 401);

    let revoke_links = |options: &[&str]| {
        let mut args = vec!["campaign", "revoke-links", campaign_id.as_str()];
        args.extend_from_slice(options);
        binary::run(dir.path(), &config, &args)
    };
    let printed = stdout_of(revoke_links(&["--reviewer", "Bob@Example.com"]));
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
    let output = revoke_links(&["--reviewer", "x@example.com"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("x@example.com"), "{stderr}");
    assert_eq!(get(&carol).await.0, 200);

    // Revoke and re-send: bob gets a fifth mail whose new link works; the old one stays dead.
    let printed = stdout_of(revoke_links(&["--reviewer", "bob@example.com", "--resend"]));
    assert!(printed.contains("revoked 0 working link(s)"), "{printed}");
    assert!(printed.contains("queued 1 new digest(s)"), "{printed}");
    wait_until(
        "the re-sent digest",
        Duration::from_secs(30),
        || (mails_on_disk(&mail_dir).len() == 5).then_some(()),
        || server.stderr(),
    );
    let renewed = new_link_to(&mail_dir, "bob@example.com", &[&bob]);
    assert_eq!(get(&renewed).await.0, 200);
    assert_eq!(get(&bob).await.0, 401);

    // The whole campaign: every working link stops.
    let printed = stdout_of(revoke_links(&[]));
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
    campaign_id: String,
    bob: String,
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
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let campaign_id = app.start_campaign().await.campaign.id;
    let bob = app.reviewer_id(&campaign_id, "bob@example.com").await;
    let older = app
        .mint_link(&campaign_id, &bob, chrono::Duration::days(30))
        .await;
    app.clock.advance(chrono::Duration::minutes(1));
    while app.worker.drain_once().await.unwrap() > 0 {}
    let newer = new_link_to(&mail_dir, "bob@example.com", &[]);
    Reviewed {
        app,
        _dir: dir,
        campaign_id,
        bob,
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
        ..
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
        campaign_id,
        bob,
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
    let mail_dir = app.config.mail.file_dir.clone();
    app.blocking(move |db, clock, _| {
        let now = attest::clock::Clock::now(clock);
        attest::db::write_tx(&mut db.conn().unwrap(), |conn| {
            let mut events = attest::ledger::EventBatch::default();
            enqueue_review_resend(conn, now, &campaign_id, &bob, &mut events)?;
            events.append_all(conn, now, "test")
        })
        .unwrap();
    })
    .await;
    app.clock.advance(chrono::Duration::minutes(1));
    while app.worker.drain_once().await.unwrap() > 0 {}
    let latest = new_link_to(&mail_dir, "bob@example.com", &[&newer]);
    assert_eq!(get(&newer).await.0, 401);
    assert_eq!(get(&latest).await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_with_resend_needs_an_open_campaign_and_changes_nothing_otherwise() {
    let Reviewed {
        app,
        campaign_id,
        older,
        newer,
        _dir: _keep_dir,
        ..
    } = campaign_with_an_older_link(false).await;
    let (closed, refused) = app
        .blocking(move |db, clock, _| {
            let mut conn = db.conn().unwrap();
            let now = attest::clock::Clock::now(clock);
            let closed = attest::campaigns::close_campaign(
                &mut conn,
                now,
                &campaign_id,
                &attest::campaigns::CloseRules::default(),
                "test",
            );
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

/// Bob's id and a fresh link of his in `campaign_id`.
async fn bob_and_link(app: &TestApp, campaign_id: &str) -> (String, String) {
    let bob = app.reviewer_id(campaign_id, "bob@example.com").await;
    let link = app
        .mint_link(campaign_id, &bob, chrono::Duration::days(3))
        .await;
    (bob, link)
}

async fn revoke_bob(
    app: &TestApp,
    campaign_id: &str,
) -> attest::notify::revocation::RevocationSummary {
    let id = campaign_id.to_string();
    app.blocking(move |db, clock, _| {
        let now = attest::clock::Clock::now(clock);
        revoke_campaign_links(
            &mut db.conn().unwrap(),
            now,
            &id,
            Some("bob@example.com"),
            false,
            "test",
        )
        .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_opened_before_revocation_cannot_decide_after_it() {
    let dir = common::temp_dir();
    let config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let campaign_id = app.start_campaign().await.campaign.id;
    let (bob, link) = bob_and_link(&app, &campaign_id).await;
    let client = http_client();
    let page = client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let item = common::form_values(&page, "item")[0].clone();

    assert_eq!(revoke_bob(&app, &campaign_id).await.links, 1);
    let status = common::post_form(
        &client,
        format!("{link}/decide"),
        &[("csrf", &csrf), ("item", &item), ("outcome", "approve")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(app.count("decisions").await, 0);

    // A POST authenticated just before the revocation committed is checked again inside the
    // decision's own transaction.
    let jti_sha256 = common::link_jti_sha256(&link);
    let refused = app
        .blocking(move |db, clock, _| {
            let request = attest::decisions::DecisionRequest {
                campaign_id,
                reviewer_id: bob,
                item_id: item,
                outcome: attest::decisions::DecisionOutcome::Approve,
                comment: None,
                approved_until: None,
            };
            let auth = attest::decisions::AuthContext {
                method: "email_link".into(),
                link_jti_sha256: Some(jti_sha256),
                session_tag: None,
                user_agent: None,
                ip: None,
                sso_subject_tag: None,
            };
            attest::decisions::record_decision(
                &mut db.conn().unwrap(),
                attest::clock::Clock::now(clock),
                &request,
                &auth,
            )
        })
        .await;
    assert_eq!(refused.unwrap_err().code(), "unauthorized");
    assert_eq!(app.count("decisions").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_cancels_mail_that_has_not_gone_yet() {
    use attest::notify::outbox::{STATE_CANCELLED, messages_of_campaign};

    let dir = common::temp_dir();
    let smtp = crate::support::smtp_refuser::SmtpRefuser::start("451 4.3.0 try again later");
    let mut config =
        common::fixture_config(&common::sqlite_url(dir.path()), Some(smtp.port), dir.path());
    config.mail.smtp.timeout_seconds = 5;
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let campaign_id = app.start_campaign().await.campaign.id;
    // The first attempt fails: each digest waits for its retry, its minted link unsent.
    while app.worker.drain_once().await.unwrap() > 0 {}
    bob_and_link(&app, &campaign_id).await;
    let links_before = app.count("link_tokens").await;

    let summary = revoke_bob(&app, &campaign_id).await;
    assert_eq!(summary.digests_cancelled, 1);
    assert_eq!(summary.links, 2, "the failed attempt's link and the test's");
    app.clock.advance(chrono::Duration::hours(7));
    while app.worker.drain_once().await.unwrap() > 0 {}
    assert_eq!(
        app.count("link_tokens").await,
        links_before + 3,
        "the other three digests were retried with new links; bob's was not"
    );
    let id = campaign_id.clone();
    let messages = app
        .blocking(move |db, _, _| messages_of_campaign(&mut db.conn().unwrap(), &id).unwrap())
        .await;
    let bobs: Vec<_> = messages
        .iter()
        .filter(|m| m.recipient == "bob@example.com")
        .collect();
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0].state, STATE_CANCELLED);
    assert_eq!(bobs[0].attempts, 1);
    let cancelled = app
        .blocking(|db, _, _| of_kind(&mut db.conn().unwrap(), EventKind::MailCancelled).unwrap())
        .await;
    assert_eq!(cancelled.len(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_cancelled_while_on_its_way_is_still_recorded_as_sent() {
    use attest::notify::outbox::{STATE_SENT, claim_due, mark_sent};

    let dir = common::temp_dir();
    let config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let campaign_id = app.start_campaign().await.campaign.id;
    bob_and_link(&app, &campaign_id).await;
    // What a worker does, with the admin's revocation landing while the mail is on the wire.
    let (recorded, state) = app
        .blocking(move |db, clock, _| {
            let now = attest::clock::Clock::now(clock);
            let mut conn = db.conn().unwrap();
            let claimed = claim_due(&mut conn, now, chrono::Duration::minutes(5), 10).unwrap();
            let bobs = claimed
                .into_iter()
                .find(|m| m.recipient == "bob@example.com")
                .unwrap();
            let summary = revoke_campaign_links(
                &mut conn,
                now,
                &campaign_id,
                Some("bob@example.com"),
                false,
                "test",
            )
            .unwrap();
            assert_eq!(summary.digests_cancelled, 1);
            let recorded = mark_sent(&mut conn, now, &bobs, "<id@attest>", None).unwrap();
            let state = outbox_state_of(&mut conn, &campaign_id, "bob@example.com");
            (recorded, state)
        })
        .await;
    assert!(recorded, "the send is recorded: the mail did go");
    assert_eq!(state, STATE_SENT);
    let sent = app
        .blocking(|db, _, _| of_kind(&mut db.conn().unwrap(), EventKind::MailSent).unwrap())
        .await;
    let payload: serde_json::Value = serde_json::from_str(&sent[0].payload).unwrap();
    assert_eq!(payload["cancelled_in_flight"], true);
    app.stop().await;
}

fn outbox_state_of(conn: &mut attest::db::DbConnection, campaign_id: &str, to: &str) -> String {
    attest::notify::outbox::messages_of_campaign(conn, campaign_id)
        .unwrap()
        .into_iter()
        .find(|m| m.recipient == to)
        .unwrap()
        .state
}
