//! Review page and decision benchmark (issue 8): one manager reviewing N accesses (2,000 by
//! default) on SQLite, served by the real app in this process on loopback. It measures the
//! review page (above 300 accesses, the overview by group), and N decision POSTs one after
//! another with the page's session cookie and CSRF token, as a browser posts, against a raw
//! `sqlite3` loop committing one row per transaction, with the same journal settings, in the
//! same run. Target: decisions >= 0.5x the raw loop's rate.
//!
//! `cargo bench --bench review` runs 2,000; `-- --smoke` 200 (what CI runs, to keep the
//! benchmark working, not to measure); `-- --items N` any size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attest::app::App;
use attest::clock::{Clock, SharedClock, SystemClock};
use attest::config::{
    CampaignDefinition, Config, CsvSourceConfig, MailTransport, ReasonRequired, SourceConfig,
};
use secrecy::SecretString;

const SOURCE: &str = "bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let items: usize = args
        .windows(2)
        .find(|w| w[0] == "--items")
        .map(|w| w[1].parse().expect("--items N"))
        .unwrap_or(if smoke { 200 } else { 2_000 });
    println!(
        "attest review benchmark{}: one reviewer with {items} accesses",
        if smoke { " (smoke size)" } else { "" }
    );
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (page, page_bytes, decisions) = runtime.block_on(measure(dir.path(), items));
    let raw = raw_commit_loop(dir.path(), items);
    let rate = items as f64 / decisions.as_secs_f64();
    let raw_rate = items as f64 / raw.as_secs_f64();
    println!();
    println!("targets (issue 8): decision POSTs >= 0.5x a raw one-row-per-transaction SQLite loop");
    println!(
        "review page of {items} accesses: {:.0} ms, {} KiB",
        page.as_secs_f64() * 1000.0,
        page_bytes / 1024
    );
    println!(
        "decision POSTs: {rate:.0}/s; raw sqlite3 commits: {raw_rate:.0}/s; ratio {:.2}x",
        rate / raw_rate
    );
}

fn write_directory(path: &Path, items: usize) {
    let mut csv = String::from("person_id,login,email,manager,entitlement\n");
    csv.push_str("boss,boss,boss@example.com,,\n");
    for n in 0..items {
        writeln!(csv, "p{n},user{n},user{n}@example.com,boss,app-{}", n % 20).unwrap();
    }
    std::fs::write(path, csv).unwrap();
}

fn config(dir: &Path) -> Config {
    let csv = dir.join("access.csv");
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", dir.join("attest.db").display());
    config.server.bind = "127.0.0.1:0".into();
    config.server.public_url = String::new();
    config.links.signing_key = Some(SecretString::from("bench-signing-key-0123456789abcdef"));
    config.links.signing_key_file = None;
    config.evidence.signing_key_file = dir.join("evidence.key");
    config.mail.transport = MailTransport::File;
    config.mail.file_dir = dir.join("mail");
    config.scheduler.enabled = false;
    config.sources.insert(
        SOURCE.into(),
        SourceConfig::Csv(CsvSourceConfig {
            path: csv,
            privileged_groups: Vec::new(),
            remediation: None,
        }),
    );
    let mut definition =
        CampaignDefinition::for_source(SOURCE, vec!["security@example.com".into()]);
    definition.schedule = "manual".into();
    // Approvals are what the loop posts; a reason is not part of what is measured.
    definition.reason_required_for = vec![ReasonRequired::Revoke];
    config.campaigns.insert("review".into(), definition);
    config
}

