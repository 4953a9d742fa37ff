//! `attest demo` prepares a clickable review with nothing but the binary: the embedded
//! directory loads, a campaign opens, and one digest per reviewer is written to files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::{self, form_values, http_client, post_form};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_delivers_digests_that_open_a_review() {
    let dir = common::temp_dir();
    let demo = dir.path().join("demo");
    let running = common::run_demo(&demo).await;
    let (base, handle) = (running.base_url.clone(), running.handle.clone());

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
    let mail_count = std::fs::read_dir(&running.mail_dir).unwrap().count() as i64;
    assert_eq!(
        mailbox.matches("href=\"/demo/mail/").count() as i64,
        mail_count
    );
    let db = running.db.clone();
    let (reviewers, items) = tokio::task::spawn_blocking(move || {
        (
            common::count_rows(&db, "reviewers"),
            common::count_rows(&db, "review_items"),
        )
    })
    .await
    .unwrap();
    assert_eq!(mail_count, reviewers, "one digest per reviewer");
    assert!(items > reviewers, "digests, not one mail per item");

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
