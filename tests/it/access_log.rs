//! What an operator's log holds after reviewers use their links: the real `attest serve`
//! process, at the most verbose log level, sends digests with real links; a reviewer opens one
//! (GET and HEAD), decides (POST), follows the redirect and sends a malformed query. No part
//! of any token may appear in its output, while every request still gets its line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::binary::{self, Running};
use crate::common::{self, form_values, http_client};
use crate::support::wait_until;

/// The approve links (`.../r/<token>?item=...&intent=approve...`) in the digests on disk.
fn approve_links(mail_dir: &std::path::Path) -> Vec<String> {
    common::mails_on_disk(mail_dir)
        .iter()
        .flat_map(|(_, text)| {
            text.split_whitespace()
                .filter(|w| w.contains("/r/") && w.contains("intent=approve"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every piece of a JWT that could let someone act as the reviewer, or identify the link.
fn token_parts(url: &str) -> Vec<String> {
    let token = url
        .split("/r/")
        .nth(1)
        .unwrap()
        .split(['?', '/'])
        .next()
        .unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    assert_eq!(parts.len(), 3, "a JWT: {token}");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    parts.push(claims["jti"].as_str().unwrap().to_string());
    parts.push(token.to_string());
    parts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_tokens_never_reach_the_log_of_a_real_server() {
    let dir = common::temp_dir();
    let config = binary::write_config(
        dir.path(),
        None,
        None,
        "[log]\nlevel = \"trace\"\nformat = \"json\"\n",
    );
    binary::run_ok(dir.path(), &config, &["sync"]);
    binary::run_ok(
        dir.path(),
        &config,
        &["campaign", "start", "access-review", "--now"],
    );
    let config_arg = config.to_str().unwrap();
    let mut server = Running::start(dir.path(), &["--config", config_arg, "serve"]);

    let mail_dir = dir.path().join("mail");
    let links = wait_until(
        "the server to send four digests",
        Duration::from_secs(30),
        || {
            let count = std::fs::read_dir(&mail_dir).map_or(0, |d| d.count());
            (count == 4).then(|| approve_links(&mail_dir))
        },
        || server.stderr(),
    );
    let approve = links.first().expect("an approve link").clone();

    // The reviewer's path: a scanner's HEAD, the click (GET with the item in the query), the
    // decision (POST), the redirect back; and someone trying a broken link.
    let client = http_client();
    assert_eq!(client.head(&approve).send().await.unwrap().status(), 200);
    let page = client.get(&approve).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = form_values(&html, "csrf")[0].clone();
    let item = form_values(&html, "item")[0].clone();
    let review_url = approve.split('?').next().unwrap().to_string();
    let decided = client
        .post(format!("{review_url}/decide"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("item", item.as_str()),
            ("outcome", "approve"),
            ("comment", "still needed"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), 303);
    let location = decided.headers()["location"].to_str().unwrap().to_string();
    let back = client
        .get(format!("{}{location}", server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    // A query that does not parse (the item twice): actix-web's extractor quotes the path in
    // its own debug output, which must not reach the log either.
    let doubled = client
        .get(format!("{review_url}?item=a&item=b"))
        .send()
        .await
        .unwrap();
    assert_eq!(doubled.status(), 400);
    let mut tampered = review_url.clone();
    tampered.push('x');
    assert_eq!(client.get(&tampered).send().await.unwrap().status(), 401);
    server.stop();

    let log = server.stderr();
    let mut secrets = token_parts(&review_url);
    for other in &links {
        secrets.extend(token_parts(other));
    }
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "the log holds a piece of a review token ({secret}):\n{log}"
        );
    }
    assert!(
        !log.contains(&item),
        "item ids from query strings are not logged"
    );

    // Every request has its line: method, redacted path, status (and no query string).
    let requests: Vec<(String, String, u64)> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|entry| entry["target"] == "attest::http")
        .map(|entry| {
            let fields = &entry["fields"];
            (
                fields["method"].as_str().unwrap().to_string(),
                fields["path"].as_str().unwrap().to_string(),
                fields["status"].as_u64().unwrap(),
            )
        })
        .collect();
    for expected in [
        ("HEAD", "/r/[token]", 200),
        ("GET", "/r/[token]", 200),
        ("POST", "/r/[token]/decide", 303),
        ("GET", "/r/[token]", 400),
        ("GET", "/r/[token]", 401),
    ] {
        assert!(
            requests
                .iter()
                .any(|(m, p, s)| (m.as_str(), p.as_str(), *s) == expected),
            "no log line for {expected:?} in {requests:?}"
        );
    }
    assert_eq!(requests.len(), 6, "{requests:?}");
}
