//! A manager's review in real headless Chromium at phone width, from the mail that arrived in
//! maildev: the mail's revoke link opens the page focused on that access; a revoke without a
//! reason is refused at the item; with a reason it is saved, the status bar says so and focus
//! moves to the next undecided access; one approval; the rest approved at once; "All done".
//! axe-core checks every page for serious or critical WCAG A/AA violations, and the page
//! shows each access with its context. And an admin signs in at the real OIDC provider's
//! login page, sees each reviewer's progress in the console, and opens every admin page
//! (sources, outbox, remediation, staff), each checked with axe-core too. Screenshots of each
//! step are kept when a step fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fantoccini::{Client, Locator};

use crate::common::{self, TestApp};
use crate::support::browser::{Artefacts, Browser};
use crate::support::maildev::Maildev;
use crate::support::slapd::Slapd;

/// The id attribute of the focused element (`document.activeElement`).
async fn focused(c: &Client) -> String {
    c.execute(
        "const e = document.activeElement; return e ? (e.id || e.name || e.tagName) : '';",
        Vec::new(),
    )
    .await
    .unwrap()
    .as_str()
    .unwrap_or_default()
    .to_string()
}

/// The text of the first `css` element, read again if a navigation replaced it meanwhile.
async fn text_of(c: &Client, css: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let element = c
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        match element.text().await {
            Ok(text) => return text,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(
                    matches!(&e, fantoccini::error::CmdError::Standard(w) if w.error == fantoccini::error::ErrorStatus::StaleElementReference),
                    "{e}"
                );
            }
            Err(e) => panic!("{css}: {e}"),
        }
    }
}

