//! Remediation without an LDAP write: a signed webhook delivered to a local receiver (the
//! signature checks out with the shared secret, a 500 is retried with the same idempotency
//! key, `when = "immediately"` delivers before the close), and a manual task mailed to IT,
//! closed with a ticket reference (on the command line and in the console) and proved by the
//! next sync of the edited directory; and an approval until a date that becomes a task when
//! the scheduler expires it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use attest::config::{Config, RemediationConfig, RemediationMode, RemediationWhen, SourceConfig};
use attest::remediation::webhook::signature;
use attest::remediation::{list, mark_done};
use secrecy::SecretString;

use crate::common::{self, TestApp};
use crate::remediation_steps::{
    close, decide_until, later, revoke, revoke_and_close, round, task_of,
};

const SECRET: &str = "webhook-secret-0123456789";

/// One request the receiver got: lower-cased header names, and the body.
type Received = (HashMap<String, String>, Vec<u8>);

/// A local HTTP receiver answering each request with the next status of `statuses` (then 200).
struct Receiver {
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(statuses: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hooks/attest", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        std::thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let request = read_request(&mut stream);
                log.lock().unwrap().push(request);
                let status = statuses.next().unwrap_or(200);
                let reply = format!(
                    "HTTP/1.1 {status} {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    if status == 200 { "OK" } else { "Error" }
                );
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Receiver { url, received }
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Received {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the headers ended");
        data.extend_from_slice(&chunk[..n]);
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..header_end]).to_string();
    let headers: HashMap<String, String> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .map_or(0, |l| l.parse().unwrap());
    while data.len() < header_end + length {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "connection closed before the body ended");
        data.extend_from_slice(&chunk[..n]);
    }
    (headers, data[header_end..header_end + length].to_vec())
}

/// The fixture directory copied to `dir` (so a test can edit it), as an LDIF source with
/// `remediation`.
fn config_with(dir: &Path, remediation: Option<RemediationConfig>) -> (Config, PathBuf) {
    let ldif = dir.join("directory.ldif");
    std::fs::copy(common::fixture(), &ldif).unwrap();
    let mut source = common::ldif_source(&ldif);
    if let SourceConfig::Ldif(c) = &mut source {
        c.remediation = remediation;
    }
    let config = common::config(&common::sqlite_url(dir), source, None, dir);
    (config, ldif)
}

