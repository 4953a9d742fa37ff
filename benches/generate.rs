//! Campaign generation benchmark: attest opening a campaign over a large synthetic snapshot,
//! against a raw bulk insert of the same item rows in the same run (`sqlite3` running
//! `INSERT ... SELECT` for SQLite, `psql` running `COPY ... FROM` for PostgreSQL), at the full
//! size and a quarter of it (for the scaling ratio). On SQLite it also measures how long a
//! decision waits while the large campaign generates: generation works in chunks so that the
//! write lock is never held for long.
//!
//! The snapshot comes from a CSV source (one row per access; each person has 5 of them, a
//! manager ten levels up a tree, so about a tenth of the people review), synced before the
//! clock starts.
//!
//! `cargo bench --bench generate` runs 1,000,000 items; `-- --smoke` a small size (what CI
//! runs, to keep the benchmark working, not to measure); `-- --items N` any size.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;
#[path = "shared/synthetic.rs"]
mod synthetic;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use attest::campaigns::{CloseRules, close_campaign, start_campaign};
use attest::clock::{Clock, SystemClock};
use attest::config::DatabaseConfig;
use attest::db::Database;
use attest::decisions::{AuthContext, DecisionOutcome, DecisionRequest, record_decision};
use attest::directory::sync_source;

use synthetic::{ACCESSES_PER_PERSON, SOURCE, config, items_from_args, write_access_list};

fn main() {
    // attest's own log (each campaign's read, freeze and open times) on standard error.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::stderr)
        .init();
    let (smoke, items) = items_from_args();
    println!(
        "attest campaign generation benchmark{}",
        if smoke { " (smoke size)" } else { "" }
    );
    let large = measure(items);
    let small = measure(items / 4);
    println!();
    println!(
        "targets (issue 7): generation <= 2x the raw insert; t(N)/t(N/4) <= 4.6; on SQLite a \
         decision waits < 1 s during generation"
    );
    for (index, backend) in ["sqlite", "postgres"].iter().enumerate() {
        let (l, s) = (&large[index], &small[index]);
        println!(
            "{backend:>8}: generation {:.2}x the raw insert, scaling {:.2} ({} -> {} items){}",
            ratio(l.generate, l.raw),
            ratio(l.generate, s.generate),
            items / 4,
            items,
            match l.longest_decision_wait {
                Some(wait) => format!(", longest decision wait {:.0} ms", wait.as_millis()),
                None => String::new(),
            }
        );
    }
}

