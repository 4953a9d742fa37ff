//! `attest demo` prepares a clickable review with nothing but the binary: the embedded
//! directory loads, a campaign opens, and one digest per reviewer is written to files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::binary::{self, Running};
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

/// A `--config` file for the demo that keeps everything under `dir` and serves on `bind` (with
/// the public URL derived from the bound address).
fn demo_overrides(dir: &std::path::Path, bind: &str, extra: &str) -> std::path::PathBuf {
    let demo = dir.join("demo");
    let text = format!(
        r#"
[server]
bind = "{bind}"
public_url = ""

[database]
url = "sqlite://{db}"

[links]
signing_key_file = "{key}"

[mail]
file_dir = "{mail}"

[sources.northwind]
kind = "ldif"
path = "{ldif}"
{extra}
"#,
        db = demo.join("attest.db").display(),
        key = demo.join("link.key").display(),
        mail = demo.join("mail").display(),
        ldif = demo.join("directory.ldif").display(),
    );
    let path = dir.join("overrides.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs `attest --config FILE demo`, expecting it to refuse; returns its standard error.
#[track_caller]
fn failed_demo(dir: &std::path::Path, file: &std::path::Path) -> String {
    let output = binary::run_bounded(dir, file, &["demo"], 30);
    assert!(!output.status.success(), "the demo started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_applies_the_config_file_on_top_of_its_own() {
    let dir = common::temp_dir();
    let file = demo_overrides(
        dir.path(),
        "127.0.0.1:0",
        "[campaigns.quarterly-access-review]\ntitle = \"Acme spot check\"\n",
    );
    let mut demo = Running::start(dir.path(), &["--config", file.to_str().unwrap(), "demo"]);
    assert!(
        demo.stdout().contains("Opened \"Acme spot check\""),
        "{}",
        demo.stdout()
    );
    let mailbox = http_client()
        .get(format!("{}/demo/mail", demo.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(mailbox.status(), 200);
    let delivered = std::fs::read_dir(dir.path().join("demo/mail"))
        .unwrap()
        .count();
    assert!(delivered > 0, "digests written where the file says");
    assert!(
        !dir.path().join("var").exists(),
        "nothing written to the built-in demo paths"
    );
    demo.stop();
}

#[test]
fn demo_mailbox_is_refused_on_a_non_loopback_address() {
    let dir = common::temp_dir();
    let file = demo_overrides(dir.path(), "0.0.0.0:0", "");
    let stderr = failed_demo(dir.path(), &file);
    assert!(stderr.contains("demo.enabled"), "{stderr}");
    assert!(
        !dir.path().join("demo").exists(),
        "refused before anything was written"
    );
    // Bound to loopback but published under a public name (a reverse proxy): also refused.
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "bind = \"0.0.0.0:0\"\npublic_url = \"\"",
        "bind = \"127.0.0.1:0\"\npublic_url = \"https://review.example.com\"",
    );
    std::fs::write(&file, text).unwrap();
    let stderr = failed_demo(dir.path(), &file);
    assert!(stderr.contains("server.public_url"), "{stderr}");

    // `serve` with the demo mailbox switched on: check-config names the key.
    let serve_config = dir.path().join("serve.toml");
    std::fs::write(
        &serve_config,
        "[server]\nbind = \"0.0.0.0:0\"\n[demo]\nenabled = true\n",
    )
    .unwrap();
    for command in ["check-config", "serve"] {
        let output = binary::run_bounded(dir.path(), &serve_config, &[command], 30);
        assert!(!output.status.success(), "{command} accepted it");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("demo.enabled"), "{command}: {stderr}");
    }
    std::fs::write(
        &serve_config,
        "[server]\nbind = \"127.0.0.1:0\"\n[demo]\nenabled = true\n",
    )
    .unwrap();
    binary::run_ok(dir.path(), &serve_config, &["check-config"]);
}

#[test]
fn demo_never_empties_a_folder_it_did_not_make() {
    let dir = common::temp_dir();
    let file = demo_overrides(dir.path(), "127.0.0.1:0", "");
    std::fs::create_dir_all(dir.path().join("demo")).unwrap();
    std::fs::write(dir.path().join("demo/quarterly-report.xlsx"), "keep me").unwrap();
    let stderr = failed_demo(dir.path(), &file);
    assert!(stderr.contains("quarterly-report.xlsx"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("demo/quarterly-report.xlsx")).unwrap(),
        "keep me"
    );

    // A real instance's folder holds files of the same names as the demo's: still refused.
    std::fs::remove_file(dir.path().join("demo/quarterly-report.xlsx")).unwrap();
    for file in ["attest.db", "link.key"] {
        std::fs::write(dir.path().join("demo").join(file), "production").unwrap();
    }
    std::fs::create_dir_all(dir.path().join("demo/mail")).unwrap();
    let stderr = failed_demo(dir.path(), &file);
    assert!(stderr.contains("attest.db"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("demo/attest.db")).unwrap(),
        "production"
    );
}

#[test]
fn demo_never_touches_a_real_database_or_mail_server() {
    let dir = common::temp_dir();
    let file = demo_overrides(
        dir.path(),
        "127.0.0.1:0",
        "[mail.smtp]\nhost = \"smtp.example.com\"\n",
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace(
            &format!("sqlite://{}", dir.path().join("demo/attest.db").display()),
            "postgres://attest@db.example.com/attest",
        )
        .replace("[mail]\n", "[mail]\ntransport = \"smtp\"\n");
    std::fs::write(&file, text).unwrap();
    let stderr = failed_demo(dir.path(), &file);
    for key in ["database.url", "mail.transport"] {
        assert!(stderr.contains(key), "{key} not named: {stderr}");
    }
    assert!(!dir.path().join("demo").exists());
}
