//! Staff sign-in through the real npm `oidc-provider` (authorization code flow with PKCE,
//! state and nonce; its login page checks the password) and the console behind it: an admin
//! sees each reviewer's progress; an auditor downloads a pack that verifies and cannot open
//! admin pages; someone in no staff group is refused; `auth.require_mfa` refuses a sign-in
//! without a second factor; a forged callback is refused; sessions rotate at sign-in, end at
//! sign-out and after the idle time (injected clock). Every step is an event. A one-time
//! link from `attest admin link` signs a staff member in once, not from another site's form,
//! not after it expires, and not at all under `auth.require_mfa`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::config::{Config, StaffOidcConfig};
use attest::evidence::verify::verify_pack;
use chrono::Duration;
use serde_json::json;

use crate::common::{self, TestApp};
use crate::support::oidc_scim::{CONSOLE_CLIENT_ID, CONSOLE_CLIENT_SECRET, OidcScim, Options};
use crate::support::ports;

impl AsRef<TestApp> for TestApp {
    fn as_ref(&self) -> &TestApp {
        self
    }
}

impl AsRef<TestApp> for Console {
    fn as_ref(&self) -> &TestApp {
        &self.app
    }
}

pub(crate) struct Console {
    pub(crate) app: TestApp,
    pub(crate) provider: OidcScim,
    _dir: tempfile::TempDir,
}

fn staff_accounts() -> serde_json::Value {
    let account = |login: &str, groups: &[&str], amr: &[&str]| {
        json!({
            "login": login, "password": format!("{login}-password"), "sub": format!("sub-{login}"),
            "email": format!("{login}@example.com"), "name": format!("{login} (staff)"),
            "groups": groups, "amr": amr,
        })
    };
    json!({
        "users": [], "groups": [],
        "staff": [
            account("ada", &["attest-admins"], &["pwd"]),
            account("max", &["attest-admins"], &["pwd", "otp"]),
            account("aud", &["auditors"], &["pwd"]),
            account("eve", &["engineering"], &["pwd"]),
            // Reviewers of the fixture's campaign, in no staff group (review.require_sso).
            account("bob", &["engineering"], &["pwd", "otp"]),
            account("carol", &["finance"], &["pwd"]),
            // Claims Bob's address, which the provider does not vouch for.
            json!({
                "login": "mallory", "password": "mallory-password", "sub": "sub-mallory",
                "email": "bob@example.com", "email_verified": false, "name": "not Bob",
                "groups": [], "amr": ["pwd"],
            }),
        ],
    })
}

pub(crate) async fn start(adjust: impl FnOnce(&mut Config)) -> Console {
    let dir = common::temp_dir();
    let port = ports::free_port();
    let public_url = format!("http://127.0.0.1:{port}");
    let provider = OidcScim::start_with_console(
        &staff_accounts(),
        Options::default(),
        Some(&format!("{public_url}/auth/callback")),
    );
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    config.server.bind = format!("127.0.0.1:{port}");
    config.server.public_url = public_url;
    config.auth.oidc = Some(
        serde_json::from_value::<StaffOidcConfig>(json!({
            "issuer": provider.issuer,
            "client_id": CONSOLE_CLIENT_ID,
            "client_secret": CONSOLE_CLIENT_SECRET,
            "scopes": ["openid", "email", "profile", "groups"],
            "admin_groups": ["attest-admins"],
            "auditor_groups": ["auditors"],
            "allow_insecure_http": true,
        }))
        .unwrap(),
    );
    adjust(&mut config);
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    app.start_campaign().await;
    Console {
        app,
        provider,
        _dir: dir,
    }
}

/// A browser-like client: cookies kept, redirects followed by hand (to see each hop).
fn browser() -> reqwest::Client {
    common::http_client()
}

/// Follows redirects from `url` (GET) until a page answers; returns (final URL, status, body).
pub(crate) async fn follow(client: &reqwest::Client, url: String) -> (String, u16, String) {
    let mut url = url;
    for _ in 0..10 {
        let response = client.get(&url).send().await.unwrap();
        let status = response.status().as_u16();
        if !(300..400).contains(&status) {
            return (url, status, response.text().await.unwrap());
        }
        let location = response.headers()["location"].to_str().unwrap().to_string();
        url = response.url().join(&location).unwrap().to_string();
    }
    panic!("too many redirects from {url}");
}

