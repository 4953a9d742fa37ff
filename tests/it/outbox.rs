//! The outbox under SMTP faults (TESTPLAN F1, F2): while the mail server is down, digests wait
//! with backoff and nothing is lost; once it is back, exactly one digest per reviewer arrives.
//! A 4xx answer is retried later; a 5xx answer dead-letters the digest with its error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use attest::notify::outbox::{STATE_DEAD, STATE_PENDING, STATE_SENT, messages_of_campaign};

use crate::common::{self, TestApp};
use crate::support::maildev::Maildev;
use crate::support::ports;
use crate::support::smtp_refuser::SmtpRefuser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_while_smtp_is_down_then_goes_exactly_once() {
    let dir = common::temp_dir();
    let smtp_port = ports::free_port();
    let mut config =
        common::fixture_config(&common::sqlite_url(dir.path()), Some(smtp_port), dir.path());
    config.mail.smtp.timeout_seconds = 5;
    // This test drives the outbox; no background worker claims rows behind its back.
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let started = app.start_campaign().await;
    let campaign_id = started.campaign.id.clone();

    // Down: every digest is attempted once and rescheduled, none is lost or dead.
    while app.worker.drain_once().await.unwrap() > 0 {}
    let waiting = outbox_of(&app, &campaign_id).await;
    assert_eq!(waiting.len(), 4);
    for message in &waiting {
        assert_eq!(message.state, STATE_PENDING);
        assert_eq!(message.attempts, 1);
        assert!(message.last_error.is_some());
        assert!(attest::db::time::from_db(message.next_attempt_at) > common::start_time());
    }
    assert_eq!(
        app.worker.drain_once().await.unwrap(),
        0,
        "nothing is due before its backoff"
    );

    // Back: after the backoff, each digest goes once.
    let maildev = Maildev::start_on(smtp_port);
    app.clock.advance(chrono::Duration::minutes(5));
    while app.worker.drain_once().await.unwrap() > 0 {}
    let delivered = maildev.wait_for_messages(4, Duration::from_secs(20));
    assert_eq!(delivered.len(), 4);
    let sent = outbox_of(&app, &campaign_id).await;
    assert!(
        sent.iter()
            .all(|m| m.state == STATE_SENT && m.attempts == 2),
        "{sent:?}"
    );
    assert_eq!(app.worker.drain_once().await.unwrap(), 0);
    assert_eq!(maildev.messages().len(), 4, "no duplicates");
    app.stop().await;
}

async fn outbox_of(app: &TestApp, campaign_id: &str) -> Vec<attest::notify::outbox::OutboxMessage> {
    let id = campaign_id.to_string();
    app.blocking(move |db, _, _| messages_of_campaign(&mut db.conn().unwrap(), &id).unwrap())
        .await
}

async fn campaign_against_smtp(port: u16, dir: &std::path::Path) -> (TestApp, String) {
    let mut config = common::fixture_config(&common::sqlite_url(dir), Some(port), dir);
    config.mail.smtp.timeout_seconds = 5;
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let id = app.start_campaign().await.campaign.id;
    (app, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_smtp_refusal_is_retried_later() {
    let dir = common::temp_dir();
    let server = SmtpRefuser::start("451 4.3.0 try again later");
    let (app, campaign_id) = campaign_against_smtp(server.port, dir.path()).await;
    while app.worker.drain_once().await.unwrap() > 0 {}
    let messages = outbox_of(&app, &campaign_id).await;
    assert_eq!(server.recipients_refused(), 4);
    assert!(
        messages
            .iter()
            .all(|m| m.state == STATE_PENDING && m.attempts == 1),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m.last_error.as_deref().is_some_and(|e| e.contains("451")))
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_smtp_refusal_dead_letters_with_the_error() {
    let dir = common::temp_dir();
    let server = SmtpRefuser::start("550 5.1.1 mailbox unavailable");
    let (app, campaign_id) = campaign_against_smtp(server.port, dir.path()).await;
    while app.worker.drain_once().await.unwrap() > 0 {}
    let messages = outbox_of(&app, &campaign_id).await;
    assert!(
        messages
            .iter()
            .all(|m| m.state == STATE_DEAD && m.attempts == 1),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m.last_error.as_deref().is_some_and(|e| e.contains("550")))
    );
    // Dead letters are final: later drains do not try them again.
    app.clock.advance(chrono::Duration::days(1));
    assert_eq!(app.worker.drain_once().await.unwrap(), 0);
    assert_eq!(server.recipients_refused(), 4);
    let dead_events = app
        .blocking(|db, _, _| {
            attest::ledger::events::of_kind(
                &mut db.conn().unwrap(),
                attest::ledger::EventKind::MailDeadLettered,
            )
            .unwrap()
            .len()
        })
        .await;
    assert_eq!(dead_events, 4, "each dead letter is on the evidence log");

    // An admin sees them in the console with the server's answer, and sends one again.
    let client = common::admin_client(&app).await;
    let page = client
        .get(format!("{}/console/outbox?state=dead", app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("(550): 5.1.1 mailbox unavailable"), "{page}");
    assert_eq!(page.matches("Send again<").count(), 4, "{page}");
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let resend = client
        .post(format!(
            "{}/console/outbox/{}/resend",
            app.base_url, messages[0].id
        ))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resend.status().as_u16(), 303);
    let now = outbox_of(&app, &campaign_id).await;
    assert_eq!(
        now.len(),
        5,
        "a new message; the dead one stays as it ended"
    );
    let again = now.iter().find(|m| m.state == "pending").unwrap();
    assert_eq!(again.reviewer_id, messages[0].reviewer_id);
    assert_eq!(now.iter().filter(|m| m.state == STATE_DEAD).count(), 4);
    let sent_again = client
        .post(format!(
            "{}/console/outbox/{}/resend",
            app.base_url, again.id
        ))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(sent_again.status().as_u16(), 409, "only dead-lettered mail");
    // A second click on the same dead letter queues nothing more.
    let twice = client
        .post(format!(
            "{}/console/outbox/{}/resend",
            app.base_url, messages[0].id
        ))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(twice.status().as_u16(), 409);
    assert_eq!(outbox_of(&app, &campaign_id).await.len(), 5);
    let queued = app
        .blocking(|db, _, _| {
            attest::ledger::events::of_kind(
                &mut db.conn().unwrap(),
                attest::ledger::EventKind::MailQueued,
            )
            .unwrap()
        })
        .await;
    let last = queued.last().unwrap();
    assert!(last.actor.starts_with("staff:"), "{last:?}");
    app.stop().await;
}