/// (page time, page bytes, time of all decision POSTs).
async fn measure(dir: &Path, items: usize) -> (Duration, usize, Duration) {
    write_directory(&dir.join("access.csv"), items);
    let config = config(dir);
    let clock: SharedClock = Arc::new(SystemClock);
    let app = App::build(config.clone(), clock.clone())
        .await
        .unwrap()
        .without_background_workers();
    let base = app.public_url().to_string();
    let db = app.database().clone();
    let db_for_direct = db.clone();
    let handle = app.server_handle();
    tokio::spawn(app.run_until_stopped());
    let (link, ids, link_claims) = tokio::task::spawn_blocking(move || {
        attest::directory::sync_source(
            &db,
            &*clock,
            SOURCE,
            config.source(SOURCE).unwrap(),
            "bench",
        )
        .unwrap();
        let started =
            attest::campaigns::start_campaign(&db, &*clock, &config, "review", true, "bench")
                .unwrap();
        let mut conn = db.conn().unwrap();
        let campaign = started.campaign.id;
        let reviewer = attest::campaigns::model::reviewers_of(&mut conn, &campaign)
            .unwrap()
            .into_iter()
            .find(|r| r.email == "boss@example.com")
            .unwrap()
            .id;
        let signer = attest::notify::LinkSigner::from_config(&config.links).unwrap();
        let now = clock.now();
        let ids: Vec<String> = attest::campaigns::model::items_of_reviewer(&mut conn, &reviewer)
            .unwrap()
            .into_iter()
            .map(|i| i.id)
            .collect();
        let issued = attest::db::write_tx(&mut conn, |conn| {
            attest::notify::links::issue_review_link(
                conn,
                &signer,
                now,
                now + chrono::Duration::days(20),
                &campaign,
                &reviewer,
                "bench",
            )
        })
        .unwrap();
        (
            issued.token,
            ids,
            (issued.jti_sha256, campaign.clone(), reviewer.clone()),
        )
    })
    .await
    .unwrap();
    let url = format!("{base}/r/{link}");
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let started = Instant::now();
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    let page_time = started.elapsed();
    let values = |field: &str| -> Vec<String> {
        let needle = format!("name=\"{field}\" value=\"");
        page.match_indices(&needle)
            .map(|(at, _)| {
                let rest = &page[at + needle.len()..];
                rest[..rest.find('"').unwrap()].to_string()
            })
            .collect()
    };
    let csrf = values("csrf")[0].clone();
    assert_eq!(ids.len(), items);
    let decide = format!("{url}/decide");
    let started = Instant::now();
    for id in &ids {
        let status = client
            .post(&decide)
            .form(&[
                ("csrf", csrf.as_str()),
                ("item", id),
                ("outcome", "approve"),
            ])
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 303);
    }
    let decisions = started.elapsed();
    // The same number of decisions straight into the spine (no HTTP), to tell the web
    // layer's share from the database's.
    let (db, claims) = (db_for_direct, link_claims);
    let direct = tokio::task::spawn_blocking(move || {
        let mut conn = db.conn().unwrap();
        let auth = attest::decisions::AuthContext {
            method: "email_link".into(),
            link_jti_sha256: Some(claims.0),
            session_tag: None,
            user_agent: None,
            ip: None,
            sso_subject_tag: None,
        };
        let started = Instant::now();
        for id in &ids {
            let request = attest::decisions::DecisionRequest {
                campaign_id: claims.1.clone(),
                reviewer_id: claims.2.clone(),
                item_id: id.clone(),
                outcome: attest::decisions::DecisionOutcome::Revoke,
                comment: Some("benchmark".into()),
                approved_until: None,
            };
            attest::decisions::record_decision(&mut conn, SystemClock.now(), &request, &auth)
                .unwrap();
        }
        started.elapsed()
    })
    .await
    .unwrap();
    println!(
        "the same decisions without HTTP (record_decision in a loop): {:.0}/s",
        items as f64 / direct.as_secs_f64()
    );
    handle.stop(true).await;
    (page_time, page.len(), decisions)
}

/// `sqlite3` committing `rows` single-row transactions with attest's journal settings.
fn raw_commit_loop(dir: &Path, rows: usize) -> Duration {
    let db = dir.join("raw.db");
    let mut script = String::from(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;\n\
         CREATE TABLE decisions (id TEXT PRIMARY KEY, item_id TEXT, outcome TEXT, decided_at TEXT);\n",
    );
    for n in 0..rows {
        writeln!(
            script,
            "BEGIN IMMEDIATE; INSERT INTO decisions VALUES ('d{n}', 'i{n}', 'approve', \
             '2026-11-27 10:00:00'); COMMIT;"
        )
        .unwrap();
    }
    let script_file = dir.join("raw.sql");
    std::fs::write(&script_file, script).unwrap();
    let started = Instant::now();
    let output = Command::new("sqlite3")
        .arg(&db)
        .stdin(std::fs::File::open(&script_file).unwrap())
        .output()
        .expect("sqlite3 (tests/run installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}
