//! The outbox under SMTP faults (TESTPLAN F1): while the mail server is down, digests wait
//! with backoff and nothing is lost; once it is back, exactly one digest per reviewer arrives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use attest::notify::outbox::{STATE_PENDING, STATE_SENT, messages_of_campaign};

use crate::common::{self, TestApp};
use crate::support::maildev::Maildev;
use crate::support::ports;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_waits_while_smtp_is_down_then_goes_exactly_once() {
    let dir = common::temp_dir();
    let smtp_port = ports::free_port();
    let mut config = common::config(
        &common::sqlite_url(dir.path()),
        common::ldif_source(&common::fixture()),
        Some(smtp_port),
        dir.path(),
    );
    config.mail.smtp.timeout_seconds = 5;
    // The background worker would retry on its own schedule; this test drives the outbox.
    config.mail.poll_interval_ms = 3_600_000;
    let app = TestApp::spawn(config).await;
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
