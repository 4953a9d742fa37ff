//! Attacks on review links and decision POSTs: forged, tampered, expired, wrong-audience and
//! unknown-key tokens; posts without the CSRF token or session cookie; prefetch; deciding
//! someone else's item. None of them may record a decision.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::model::{items_of_reviewer, reviewers_of};
use attest::notify::LinkSigner;
use attest::notify::links::{REVIEW_AUDIENCE, ReviewClaims};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;

use crate::common::{self, TestApp, form_values, http_client, post_form};

struct Fixture {
    app: TestApp,
    _dir: tempfile::TempDir,
    campaign_id: String,
    /// (reviewer id, email) of everyone with items.
    reviewers: Vec<(String, String)>,
}

async fn fixture() -> Fixture {
    let dir = common::temp_dir();
    let config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    // Links are minted by the tests; digests go only when a test drains the outbox.
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.expect("LDIF sync");
    let started = app.start_campaign().await;
    let id = started.campaign.id.clone();
    let reviewers = app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            reviewers_of(&mut conn, &id)
                .unwrap()
                .into_iter()
                .map(|r| (r.id, r.email))
                .collect()
        })
        .await;
    Fixture {
        app,
        _dir: dir,
        campaign_id: started.campaign.id,
        reviewers,
    }
}

impl Fixture {
    fn reviewer(&self, email: &str) -> String {
        self.reviewers
            .iter()
            .find(|(_, e)| e == email)
            .unwrap()
            .0
            .clone()
    }

    async fn link(&self, reviewer_id: &str) -> String {
        self.app
            .mint_link(&self.campaign_id, reviewer_id, Duration::days(3))
            .await
    }

    async fn items_of(&self, reviewer_id: &str) -> Vec<String> {
        let id = reviewer_id.to_string();
        self.app
            .blocking(move |db, _, _| {
                let mut conn = db.conn().unwrap();
                items_of_reviewer(&mut conn, &id)
                    .unwrap()
                    .into_iter()
                    .map(|i| i.id)
                    .collect()
            })
            .await
    }
}

fn signer(config: &attest::config::Config) -> LinkSigner {
    LinkSigner::from_config(&config.links).unwrap()
}