/// Waits until the page's URL contains `part` (the post's redirect has landed).
async fn wait_for_url(c: &Client, part: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !c.current_url().await.unwrap().as_str().contains(part) {
        assert!(std::time::Instant::now() < deadline, "never reached {part}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn assert_accessible(browser: &Browser, page: &str) {
    let problems = browser.accessibility_problems().await;
    assert!(problems.is_empty(), "{page}: {problems:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_finishes_a_review_from_the_mail_on_a_phone() {
    let mut artefacts = Artefacts::new("a_manager_finishes_a_review_from_the_mail_on_a_phone");
    let dir = common::temp_dir();
    let slapd = Slapd::start();
    let maildev = Maildev::start();
    let config = common::config(
        &common::sqlite_url(dir.path()),
        common::ldap_source(&slapd),
        Some(maildev.smtp_port),
        dir.path(),
    );
    let app = TestApp::spawn(config).await;
    app.sync().await.expect("sync from slapd");
    app.start_campaign().await;
    let mails = maildev.wait_for_messages(4, Duration::from_secs(30));
    let bob = mails
        .iter()
        .find(|m| m["to"][0]["address"] == "bob@example.com")
        .unwrap();
    let text = bob["text"].as_str().unwrap();
    assert!(
        text.contains("in vpn-users\n  Remote access VPN; direct member; first seen 2026-11-02\n"),
        "each access with its context: {text}"
    );
    // The mail's revoke link for one access (dave's VPN).
    let revoke_link = text
        .lines()
        .skip_while(|l| !l.contains("(dave) in vpn-users"))
        .find_map(|l| l.trim().strip_prefix("Revoke:"))
        .unwrap()
        .trim()
        .to_string();

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&revoke_link).await.unwrap();
    artefacts.snapshot(&browser, "opened-from-mail").await;
    let item_id = focused(c).await;
    assert!(item_id.starts_with("item-"), "focus is on {item_id:?}");
    let item = c.find(Locator::Id(&item_id)).await.unwrap();
    let context = item.text().await.unwrap();
    assert!(context.contains("vpn-users"), "{context}");
    assert!(
        context.contains("Remote access VPN"),
        "description: {context}"
    );
    assert!(context.contains("first seen by attest"), "{context}");
    assert!(
        context.contains("Confirm: revoke this access?"),
        "{context}"
    );
    let person = text_of(c, ".person-meta").await;
    assert!(
        person.contains("Site Reliability Engineer, engineering")
            && person.contains("reports to you"),
        "{person}"
    );
    let approve_names: Vec<String> = {
        let mut names = Vec::new();
        for button in c
            .find_all(Locator::Css("button[value=approve][aria-label]"))
            .await
            .unwrap()
        {
            names.push(button.attr("aria-label").await.unwrap().unwrap());
        }
        names
    };
    assert_eq!(
        approve_names.len(),
        6,
        "every access has a named approve button"
    );
    assert!(
        approve_names.contains(&"Approve vpn-users for Dave Dunn".to_string()),
        "{approve_names:?}"
    );
    assert_accessible(&browser, "review page from the mail link").await;

    // Revoke without a reason: refused at the item, with focus in its reason box.
    item.find(Locator::Css("button.revoke"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(c, "problem=reason").await;
    artefacts.snapshot(&browser, "revoke-without-reason").await;
    let problem = text_of(c, &format!("#{item_id} .problem")).await;
    assert_eq!(problem, "Not saved: say why this access should be revoked.");
    assert_eq!(focused(c).await, "comment", "focus is in the reason box");
    assert_eq!(app.count("decisions").await, 0);
    assert_accessible(&browser, "review page with a refused revoke").await;

    // With a reason: saved, said in the status bar, focus on the next undecided access.
    let item = c.find(Locator::Id(&item_id)).await.unwrap();
    item.find(Locator::Css("textarea[name=comment]"))
        .await
        .unwrap()
        .send_keys("moved to another team")
        .await
        .unwrap();
    item.find(Locator::Css("button.revoke"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(c, "saved=").await;
    artefacts.snapshot(&browser, "revoked").await;
    let status = text_of(c, ".status-bar").await;
    assert!(
        status.contains("Saved: vpn-users for") && status.contains("revoke requested"),
        "{status}"
    );
    assert!(status.contains("1 of 6 reviewed, 5 left"), "{status}");
    let next = focused(c).await;
    assert!(
        next.starts_with("item-") && next != item_id,
        "focus on {next:?}"
    );
    let next_item = c.find(Locator::Id(&next)).await.unwrap();
    assert!(
        next_item
            .attr("class")
            .await
            .unwrap()
            .unwrap()
            .contains("state-pending")
    );
    let revoked = c.find(Locator::Id(&item_id)).await.unwrap();
    assert!(
        revoked
            .attr("class")
            .await
            .unwrap()
            .unwrap()
            .contains("state-revoked")
    );
    revoked
        .find(Locator::Css("details.history summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let history = revoked
        .find(Locator::Css("details.history"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        history.contains("Revoke requested by Bob Baker")
            && history.contains("moved to another team"),
        "the reason is shown again: {history}"
    );
    assert_accessible(&browser, "review page after a decision").await;

    // Approve the focused access.
    next_item
        .find(Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(c, &format!("saved={}", next.trim_start_matches("item-"))).await;
    assert!(
        text_of(c, ".status-bar")
            .await
            .contains("2 of 6 reviewed, 4 left")
    );

    // The rest at once, from the top of the page.
    c.execute("window.scrollTo(0, 0);", Vec::new())
        .await
        .unwrap();
    c.find(Locator::Css("details.several summary"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("form.bulk button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(c, "decided=").await;
    artefacts.snapshot(&browser, "all-done").await;
    let status = text_of(c, ".status-bar").await;
    assert!(status.contains("Saved 4 accesses. Thank you."), "{status}");
    assert!(status.contains("6 of 6 reviewed."), "{status}");
    let done = text_of(c, "#done").await;
    assert!(done.starts_with("All done — thank you."), "{done}");
    assert_eq!(focused(c).await, "done", "focus on the finished state");
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
    assert_accessible(&browser, "finished review page").await;

    let (comment, auth) = app
        .blocking(|db, _, _| {
            use attest::db::schema::decisions;
            use diesel::prelude::*;
            decisions::table
                .filter(decisions::outcome.eq("revoke"))
                .select((decisions::comment, decisions::auth_context))
                .first::<(Option<String>, String)>(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(comment.as_deref(), Some("moved to another team"));
    assert!(
        auth.contains("HeadlessChrome"),
        "the browser's own session decided: {auth}"
    );
    browser.close().await;
    app.stop().await;
    artefacts.passed();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_in_through_the_provider_and_sees_the_progress() {
    let mut artefacts =
        Artefacts::new("an_admin_signs_in_through_the_provider_and_sees_the_progress");
    let console = crate::staff_console::start(|_| {}).await;
    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&format!("{}/console", console.app.base_url))
        .await
        .unwrap();
    artefacts.snapshot(&browser, "provider-login").await;
    c.wait()
        .for_element(Locator::Css("input[name=login]"))
        .await
        .unwrap()
        .send_keys("ada")
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("ada-password")
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(c, "/console").await;
    artefacts.snapshot(&browser, "console").await;
    let heading = text_of(c, "h1").await;
    assert_eq!(heading, "Campaigns");
    assert!(
        text_of(c, ".console-bar")
            .await
            .contains("ada (staff) (admin)")
    );
    assert_accessible(&browser, "console home").await;

    c.find(Locator::Css(
        "table.overview a[href^='/console/campaigns/']",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    wait_for_url(c, "/console/campaigns/").await;
    c.wait()
        .for_element(Locator::XPath("//h2[text()='By reviewer']"))
        .await
        .unwrap();
    artefacts.snapshot(&browser, "progress").await;
    let table = text_of(c, "table.overview").await;
    assert!(table.contains("Bob Baker"), "{table}");
    assert_accessible(&browser, "campaign progress").await;

    // Every admin page the console bar links to passes axe too.
    for (link, heading) in [
        ("Sources", "Sources"),
        ("Outbox", "Outbox"),
        ("Remediation", "Remediation"),
        ("Staff", "Staff and API tokens"),
    ] {
        c.find(Locator::LinkText(link))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::XPath(&format!("//h1[text()='{heading}']")))
            .await
            .unwrap();
        artefacts.snapshot(&browser, link).await;
        assert_accessible(&browser, heading).await;
    }

    c.find(Locator::Css(".console-bar button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(c, "/auth/logout").await;
    assert_eq!(text_of(c, "h1").await, "Signed out");
    browser.close().await;
    console.app.stop().await;
    artefacts.passed();
}