/// Removes `person` from `group` in the LDIF file, as IT would in the directory.
fn remove_membership(ldif: &Path, person: &str, group: &str) {
    let person_dn = format!("uid={person},ou=people,dc=example,dc=com");
    let group_dn = format!("cn={group},ou=groups,dc=example,dc=com");
    let text = std::fs::read_to_string(ldif).unwrap();
    let edited: Vec<String> = text
        .split("\n\n")
        .map(|entry| {
            let dn = entry
                .lines()
                .find(|l| l.starts_with("dn: "))
                .unwrap_or_default();
            let drop = if dn == format!("dn: {group_dn}") {
                format!("member: {person_dn}")
            } else if dn == format!("dn: {person_dn}") {
                format!("memberOf: {group_dn}")
            } else {
                return entry.to_string();
            };
            entry
                .lines()
                .filter(|l| *l != drop)
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect();
    let edited = edited.join("\n\n");
    assert_ne!(edited, text, "nothing to remove");
    std::fs::write(ldif, edited).unwrap();
}

fn webhook(url: &str, when: RemediationWhen) -> RemediationConfig {
    RemediationConfig {
        mode: RemediationMode::Webhook,
        when,
        url: url.into(),
        allow_insecure_http: true,
        secret: Some(SecretString::from(SECRET)),
        retry_base_seconds: 30,
        ..RemediationConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_gets_a_signed_task_and_a_500_is_retried_with_the_same_key() {
    let dir = common::temp_dir();
    let receiver = Receiver::start(vec![500]);
    let (config, ldif) = config_with(
        dir.path(),
        Some(webhook(&receiver.url, RemediationWhen::Close)),
    );
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let (campaign, item) = revoke_and_close(&app, "dave", "vpn-users").await;

    let first = round(&app).await;
    assert_eq!(first.execution.failed, 1, "{first:?}");
    let task = task_of(&app, &item).await;
    assert!(
        task.last_error.as_deref().unwrap().contains("500"),
        "{task:?}"
    );
    later(&app, 1).await;
    assert_eq!(round(&app).await.execution.executed, 1);
    assert_eq!(task_of(&app, &item).await.state, "executed");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "one failed delivery, one retry");
    for (headers, body) in &requests {
        let timestamp: i64 = headers["x-attest-timestamp"].parse().unwrap();
        assert_eq!(
            headers["x-attest-signature"],
            signature(SECRET.as_bytes(), timestamp, body),
            "the signature is the HMAC of the timestamp and the body"
        );
        assert_ne!(
            headers["x-attest-signature"],
            signature(b"another-secret-0123456789", timestamp, body)
        );
        assert_eq!(
            headers["idempotency-key"],
            format!("{}:0", task.id),
            "the same key for a retry after a failure"
        );
        let task_json: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(task_json["task"], task.id.as_str());
        assert_eq!(task_json["campaign"], campaign.as_str());
        assert_eq!(task_json["person"]["login"], "dave");
        assert_eq!(task_json["group"]["name"], "vpn-users");
        assert_eq!(task_json["remove_from"]["name"], "vpn-users");
    }

    // The receiver's automation removes the access; the next sync proves it.
    remove_membership(&ldif, "dave", "vpn-users");
    later(&app, 5).await;
    app.sync().await.unwrap();
    assert_eq!(round(&app).await.verification.verified, 1);
    assert_eq!(task_of(&app, &item).await.state, "verified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_when_immediately_a_revoke_is_carried_out_before_the_close() {
    let dir = common::temp_dir();
    let receiver = Receiver::start(vec![]);
    let (config, _) = config_with(
        dir.path(),
        Some(webhook(&receiver.url, RemediationWhen::Immediately)),
    );
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let (campaign, item) = revoke(&app, "dave", "vpn-users").await;
    let report = round(&app).await;
    assert_eq!((report.created, report.execution.executed), (1, 1));
    assert_eq!(receiver.requests().len(), 1);
    assert_eq!(task_of(&app, &item).await.reason, "decision");
    // Closing makes no second task.
    close(&app, &campaign).await;
    assert_eq!(round(&app).await.created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_task_is_mailed_to_it_closed_with_a_ticket_and_proved_by_the_next_sync() {
    let dir = common::temp_dir();
    let manual = RemediationConfig {
        mail_to: "it-ops@example.com".into(),
        ..RemediationConfig::default()
    };
    let (config, ldif) = config_with(dir.path(), Some(manual));
    let mail_dir = config.mail.file_dir.clone();
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let (_, item) = revoke_and_close(&app, "dave", "vpn-users").await;
    let report = round(&app).await;
    assert_eq!((report.created, report.execution.executed), (1, 0));
    let task = task_of(&app, &item).await;
    assert_eq!(
        (task.mode.as_str(), task.state.as_str()),
        ("manual", "pending")
    );

    // IT gets one mail naming the access and the command that closes the task.
    while app.worker.drain_once().await.unwrap() > 0 {}
    let to_it: Vec<String> = common::mails_on_disk(&mail_dir)
        .into_iter()
        .filter(|(to, _)| to == "it-ops@example.com")
        .map(|(_, text)| text)
        .collect();
    assert_eq!(to_it.len(), 1, "{to_it:?}");
    assert!(to_it[0].contains("dave from vpn-users"), "{}", to_it[0]);
    assert!(to_it[0].contains(&task.id), "{}", to_it[0]);

    // A ticket reference is required; then the task is executed and waits for its proof.
    let id = task.id.clone();
    let refused = app
        .blocking(move |db, clock, _| {
            let now = attest::clock::Clock::now(clock);
            mark_done(&mut db.conn().unwrap(), now, &id, "  ", "it").unwrap_err()
        })
        .await;
    assert!(refused.to_string().contains("ticket"), "{refused}");
    remove_membership(&ldif, "dave", "vpn-users");
    let id = task.id.clone();
    let done = app
        .blocking(move |db, clock, _| {
            let now = attest::clock::Clock::now(clock);
            mark_done(&mut db.conn().unwrap(), now, &id, "CHG-1042", "it").unwrap()
        })
        .await;
    assert_eq!(
        (done.state.as_str(), done.ticket.as_deref()),
        ("executed", Some("CHG-1042"))
    );

    later(&app, 5).await;
    let synced = app.sync().await.unwrap();
    assert_eq!(round(&app).await.verification.verified, 1);
    let listed = app
        .blocking(|db, _, _| list(&mut db.conn().unwrap(), Some("verified"), None, 10).unwrap())
        .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].task.ticket.as_deref(), Some("CHG-1042"));
    assert_eq!(
        listed[0].task.verified_sync_run_id.as_deref(),
        Some(synced.sync_run_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_closes_a_manual_task_in_the_console_with_its_ticket() {
    let dir = common::temp_dir();
    let (config, _) = config_with(dir.path(), None);
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let (_, item) = revoke_and_close(&app, "dave", "vpn-users").await;
    round(&app).await;
    let task = task_of(&app, &item).await;

    let client = common::admin_client(&app).await;
    let page_url = format!("{}/console/remediation", app.base_url);
    let page = client
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("dave · vpn-users"), "{page}");
    assert!(page.contains(&format!("/console/remediation/{}/done", task.id)));
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let done_url = format!("{}/console/remediation/{}/done", app.base_url, task.id);

    // Without the session's CSRF token nothing happens.
    let forged = client
        .post(&done_url)
        .form(&[("csrf", "forged"), ("ticket", "CHG-7")])
        .send()
        .await
        .unwrap();
    assert!(forged.status().is_client_error(), "{}", forged.status());
    assert_eq!(task_of(&app, &item).await.state, "pending");

    let closed = client
        .post(&done_url)
        .form(&[("csrf", csrf.as_str()), ("ticket", "CHG-7")])
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status().as_u16(), 303);
    let task = task_of(&app, &item).await;
    assert_eq!(
        (task.state.as_str(), task.ticket.as_deref()),
        ("executed", Some("CHG-7"))
    );
    let events = app
        .blocking(|db, _, _| {
            attest::ledger::events::of_kind(
                &mut db.conn().unwrap(),
                attest::ledger::EventKind::RemediationDone,
            )
            .unwrap()
        })
        .await;
    assert_eq!(events.len(), 1);
    assert!(events[0].actor.starts_with("staff:"), "{:?}", events[0]);

    // Closing it twice is refused in words.
    let again = client
        .post(&done_url)
        .form(&[("csrf", csrf.as_str()), ("ticket", "CHG-7")])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 409);
    assert!(again.text().await.unwrap().contains("not pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_until_a_date_becomes_a_task_when_the_date_comes() {
    let dir = common::temp_dir();
    let (config, _) = config_with(dir.path(), None);
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let (campaign, item) = revoke(&app, "dave", "vpn-users").await;
    let until =
        (attest::clock::Clock::now(app.clock.as_ref()) + chrono::Duration::days(30)).date_naive();
    decide_until(
        &app,
        &campaign,
        &item,
        attest::decisions::DecisionOutcome::Approve,
        Some(until),
    )
    .await;
    close(&app, &campaign).await;
    assert_eq!(
        round(&app).await.created,
        0,
        "approved: nothing to remove yet"
    );

    // The scheduler's tick on that day expires the approval and makes the task.
    let due = until.and_hms_opt(9, 0, 0).unwrap().and_utc();
    app.tick_at(due).await;
    let task = task_of(&app, &item).await;
    assert_eq!(
        (task.reason.as_str(), task.state.as_str()),
        ("expired", "pending")
    );
}