fn claims_of(url: &str) -> ReviewClaims {
    let token = url.rsplit('/').next().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn status_of(url: &str) -> u16 {
    http_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_tampered_expired_and_wrong_audience_links_are_rejected() {
    let f = fixture().await;
    let bob = f.reviewer("bob@example.com");
    let good = f.link(&bob).await;
    assert_eq!(status_of(&good).await, 200);
    let base = format!("{}/r/", f.app.base_url);
    let token = good.trim_start_matches(&base).to_string();
    let parts: Vec<&str> = token.split('.').collect();

    // Tampered payload: another reviewer's id with the original signature.
    let mut claims = claims_of(&good);
    claims.sub = f.reviewer("carol@example.com");
    let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let tampered = format!("{base}{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(status_of(&tampered).await, 401);

    // alg "none" with no signature.
    let none_header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#);
    assert_eq!(
        status_of(&format!("{base}{none_header}.{}.", parts[1])).await,
        401
    );

    // Same key, wrong audience (a token minted for another purpose).
    let signer = signer(&f.app.config);
    let mut other = claims_of(&good);
    other.aud = "attest:api".into();
    assert_ne!(other.aud, REVIEW_AUDIENCE);
    assert_eq!(
        status_of(&format!("{base}{}", signer.sign(&other).unwrap())).await,
        401
    );

    // Unknown key id.
    let mut other_links = f.app.config.links.clone();
    other_links.key_id = "k2".into();
    let other_signer = LinkSigner::from_config(&other_links).unwrap();
    assert_eq!(
        status_of(&format!(
            "{base}{}",
            other_signer.sign(&claims_of(&good)).unwrap()
        ))
        .await,
        401
    );

    // Valid signature but never issued (unknown jti).
    let mut unissued = claims_of(&good);
    unissued.jti = "0".repeat(32);
    assert_eq!(
        status_of(&format!("{base}{}", signer.sign(&unissued).unwrap())).await,
        401
    );

    // Expired: the injected clock moves past the token's expiry.
    f.app.clock.advance(Duration::days(4));
    assert_eq!(status_of(&good).await, 401);
    assert_eq!(f.app.count("decisions").await, 0);
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_need_the_csrf_token_bound_to_the_session_cookie() {
    let f = fixture().await;
    let bob = f.reviewer("bob@example.com");
    let url = f.link(&bob).await;
    let item = f.items_of(&bob).await[0].clone();
    let decide = format!("{url}/decide");

    // Prefetchers: a cookie-less form POST is refused (HEAD and GET: see below).
    let client = http_client();
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    let csrf = form_values(&page, "csrf")[0].clone();
    let cookieless = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = post_form(
        &cookieless,
        &decide,
        &[
            ("csrf", csrf.as_str()),
            ("item", item.as_str()),
            ("outcome", "approve"),
        ],
    )
    .await;
    assert_eq!(response, 403, "valid token but no session cookie");

    // Cross-site POST with the victim's cookie but no CSRF field.
    let response = post_form(
        &client,
        &decide,
        &[("item", item.as_str()), ("outcome", "approve")],
    )
    .await;
    assert_eq!(response, 403);

    // A CSRF token from another session does not work with this cookie.
    let other = http_client();
    let other_page = other.get(&url).send().await.unwrap().text().await.unwrap();
    let other_csrf = form_values(&other_page, "csrf")[0].clone();
    assert_ne!(other_csrf, csrf);
    let response = post_form(
        &client,
        &decide,
        &[
            ("csrf", other_csrf.as_str()),
            ("item", item.as_str()),
            ("outcome", "approve"),
        ],
    )
    .await;
    assert_eq!(response, 403);
    assert_eq!(
        f.app.count("decisions").await,
        0,
        "no decision without a valid CSRF token"
    );

    // The real form works.
    let response = post_form(
        &client,
        &decide,
        &[
            ("csrf", csrf.as_str()),
            ("item", item.as_str()),
            ("outcome", "approve"),
        ],
    )
    .await;
    assert_eq!(response, 303);
    assert_eq!(f.app.count("decisions").await, 1);
    f.app.stop().await;
}

/// Sends `HEAD url` on a fresh connection that the server closes after answering; returns the
/// response head and whatever bytes followed it.
async fn raw_head(url: &str) -> (String, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let request = format!("HEAD {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let authority = authority.to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&authority).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(15)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let end = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response head")
            + 4;
        let body = response.split_off(end);
        (String::from_utf8(response).unwrap(), body)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_and_get_of_a_review_link_are_answered_and_record_nothing() {
    let f = fixture().await;
    let bob = f.reviewer("bob@example.com");
    let url = f.link(&bob).await;
    let item = f.items_of(&bob).await[0].clone();
    let before = (
        f.app.count("events").await,
        f.app.count("link_tokens").await,
        f.app.count("decisions").await,
    );
    let prefetch = format!("{url}?item={item}&intent=approve");

    // Link checkers and mail scanners send HEAD: answered as GET would be, without a body
    // (read off the wire: HTTP clients never read a body after HEAD).
    let (head, body) = raw_head(&prefetch).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(body.is_empty(), "HEAD answered with a body: {body:?}");
    let get = http_client().get(&prefetch).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 200);
    assert!(get.text().await.unwrap().contains("name=\"csrf\""));
    // A forged link is refused the same way by both.
    let forged = format!("{}/r/not-a-token", f.app.base_url);
    assert_eq!(
        http_client().head(&forged).send().await.unwrap().status(),
        401
    );
    assert_eq!(status_of(&forged).await, 401);

    let after = (
        f.app.count("events").await,
        f.app.count("link_tokens").await,
        f.app.count("decisions").await,
    );
    assert_eq!(
        after, before,
        "(events, links, decisions) after HEAD and GET"
    );
    let state = f
        .app
        .blocking(move |db, _, _| {
            attest::campaigns::model::item(&mut db.conn().unwrap(), &item)
                .unwrap()
                .state
        })
        .await;
    assert_eq!(state, "pending");
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewer_cannot_decide_someone_elses_item() {
    let f = fixture().await;
    let bob = f.reviewer("bob@example.com");
    let carol = f.reviewer("carol@example.com");
    let url = f.link(&bob).await;
    let carols_item = f.items_of(&carol).await[0].clone();
    let client = http_client();
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    let csrf = form_values(&page, "csrf")[0].clone();
    let response = post_form(
        &client,
        format!("{url}/decide"),
        &[
            ("csrf", csrf.as_str()),
            ("item", carols_item.as_str()),
            ("outcome", "revoke"),
        ],
    )
    .await;
    assert_eq!(response, 403);
    assert_eq!(f.app.count("decisions").await, 0);
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_mailer_writes_one_digest_per_reviewer() {
    let f = fixture().await;
    assert_eq!(f.reviewers.len(), 4, "alice, bob, carol and the fallback");
    let mut attempted = 0;
    loop {
        let n = f.app.worker.drain_once().await.unwrap();
        if n == 0 {
            break;
        }
        attempted += n;
    }
    assert_eq!(attempted, 4, "each digest attempted once");
    let sent = f
        .app
        .blocking(|db, _, _| {
            let mut conn = db.conn().unwrap();
            use diesel::prelude::*;
            attest::db::schema::outbox::table
                .filter(attest::db::schema::outbox::state.eq("sent"))
                .count()
                .get_result::<i64>(&mut *conn)
                .unwrap()
        })
        .await;
    assert_eq!(sent, 4);
    let mail_dir = f.app.config.mail.file_dir.clone();
    let files: Vec<_> = std::fs::read_dir(&mail_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    assert_eq!(files.len(), 4);
    assert_eq!(f.app.count("outbox").await, 4);
    f.app.stop().await;
}
