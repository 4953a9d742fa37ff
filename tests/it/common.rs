//! Shared set-up for the integration tests: configuration pointing at the test services, a
//! running app on a free port with a fixed clock, and small HTML helpers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use attest::app::App;
use attest::clock::{FixedClock, SharedClock};
use attest::config::{
    CampaignDefinition, Config, GroupQuery, LdapSourceConfig, LdifSourceConfig, MailTransport,
    PeopleQuery, SmtpSecurity, SourceConfig,
};
use attest::db::Database;
use chrono::{DateTime, TimeZone, Utc};
use secrecy::SecretString;

use crate::support::slapd::{self, Slapd};

pub const SOURCE: &str = "corp";
pub const DEFINITION: &str = "access-review";
pub const FALLBACK: &str = "security@example.com";

pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap()
}

fn fixture_people() -> PeopleQuery {
    PeopleQuery {
        base_dns: vec![format!("ou=people,{}", slapd::BASE_DN)],
        ..PeopleQuery::default()
    }
}

fn fixture_groups() -> GroupQuery {
    GroupQuery {
        base_dns: vec![format!("ou=groups,{}", slapd::BASE_DN)],
        ..GroupQuery::default()
    }
}

pub fn ldap_source(slapd: &Slapd) -> SourceConfig {
    SourceConfig::Ldap(LdapSourceConfig {
        url: slapd.url.clone(),
        bind_dn: slapd::READER_DN.into(),
        bind_password: Some(SecretString::from(slapd::READER_PASSWORD)),
        bind_password_file: None,
        // Real TLS: StartTLS on the test server, trusting its private CA.
        starttls: true,
        tls_ca_file: Some(slapd.ca_file.clone()),
        allow_cleartext_bind: false,
        page_size: 5,
        member_range_size: None,
        referrals: Default::default(),
        timeout_seconds: 10,
        people: fixture_people(),
        groups: fixture_groups(),
        privileged_groups: vec!["prod-admins".into()],
        remediation: None,
    })
}

pub fn ldif_source(path: &Path) -> SourceConfig {
    SourceConfig::Ldif(LdifSourceConfig {
        path: path.to_path_buf(),
        people: fixture_people(),
        groups: fixture_groups(),
        privileged_groups: vec!["prod-admins".into()],
        remediation: None,
    })
}

/// A configuration for tests: the given database and source, SMTP to `smtp_port` (or the
/// file mailer when `None`), a free HTTP port and an inline signing key.
pub fn config(
    database_url: &str,
    source: SourceConfig,
    smtp_port: Option<u16>,
    dir: &Path,
) -> Config {
    let mut config = Config::default();
    config.database.url = database_url.to_string();
    config.server.bind = "127.0.0.1:0".into();
    config.server.public_url = String::new();
    config.links.signing_key = Some(SecretString::from(
        "test-signing-key-0123456789-abcdefghijklmnop",
    ));
    config.links.signing_key_file = None;
    // A fixed evidence key, present as instances sharing PostgreSQL need it.
    config.evidence.signing_key_file = dir.join("evidence-signing.key");
    std::fs::write(
        &config.evidence.signing_key_file,
        format!("{}\n", "17".repeat(32)),
    )
    .unwrap();
    config.mail.from = "attest <attest@example.com>".into();
    config.mail.poll_interval_ms = 50;
    config.mail.retry_base_seconds = 1;
    config.mail.templates_dir = dir.join("no-template-overrides");
    match smtp_port {
        Some(port) => {
            config.mail.transport = MailTransport::Smtp;
            config.mail.smtp.host = "127.0.0.1".into();
            config.mail.smtp.port = port;
            config.mail.smtp.security = SmtpSecurity::None;
        }
        None => {
            config.mail.transport = MailTransport::File;
            config.mail.file_dir = dir.join("mail");
        }
    }
    // Campaigns open when a test says so; tests of the schedule turn the scheduler on.
    config.scheduler.enabled = false;
    config.sources = BTreeMap::from([(SOURCE.to_string(), source)]);
    config.campaigns = BTreeMap::from([(
        DEFINITION.to_string(),
        CampaignDefinition {
            title: Some("Q4 access review".into()),
            ..CampaignDefinition::for_source(SOURCE, vec![FALLBACK.into()])
        },
    )]);
    config
}

/// The usual test set-up without an LDAP server: the fixture directory read from its LDIF
/// file, a database at `database_url`, and SMTP to `smtp_port` (or the file mailer).
pub fn fixture_config(database_url: &str, smtp_port: Option<u16>, dir: &Path) -> Config {
    config(database_url, ldif_source(&fixture()), smtp_port, dir)
}

