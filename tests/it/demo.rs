//! `attest demo` prepares a clickable review with nothing but the binary: the embedded
//! directory loads, a campaign opens, and one digest per reviewer is written to files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use attest::clock::{FixedClock, SharedClock};
use attest::config::SourceConfig;

use crate::common::{self, form_values, http_client, post_form};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_delivers_digests_that_open_a_review() {
    let dir = common::temp_dir();
    let mut config = attest::demo::demo_config().unwrap();
    let demo = dir.path().join("demo");
    config.database.url = format!("sqlite://{}", demo.join("attest.db").display());
    config.links.signing_key_file = Some(demo.join("link.key"));
    config.mail.file_dir = demo.join("mail");
    config.server.bind = "127.0.0.1:0".into();
    config.server.public_url = String::new();
    if let Some(SourceConfig::Ldif(ldif)) = config.sources.get_mut("northwind") {
        ldif.path = demo.join("directory.ldif");
    }
    let clock: SharedClock = Arc::new(FixedClock::new(common::start_time()));
    let app = attest::demo::prepare(config, clock).await.unwrap();
    let base = app.public_url().to_string();
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());

    let client = http_client();
    let mailbox = client
        .get(format!("{base}/demo/mail"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = mailbox
        .split("href=\"/demo/mail/")
        .nth(1)
        .expect("a delivered mail")
        .split('"')
        .next()
        .unwrap();
    let mail_count = std::fs::read_dir(demo.join("mail")).unwrap().count();
    assert_eq!(mailbox.matches("href=\"/demo/mail/").count(), mail_count);
    assert!(mail_count >= 10, "one digest per manager: {mail_count}");

    let mail = client
        .get(format!("{base}/demo/mail/{first}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let link_start = mail
        .find(&format!("{base}/r/"))
        .expect("review link in the mail");
    let link: String = mail[link_start..]
        .chars()
        .take_while(|c| *c != '"' && *c != '?')
        .collect();
    let page = client.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let items = form_values(&html, "item");
    let csrf = form_values(&html, "csrf")[0].clone();
    assert!(!items.is_empty());
    let status = post_form(
        &client,
        format!("{link}/decide"),
        &[
            ("csrf", &csrf),
            ("item", &items[0]),
            ("outcome", "revoke"),
            ("comment", "left the team"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let after = client
        .get(&link)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        after.contains("Revoke requested"),
        "the decision shows on the page"
    );
    handle.stop(true).await;
}