struct Run {
    generate: Duration,
    raw: Duration,
    longest_decision_wait: Option<Duration>,
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn measure(items: usize) -> Vec<Run> {
    let people = (items / ACCESSES_PER_PERSON).max(20);
    println!();
    println!(
        "== {} items ({people} people)",
        people * ACCESSES_PER_PERSON
    );
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("access.csv");
    write_access_list(&csv, people);
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = run_backend("sqlite", &sqlite_url, &csv, |db_url| {
        raw_sqlite(db_url.trim_start_matches("sqlite://"))
    });
    let database = support::postgres::database();
    let postgres = run_backend("postgres", &database.url, &csv, |url| {
        raw_postgres(url, dir.path())
    });
    if std::env::var_os("ATTEST_BENCH_KEEP").is_some() {
        println!("kept {}", dir.path().display());
        std::mem::forget(dir);
    }
    vec![sqlite, postgres]
}

fn run_backend(backend: &str, url: &str, csv: &Path, raw_insert: impl Fn(&str) -> Duration) -> Run {
    let db = Database::connect(&DatabaseConfig {
        url: url.to_string(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    db.migrate().unwrap();
    let config = config(url, csv);
    let started = Instant::now();
    let synced = sync_source(&db, &SystemClock, SOURCE, &config.sources[SOURCE], "bench").unwrap();
    println!(
        "{backend}: synced {} accesses in {:.1} s (setup, not measured)",
        synced.grants,
        started.elapsed().as_secs_f64()
    );

    // A small open campaign whose reviewer keeps deciding while the large one generates.
    let small = start_campaign(&db, &SystemClock, &config, "small", true, "bench").unwrap();
    let decider = (backend == "sqlite").then(|| Decider::start(db.clone(), &small.campaign.id));

    let started = Instant::now();
    let large = start_campaign(&db, &SystemClock, &config, "large", true, "bench").unwrap();
    let generate = started.elapsed();
    let longest_decision_wait = decider.map(Decider::stop);
    println!(
        "{backend}: generated {} items for {} reviewers in {:.2} s",
        large.items,
        large.reviewers,
        generate.as_secs_f64()
    );
    let mut conn = db.conn().unwrap();
    close_campaign(
        &mut conn,
        SystemClock.now(),
        &small.campaign.id,
        &CloseRules::default(),
        "bench",
    )
    .unwrap();
    drop(conn);
    let raw = raw_insert(url);
    println!(
        "{backend}: raw bulk insert of the same rows: {:.2} s",
        raw.as_secs_f64()
    );
    Run {
        generate,
        raw,
        longest_decision_wait,
    }
}

/// Decides one item over and over (alternating outcomes) and keeps the longest wait.
struct Decider {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Duration>,
}

impl Decider {
    fn start(db: Database, campaign_id: &str) -> Decider {
        use attest::campaigns::model::{items_of_reviewer, reviewers_of};
        let mut conn = db.conn().unwrap();
        let reviewer = reviewers_of(&mut conn, campaign_id).unwrap().remove(0);
        let item = items_of_reviewer(&mut conn, &reviewer.id)
            .unwrap()
            .remove(0);
        drop(conn);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let campaign_id = campaign_id.to_string();
        let handle = std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            let mut approve = true;
            while !flag.load(Ordering::Relaxed) {
                let request = DecisionRequest {
                    campaign_id: campaign_id.clone(),
                    reviewer_id: reviewer.id.clone(),
                    item_id: item.id.clone(),
                    outcome: if approve {
                        DecisionOutcome::Approve
                    } else {
                        DecisionOutcome::Revoke
                    },
                    comment: None,
                    approved_until: None,
                };
                approve = !approve;
                let auth = AuthContext {
                    method: "bench".into(),
                    link_jti_sha256: None,
                    session_tag: None,
                    user_agent: None,
                    ip: None,
                    sso_subject_tag: None,
                };
                let started = Instant::now();
                // A decision that times out waiting for the write lock counts as its wait.
                if let Ok(mut conn) = db.conn() {
                    let _ = record_decision(&mut conn, SystemClock.now(), &request, &auth);
                }
                longest = longest.max(started.elapsed());
                std::thread::sleep(Duration::from_millis(50));
            }
            longest
        });
        Decider { stop, handle }
    }

    fn stop(self) -> Duration {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// The same rows as the large campaign's items, inserted by `sqlite3` in one statement into
/// an empty table of the same shape: `review_items`' own DDL, constraints and indexes, under
/// another name (the `sqlite3` shell does not check foreign keys, as `COPY` into a `LIKE`
/// table does not on PostgreSQL).
fn raw_sqlite(path: &str) -> Duration {
    let setup = "SELECT replace(sql, 'review_items', 'raw_items') || ';' FROM sqlite_master \
                 WHERE tbl_name = 'review_items' AND sql IS NOT NULL;";
    let output = Command::new("sqlite3")
        .arg(path)
        .arg(setup)
        .output()
        .expect("sqlite3 (apt install sqlite3)");
    assert!(output.status.success(), "sqlite3 failed");
    let ddl = String::from_utf8(output.stdout).unwrap();
    assert!(ddl.contains("CREATE TABLE raw_items"), "{ddl}");
    sqlite3(path, &ddl);
    let started = Instant::now();
    sqlite3(
        path,
        "INSERT INTO raw_items SELECT * FROM review_items WHERE campaign_id = \
         (SELECT id FROM campaigns WHERE definition = 'large');",
    );
    started.elapsed()
}

fn sqlite3(path: &str, sql: &str) {
    let status = Command::new("sqlite3")
        .arg(path)
        .arg(sql)
        .stdout(Stdio::null())
        .status()
        .expect("sqlite3 (apt install sqlite3)");
    assert!(status.success(), "sqlite3 failed");
}

/// The same rows, dumped beforehand, loaded by `COPY ... FROM` into an empty table of the
/// same shape (indexes included).
fn raw_postgres(url: &str, dir: &Path) -> Duration {
    let dump = dir.join("items.copy");
    support::postgres::psql(
        url,
        "CREATE TABLE raw_items (LIKE review_items INCLUDING ALL)",
    );
    support::postgres::psql(
        url,
        &format!(
            "\\copy (SELECT * FROM review_items WHERE campaign_id = (SELECT id FROM campaigns \
             WHERE definition = 'large')) TO '{}'",
            dump.display()
        ),
    );
    let started = Instant::now();
    support::postgres::psql(url, &format!("\\copy raw_items FROM '{}'", dump.display()));
    started.elapsed()
}