/// A running app and what tests need to reach into it.
pub struct TestApp {
    pub base_url: String,
    pub db: Database,
    pub clock: Arc<FixedClock>,
    pub config: Config,
    pub app_handle: actix_web::dev::ServerHandle,
    pub worker: attest::notify::OutboxWorker,
}

impl TestApp {
    /// The app as `attest serve` runs it: HTTP and the background outbox worker.
    pub async fn spawn(config: Config) -> TestApp {
        TestApp::start(config, true).await
    }

    /// The app without its background workers (outbox, scheduler), for tests that drive them
    /// themselves (`worker.drain_once`, the scheduler's `tick`) and count what they did: no
    /// second claimant races them.
    pub async fn spawn_without_background_workers(config: Config) -> TestApp {
        TestApp::start(config, false).await
    }

    async fn start(config: Config, background_workers: bool) -> TestApp {
        let clock = Arc::new(FixedClock::new(start_time()));
        let shared: SharedClock = clock.clone();
        let mut app = App::build(config.clone(), shared)
            .await
            .expect("app builds");
        if !background_workers {
            app = app.without_background_workers();
        }
        let base_url = app.public_url().to_string();
        let db = app.database().clone();
        let app_handle = app.server_handle();
        let worker = app.outbox_worker();
        tokio::spawn(app.run_until_stopped());
        TestApp {
            base_url,
            db,
            clock,
            config,
            app_handle,
            worker,
        }
    }

    /// Runs blocking spine code with this app's database and clock.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database, &FixedClock, &Config) -> T + Send + 'static,
    ) -> T {
        let (db, clock, config) = (self.db.clone(), self.clock.clone(), self.config.clone());
        tokio::task::spawn_blocking(move || work(&db, &clock, &config))
            .await
            .unwrap()
    }

    pub async fn sync(&self) -> attest::error::Result<attest::directory::SyncOutcome> {
        self.blocking(|db, clock, config| {
            attest::directory::sync_source(
                db,
                clock,
                SOURCE,
                config.source(SOURCE).unwrap(),
                "test",
            )
        })
        .await
    }

    pub async fn start_campaign(&self) -> attest::campaigns::StartedCampaign {
        self.blocking(|db, clock, config| {
            attest::campaigns::start_campaign(db, clock, config, DEFINITION, true, "test").unwrap()
        })
        .await
    }

    /// Mints a review link the way the outbox worker does (in a write transaction, with its
    /// event) and returns its URL.
    pub async fn mint_link(
        &self,
        campaign_id: &str,
        reviewer_id: &str,
        valid_for: chrono::Duration,
    ) -> String {
        let (campaign, reviewer) = (campaign_id.to_string(), reviewer_id.to_string());
        let token = self
            .blocking(move |db, clock, config| {
                let signer = attest::notify::LinkSigner::from_config(&config.links).unwrap();
                let now = attest::clock::Clock::now(clock);
                let mut conn = db.conn().unwrap();
                attest::db::write_tx(&mut conn, |conn| {
                    attest::notify::links::issue_review_link(
                        conn,
                        &signer,
                        now,
                        now + valid_for,
                        &campaign,
                        &reviewer,
                        "test",
                    )
                })
                .unwrap()
                .token
            })
            .await;
        format!("{}/r/{token}", self.base_url)
    }

    /// The id of the reviewer with `email` in `campaign_id`.
    pub async fn reviewer_id(&self, campaign_id: &str, email: &str) -> String {
        let (campaign_id, email) = (campaign_id.to_string(), email.to_string());
        self.blocking(move |db, _, _| {
            attest::campaigns::model::reviewers_of(&mut db.conn().unwrap(), &campaign_id)
                .unwrap()
                .into_iter()
                .find(|r| r.email == email)
                .unwrap_or_else(|| panic!("{email} reviews nothing in {campaign_id}"))
                .id
        })
        .await
    }

    /// The scheduler as `attest serve` runs it, on this app's database, clock and config.
    pub fn scheduler(&self) -> attest::jobs::Scheduler {
        let clock: SharedClock = self.clock.clone();
        attest::jobs::Scheduler::new(self.db.clone(), clock, Arc::new(self.config.clone()))
    }

    /// One scheduler tick at `at`; returns how many jobs ran.
    pub async fn tick_at(&self, at: DateTime<Utc>) -> usize {
        self.clock.set(at);
        let scheduler = self.scheduler();
        tokio::task::spawn_blocking(move || scheduler.tick())
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn count(&self, sql_table: &'static str) -> i64 {
        self.blocking(move |db, _, _| count_rows(db, sql_table))
            .await
    }

    pub async fn stop(&self) {
        self.app_handle.stop(true).await;
    }
}