/// Signs in as `login` with `password` starting from the console; returns the page the
/// sign-in ends on (URL, status, body).
async fn sign_in(
    c: &Console,
    client: &reqwest::Client,
    login: &str,
    password: &str,
) -> (String, u16, String) {
    let (url, status, page) = follow(client, format!("{}/console", c.app.base_url)).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("Sign in to the test provider"),
        "{url}: {page}"
    );
    submit_login(client, &url, &page, login, password).await
}

/// Posts the provider's login form (on `page`, at `url`) and follows where it leads.
pub(crate) async fn submit_login(
    client: &reqwest::Client,
    url: &str,
    page: &str,
    login: &str,
    password: &str,
) -> (String, u16, String) {
    let action = {
        let at = page.find("action=\"").unwrap() + "action=\"".len();
        page[at..at + page[at..].find('"').unwrap()].to_string()
    };
    let post_url = reqwest::Url::parse(url).unwrap().join(&action).unwrap();
    let response = client
        .post(post_url)
        .form(&[("login", login), ("password", password)])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    if !(300..400).contains(&status) {
        let at = response.url().to_string();
        return (at, status, response.text().await.unwrap());
    }
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let next = response.url().join(&location).unwrap().to_string();
    follow(client, next).await
}

/// The body of a GET, redirects not followed.
async fn text(client: &reqwest::Client, url: String) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

