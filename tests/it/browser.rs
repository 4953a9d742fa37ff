//! A reviewer's clicks in real headless Chromium: from the demo mailbox into a digest, from
//! the digest into the review page, then a revoke with a reason, then every access still
//! undecided approved at once. The decisions are recorded with the browser's own cookie and
//! CSRF token, and the page shows them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fantoccini::Locator;

use crate::common;
use crate::support::browser::Browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewer_clicks_from_mail_to_a_recorded_revoke() {
    let dir = common::temp_dir();
    let running = common::run_demo(&dir.path().join("demo")).await;
    let (base, db, handle) = (
        running.base_url.clone(),
        running.db.clone(),
        running.handle.clone(),
    );

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{base}/demo/mail")).await.unwrap();
    c.find(Locator::Css(".mails a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let review_all = c
        .wait()
        .for_element(Locator::Css("a[href*='/r/']"))
        .await
        .unwrap();
    assert!(review_all.text().await.unwrap().starts_with("Review all"));
    review_all.click().await.unwrap();

    let first = c.wait().for_element(Locator::Css("li.item")).await.unwrap();
    let item_id = first.attr("id").await.unwrap().unwrap();
    first
        .find(Locator::Css("textarea[name=comment]"))
        .await
        .unwrap()
        .send_keys("moved to another team")
        .await
        .unwrap();
    first
        .find(Locator::Css("button.revoke"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let saved = c
        .wait()
        .for_element(Locator::Css(".notice.ok"))
        .await
        .unwrap();
    assert_eq!(saved.text().await.unwrap(), "Saved. Thank you.");
    let decided = c.wait().for_element(Locator::Id(&item_id)).await.unwrap();
    assert!(decided.text().await.unwrap().contains("Revoke requested"));
    let left = c
        .find(Locator::Css(".progress"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pending: usize = left
        .split(", ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no undecided count in {left:?}"));

    // Everything still undecided, approved at once with one reason.
    c.find(Locator::Css("details.several summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let bulk = c.find(Locator::Css("form.bulk")).await.unwrap();
    bulk.find(Locator::Css("textarea[name=comment]"))
        .await
        .unwrap()
        .send_keys("team still needs these")
        .await
        .unwrap();
    bulk.find(Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The page before still shows the first notice: wait for the one the bulk post leads to.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !c.current_url().await.unwrap().as_str().contains("decided=") {
        assert!(
            std::time::Instant::now() < deadline,
            "the bulk post did not lead back to the page"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let saved = c
        .wait()
        .for_element(Locator::Css(".notice.ok"))
        .await
        .unwrap();
    let plural = if pending == 1 { "access" } else { "accesses" };
    assert_eq!(
        saved.text().await.unwrap(),
        format!("Saved {pending} {plural}. Thank you.")
    );
    let progress = c
        .find(Locator::Css(".progress"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!progress.contains("left"), "{progress}");
    assert!(
        c.find(Locator::Id(&item_id))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("Revoke requested"),
        "the revoke made one by one stands"
    );

    let (comment, auth) = tokio::task::spawn_blocking(move || {
        use attest::db::schema::decisions;
        use diesel::prelude::*;
        let mut conn = db.conn().unwrap();
        decisions::table
            .filter(decisions::outcome.eq("revoke"))
            .select((decisions::comment, decisions::auth_context))
            .first::<(Option<String>, String)>(&mut *conn)
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(comment.as_deref(), Some("moved to another team"));
    assert!(
        auth.contains("HeadlessChrome"),
        "the browser's own session decided: {auth}"
    );
    browser.close().await;
    handle.stop(true).await;
}