/// An admin signed in by a one-time link (`attest admin link`).
pub async fn admin_client(app: &TestApp) -> reqwest::Client {
    let secret = app
        .blocking(move |db, clock, _| {
            attest::auth::sign_in_links::create_link(
                &mut db.conn().unwrap(),
                attest::clock::Clock::now(clock),
                "it-admin@example.com",
                attest::auth::Role::Admin,
                15,
                "test",
            )
            .unwrap()
            .secret
        })
        .await;
    let client = http_client();
    let url = format!("{}/auth/link?t={secret}", app.base_url);
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    let csrf = form_values(&page, "csrf")[0].clone();
    let signed_in = client
        .post(format!("{}/auth/link", app.base_url))
        .form(&[("t", secret.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert!(
        signed_in.status().is_redirection(),
        "{}",
        signed_in.status()
    );
    client
}

/// `SELECT COUNT(*)` of a table (name from the test itself, never from input).
pub fn count_rows(db: &Database, table: &str) -> i64 {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().unwrap();
    diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
        .get_result::<Count>(&mut *conn)
        .unwrap()
        .n
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// POSTs a form and returns the status code (redirects are not followed).
pub async fn post_form(
    client: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    fields: &[(&str, &str)],
) -> u16 {
    client
        .post(url)
        .form(fields)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every value of `name="<field>" value="..."` in a page, in order.
pub fn form_values(html: &str, field: &str) -> Vec<String> {
    let needle = format!("name=\"{field}\" value=\"");
    html.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &html[at + needle.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// SHA-256 of the `jti` claim of the review link `url`: how the database, the evidence log
/// and decisions refer to that link.
pub fn link_jti_sha256(url: &str) -> String {
    use base64::Engine;
    let token = url
        .rsplit("/r/")
        .next()
        .unwrap()
        .split(['?', '/'])
        .next()
        .unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    attest::notify::links::sha256_hex(claims["jti"].as_str().unwrap().as_bytes())
}

/// The first review URL (`http://.../r/<token>`) in a text mail body.
pub fn review_url(text: &str) -> String {
    let start = text.find("http://").expect("a link in the mail");
    let rest = &text[start..];
    let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
    let url = &rest[..end];
    assert!(url.contains("/r/"), "not a review link: {url}");
    url.split('?').next().unwrap().to_string()
}

/// (recipient address, text body) of every message the file mailer wrote to `mail_dir`, in
/// no particular order (a file appears only once it is complete).
pub fn mails_on_disk(mail_dir: &Path) -> Vec<(String, String)> {
    let files: Vec<PathBuf> = std::fs::read_dir(mail_dir)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files
        .iter()
        .map(|path| {
            let raw = std::fs::read(path).unwrap();
            let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
            let to = message.to().unwrap().first().unwrap().address().unwrap();
            (to.to_string(), message.body_text(0).unwrap().into_owned())
        })
        .collect()
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("attest.db").display())
}

pub fn fixture() -> PathBuf {
    slapd::fixture_path()
}

/// A running demo (the embedded configuration, with every path under `folder` and a free
/// port), prepared as `attest demo` does: directory loaded, campaign open, digests written.
pub struct RunningDemo {
    pub base_url: String,
    pub db: Database,
    pub mail_dir: PathBuf,
    pub handle: actix_web::dev::ServerHandle,
}

pub async fn run_demo(folder: &Path) -> RunningDemo {
    let mut config = attest::demo::demo_config(None).unwrap();
    config.database.url = format!("sqlite://{}", folder.join("attest.db").display());
    config.links.signing_key_file = Some(folder.join("link.key"));
    config.evidence.signing_key_file = folder.join("evidence.key");
    config.mail.file_dir = folder.join("mail");
    config.server.bind = "127.0.0.1:0".into();
    config.server.public_url = String::new();
    if let Some(SourceConfig::Ldif(ldif)) = config.sources.get_mut("northwind") {
        ldif.path = folder.join("directory.ldif");
    }
    let mail_dir = config.mail.file_dir.clone();
    let clock: SharedClock = Arc::new(FixedClock::new(start_time()));
    let app = attest::demo::prepare(config, clock).await.unwrap();
    let demo = RunningDemo {
        base_url: app.public_url().to_string(),
        db: app.database().clone(),
        mail_dir,
        handle: app.server_handle(),
    };
    tokio::spawn(app.run_until_stopped());
    demo
}