pub(crate) async fn events(app: impl AsRef<TestApp>, kind: &'static str) -> Vec<serde_json::Value> {
    app.as_ref()
        .blocking(move |db, _, _| {
            use attest::db::schema::events;
            use diesel::prelude::*;
            events::table
                .filter(events::kind.eq(kind))
                .order(events::seq.asc())
                .select(events::payload)
                .load::<String>(&mut *db.conn().unwrap())
                .unwrap()
                .into_iter()
                .map(|p| serde_json::from_str(&p).unwrap())
                .collect()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_signs_in_at_the_provider_and_sees_each_reviewers_progress() {
    let c = start(|_| {}).await;
    let client = browser();

    // A wrong password stays at the provider's login page; no session.
    let (_, status, page) = sign_in(&c, &client, "ada", "guess").await;
    assert_eq!(status, 200);
    assert!(page.contains("Wrong login or password."));
    assert!(events(&c, "staff.signed_in").await.is_empty());

    let (url, status, page) = sign_in(&c, &client, "ada", "ada-password").await;
    assert_eq!((url.ends_with("/console"), status), (true, 200), "{page}");
    assert!(page.contains("Q4 access review") && page.contains("ada (staff) (admin)"));
    let signed_in = events(&c, "staff.signed_in").await;
    assert_eq!(signed_in.len(), 1);
    assert_eq!(signed_in[0]["role"], "admin");
    assert_eq!(signed_in[0]["amr"], json!(["pwd"]));
    assert_eq!(signed_in[0]["acr"], "urn:attest:test:password");

    let progress_link = {
        let at = page.find("href=\"/console/campaigns/").unwrap() + "href=\"".len();
        page[at..at + page[at..].find('"').unwrap()].to_string()
    };
    let (_, status, progress) = follow(&client, format!("{}{progress_link}", c.app.base_url)).await;
    assert_eq!(status, 200);
    assert!(progress.contains("By reviewer"));
    assert!(progress.contains("bob@example.com") && progress.contains("Bob Baker"));

    // Signing in again in the same browser starts a new session and ends the old one.
    let before = text(&client, format!("{}/console", c.app.base_url)).await;
    let csrf = common::form_values(&before, "csrf")[0].clone();
    let (_, status, _) = sign_in_again(&c, &client).await;
    assert_eq!(status, 200);
    let sessions: Vec<(Option<chrono::NaiveDateTime>,)> = c
        .app
        .blocking(|db, _, _| {
            use attest::db::schema::sessions;
            use diesel::prelude::*;
            sessions::table
                .select((sessions::revoked_at,))
                .load(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(sessions.len(), 2);
    assert_eq!(
        sessions.iter().filter(|(r,)| r.is_some()).count(),
        1,
        "the old one ended"
    );
    // The old page's form belongs to the ended session: sign-out from it is refused.
    let stale = client
        .post(format!("{}/auth/logout", c.app.base_url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 403);

    // Sign-out ends the session.
    let page = text(&client, format!("{}/console", c.app.base_url)).await;
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let out = client
        .post(format!("{}/auth/logout", c.app.base_url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 200);
    assert_eq!(events(&c, "staff.signed_out").await.len(), 1);
    let after = client
        .get(format!("{}/console", c.app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status().as_u16(), 303, "signed out: back to sign-in");
    c.app.stop().await;
}

/// A second sign-in of ada in a browser that is signed in already.
async fn sign_in_again(c: &Console, client: &reqwest::Client) -> (String, u16, String) {
    let (url, status, page) = follow(client, format!("{}/auth/login", c.app.base_url)).await;
    if page.contains("Sign in to the test provider") {
        return submit_login(client, &url, &page, "ada", "ada-password").await;
    }
    (url, status, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_downloads_a_pack_and_cannot_open_admin_pages() {
    let c = start(|_| {}).await;
    let client = browser();
    let (_, status, page) = sign_in(&c, &client, "aud", "aud-password").await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("(auditor)"));
    assert!(
        !page.contains("href=\"/console/campaigns/"),
        "an auditor gets no progress link"
    );
    let evidence = {
        let at = page.find("action=\"/console/campaigns/").unwrap() + "action=\"".len();
        page[at..at + page[at..].find('"').unwrap()].to_string()
    };
    let admin_page = evidence.trim_end_matches("/evidence").to_string();
    let refused = client
        .get(format!("{}{admin_page}", c.app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    // Nor any other admin page, nor an admin action with the auditor's own CSRF token.
    for path in [
        "/console/sources",
        "/console/outbox",
        "/console/remediation",
        "/console/staff",
    ] {
        let refused = client
            .get(format!("{}{path}", c.app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{path}");
    }
    let own_csrf = common::form_values(&page, "csrf")[0].clone();
    for path in [
        format!("{admin_page}/close"),
        "/console/tokens".to_string(),
        "/console/sources/corp/sync".to_string(),
        "/console/sources/corp/test".to_string(),
    ] {
        let refused = client
            .post(format!("{}{path}", c.app.base_url))
            .form(&[
                ("csrf", own_csrf.as_str()),
                ("name", "x"),
                ("role", "admin"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status().as_u16(), 403, "{path}");
    }

    // Without the session's CSRF token (a link or form from another site), nothing is built.
    let forged = client
        .post(format!("{}{evidence}", c.app.base_url))
        .form(&[("csrf", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert!(events(&c, "evidence.exported").await.is_empty());

    let csrf = common::form_values(&page, "csrf")[0].clone();
    let pack = client
        .post(format!("{}{evidence}", c.app.base_url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(pack.status().as_u16(), 200);
    let bytes = pack.bytes().await.unwrap();
    let file = c._dir.path().join("pack.zip");
    std::fs::write(&file, &bytes).unwrap();
    let key = text(
        &client,
        format!("{}/api/v1/evidence/public-key", c.app.base_url),
    )
    .await;
    verify_pack(&file, Some(key.trim()), None).unwrap();
    let signed_in = events(&c, "staff.signed_in").await;
    assert_eq!(signed_in[0]["role"], "auditor");
    let auditor = signed_in[0]["staff_user"].as_str().unwrap().to_string();
    let exported_by: Vec<String> = c
        .app
        .blocking(|db, _, _| {
            use attest::db::schema::events;
            use diesel::prelude::*;
            events::table
                .filter(events::kind.eq("evidence.exported"))
                .select(events::actor)
                .load(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(
        exported_by,
        vec![format!("staff:{auditor}")],
        "the export names the auditor"
    );
    c.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_outside_the_staff_groups_without_mfa_or_forged_are_refused() {
    let c = start(|config| config.auth.require_mfa = true).await;

    let (_, status, page) = sign_in(&c, &browser(), "eve", "eve-password").await;
    assert_eq!(status, 403);
    assert!(page.contains("none of the groups"), "{page}");

    let (_, status, page) = sign_in(&c, &browser(), "ada", "ada-password").await;
    assert_eq!(status, 403, "no second factor");
    assert!(page.contains("second factor"), "{page}");

    let refused = events(&c, "staff.sign_in_refused").await;
    let reasons: Vec<&str> = refused
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, vec!["not_staff", "second_factor_required"]);

    let client = browser();
    let (url, status, _) = sign_in(&c, &client, "max", "max-password").await;
    assert_eq!((url.ends_with("/console"), status), (true, 200));
    let signed_in = events(&c, "staff.signed_in").await;
    assert_eq!(signed_in[0]["amr"], json!(["pwd", "otp"]));
    assert_eq!(signed_in[0]["acr"], "urn:attest:test:mfa");

    // Idle for longer than auth.session_idle_minutes: the session is over.
    c.app
        .clock
        .set(common::start_time() + Duration::minutes(31));
    let idle = client
        .get(format!("{}/console", c.app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(idle.status().as_u16(), 303);

    // A callback that this browser did not start, or with another state, is refused.
    let forged = browser()
        .get(format!(
            "{}/auth/callback?code=abc&state=xyz",
            c.app.base_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 400);
    assert_eq!(events(&c, "staff.signed_in").await.len(), 1);
    c.app.stop().await;
}

/// The sign-in page of a one-time link, as a browser opens it: (its form's CSRF token).
async fn open_link(app: &TestApp, client: &reqwest::Client, secret: &str) -> String {
    let page = text(client, format!("{}/auth/link?t={secret}", app.base_url)).await;
    common::form_values(&page, "csrf")[0].clone()
}

async fn post_link(app: &TestApp, client: &reqwest::Client, secret: &str, csrf: &str) -> u16 {
    client
        .post(format!("{}/auth/link", app.base_url))
        .form(&[("t", secret), ("csrf", csrf)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn make_link(app: &TestApp, minutes: i64) -> String {
    app.blocking(move |db, clock, _| {
        attest::auth::sign_in_links::create_link(
            &mut db.conn().unwrap(),
            attest::clock::Clock::now(clock),
            "Auditor@Example.com",
            attest::auth::Role::Auditor,
            minutes,
            "test",
        )
        .unwrap()
        .secret
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_link_signs_a_staff_member_in_once() {
    let dir = common::temp_dir();
    let config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    let app = TestApp::spawn_without_background_workers(config.clone()).await;
    let secret = make_link(&app, 15).await;

    // Opening the link changes nothing; another site's form (no bound cookie) is refused.
    let client = browser();
    let csrf = open_link(&app, &client, &secret).await;
    let used: Option<chrono::NaiveDateTime> = app
        .blocking(|db, _, _| {
            use attest::db::schema::staff_sign_in_links;
            use diesel::prelude::*;
            staff_sign_in_links::table
                .select(staff_sign_in_links::used_at)
                .first(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert!(used.is_none(), "a GET does not use the link");
    assert_eq!(post_link(&app, &browser(), &secret, &csrf).await, 403);

    assert_eq!(post_link(&app, &client, &secret, &csrf).await, 303);
    let console = text(&client, format!("{}/console", app.base_url)).await;
    assert!(
        console.contains("auditor@example.com (auditor)"),
        "{console}"
    );
    let signed_in = events(&app, "staff.signed_in").await;
    assert_eq!(signed_in[0]["amr"], json!(["link"]));
    assert_eq!(signed_in[0]["issuer"], "local");

    // Used once: a second browser cannot use it again.
    let other = browser();
    let csrf = open_link(&app, &other, &secret).await;
    assert_eq!(post_link(&app, &other, &secret, &csrf).await, 401);

    // Expired.
    let late = make_link(&app, 1).await;
    let csrf = open_link(&app, &other, &late).await;
    app.clock.set(common::start_time() + Duration::minutes(2));
    assert_eq!(post_link(&app, &other, &late, &csrf).await, 401);
    app.stop().await;

    // With auth.require_mfa, a link (one factor) signs nobody in.
    let mut strict = config;
    strict.auth.require_mfa = true;
    let app = TestApp::spawn_without_background_workers(strict).await;
    let secret = make_link(&app, 15).await;
    let client = browser();
    let csrf = open_link(&app, &client, &secret).await;
    assert_eq!(post_link(&app, &client, &secret, &csrf).await, 403);
    let refused = events(&app, "staff.sign_in_refused").await;
    assert_eq!(refused.last().unwrap()["reason"], "second_factor_required");
    app.stop().await;
}
