//! TESTPLAN B3 and B4: names that a directory hands over are data, never markup, template
//! code or mail headers. A CSV source gives a person a name with HTML and template syntax, a
//! group a name and description with HTML, and the reviewer a display name with CR/LF and a
//! `Bcc:` line. The digest the mailer writes keeps a single recipient and no injected header;
//! its HTML part escapes the names, its text part shows them literally (the template syntax
//! not evaluated); the review page escapes them too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::config::{CsvSourceConfig, SourceConfig};
use chrono::Duration;

use crate::common::{self, TestApp};

const PERSON_NAME: &str = "<script>alert(1)</script> {{ reviewer_name }} {% if true %}T{% endif %}";
const GROUP_NAME: &str = "<b>wiki-admins</b>";
const GROUP_DESCRIPTION: &str = "<img src=x onerror=alert(2)> edits {{ item_count }}";
const REVIEWER_NAME: &str = "Mallory\r\nBcc: thief@example.net\r\nSubject: pwned";

/// A CSV field, quoted as RFC 4180 wants (quotes doubled; CR and LF kept inside).
fn quoted(field: &str) -> String {
    format!("\"{}\"", field.replace('"', "\"\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_the_directory_stay_data_in_mail_and_pages() {
    let dir = common::temp_dir();
    let csv = dir.path().join("access.csv");
    let rows = format!(
        "person_id,login,name,email,manager,entitlement,description\n\
         boss,boss,{},boss@example.com,,,\n\
         p1,p1,{},p1@example.com,boss,{},{}\n",
        quoted(REVIEWER_NAME),
        quoted(PERSON_NAME),
        quoted(GROUP_NAME),
        quoted(GROUP_DESCRIPTION),
    );
    std::fs::write(&csv, rows).unwrap();
    let source = SourceConfig::Csv(CsvSourceConfig {
        path: csv,
        privileged_groups: Vec::new(),
        remediation: None,
    });
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let campaign = app.start_campaign().await.campaign.id;
    assert_eq!(
        app.worker.drain_once().await.unwrap(),
        1,
        "the boss's digest"
    );

    // The mail file as the SMTP server would get it.
    let mail_dir = dir.path().join("mail");
    let file = std::fs::read_dir(&mail_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "eml"))
        .unwrap();
    let raw = std::fs::read(&file).unwrap();
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..head_end]).to_string();
    let header_names: Vec<String> = head
        .split("\r\n")
        .filter(|line| !line.starts_with([' ', '\t']))
        .filter_map(|line| line.split_once(':'))
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    assert!(!header_names.iter().any(|n| n == "bcc"), "{head}");
    assert_eq!(
        header_names.iter().filter(|n| *n == "subject").count(),
        1,
        "{head}"
    );
    assert_eq!(header_names.iter().filter(|n| *n == "to").count(), 1);
    let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
    let recipients: Vec<&str> = message
        .to()
        .unwrap()
        .iter()
        .map(|a| a.address().unwrap())
        .collect();
    assert_eq!(recipients, ["boss@example.com"]);

    let text = message.body_text(0).unwrap().replace("\r\n", "\n");
    assert!(
        text.contains(PERSON_NAME),
        "literal in the text part: {text}"
    );
    assert!(text.contains(GROUP_NAME), "{text}");
    let html = message.body_html(0).unwrap();
    for hostile in ["<script>", "<b>wiki-admins", "<img"] {
        assert!(!html.contains(hostile), "{hostile} unescaped in: {html}");
    }
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("{{ reviewer_name }}"),
        "template syntax kept as text"
    );

    // The review page the digest's link opens.
    let reviewer = app.reviewer_id(&campaign, "boss@example.com").await;
    let url = app
        .mint_link(&campaign, &reviewer, Duration::days(20))
        .await;
    let page = common::http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
    for hostile in ["<script>alert", "<b>wiki-admins", "<img src=x"] {
        assert!(!page.contains(hostile), "{hostile} unescaped in the page");
    }
    assert!(
        page.contains("{{ reviewer_name }}"),
        "not evaluated on the page"
    );
    app.stop().await;
}
