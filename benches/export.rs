//! Evidence export benchmark: `attest export` of a closed campaign (half of its items decided,
//! in bulk by every other reviewer; the rest unanswered) against `sqlite3 -csv` writing the
//! same rows (every item with its reviewer, every decision with its item) in the same run;
//! the export's peak memory at the full size against a tenth of it (streamed: it should
//! barely grow); and how long `attest verify` of the full-size pack takes. Both commands run
//! as the real binary in a child process; peak memory is the child's VmHWM, sampled every
//! 10 ms from /proc.
//!
//! `cargo bench --bench export` runs 1,000,000 items; `-- --smoke` a small size (what CI runs,
//! to keep the benchmark working, not to measure); `-- --items N` any size. With
//! `ATTEST_BENCH_LOG=1` the binary's log (each pack file's size and time) is shown; with
//! `ATTEST_BENCH_KEEP=DIR` the database and pack of the last size are left in DIR.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "shared/synthetic.rs"]
mod synthetic;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attest::campaigns::model::reviewers_of;
use attest::campaigns::{CloseRules, close_campaign, start_campaign};
use attest::clock::{Clock, SystemClock};
use attest::config::DatabaseConfig;
use attest::db::Database;
use attest::decisions::bulk::{BulkRequest, BulkScope, record_bulk};
use attest::decisions::{AuthContext, DecisionOutcome};
use attest::directory::sync_source;
use synthetic::{ACCESSES_PER_PERSON, SOURCE, config, items_from_args, write_access_list};

fn main() {
    let (smoke, items) = items_from_args();
    println!(
        "attest evidence export benchmark{}",
        if smoke { " (smoke size)" } else { "" }
    );
    let small = measure(items / 10);
    let large = measure(items);
    println!();
    println!(
        "targets (issue 9): export <= 1.5x sqlite3 -csv of the same rows; peak memory at N <= \
         1.2x the peak at N/10"
    );
    println!(
        "export {:.2}x sqlite3 -csv at {} items; peak memory {:.2}x ({} MiB at {} items, {} \
         MiB at {}); attest verify of the {}-item pack: {:.1} s, peak {} MiB",
        ratio(large.export, large.raw),
        large.items,
        large.export_peak_kib as f64 / small.export_peak_kib.max(1) as f64,
        large.export_peak_kib / 1024,
        large.items,
        small.export_peak_kib / 1024,
        small.items,
        large.items,
        large.verify.as_secs_f64(),
        large.verify_peak_kib / 1024,
    );
}

struct Measured {
    items: usize,
    export: Duration,
    export_peak_kib: u64,
    raw: Duration,
    verify: Duration,
    verify_peak_kib: u64,
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn measure(items: usize) -> Measured {
    let people = (items / ACCESSES_PER_PERSON).max(20);
    println!();
    println!(
        "== {} items ({people} people)",
        people * ACCESSES_PER_PERSON
    );
    // ATTEST_BENCH_KEEP=DIR keeps the largest size's database and pack there (to profile).
    let kept = std::env::var_os("ATTEST_BENCH_KEEP").map(PathBuf::from);
    let temporary = tempfile::tempdir().unwrap();
    let dir = match &kept {
        Some(path) => {
            let _ = std::fs::remove_dir_all(path);
            std::fs::create_dir_all(path).unwrap();
            path.as_path()
        }
        None => temporary.path(),
    };
    let (config_file, db_path, campaign) = prepare(dir, people);

    let started = Instant::now();
    let query = |sql: String, out: &Path| {
        let status = Command::new("sqlite3")
            .args(["-csv", "-header"])
            .arg(&db_path)
            .arg(sql)
            .stdout(std::fs::File::create(out).unwrap())
            .status()
            .expect("sqlite3 (apt install sqlite3)");
        assert!(status.success(), "sqlite3 failed");
    };
    query(
        format!(
            "SELECT i.*, r.email, r.display_name FROM review_items i JOIN reviewers r ON r.id = \
             i.reviewer_id WHERE i.campaign_id = '{campaign}' ORDER BY i.id"
        ),
        &dir.join("raw-items.csv"),
    );
    query(
        format!(
            "SELECT d.*, i.identity_login, i.entitlement_name, r.email FROM decisions d JOIN \
             review_items i ON i.id = d.item_id JOIN reviewers r ON r.id = d.reviewer_id WHERE \
             d.campaign_id = '{campaign}' ORDER BY d.decided_at, d.id"
        ),
        &dir.join("raw-decisions.csv"),
    );
    let raw = started.elapsed();
    println!(
        "sqlite3 -csv of the items and decisions: {:.2} s",
        raw.as_secs_f64()
    );

    let pack = dir.join("pack.zip");
    let (export, export_peak_kib) = run_attest(
        dir,
        &[
            "--config",
            config_file.to_str().unwrap(),
            "export",
            &campaign,
            "--out",
            pack.to_str().unwrap(),
        ],
    );
    println!(
        "attest export: {:.2} s, peak {} MiB, pack {} MiB",
        export.as_secs_f64(),
        export_peak_kib / 1024,
        std::fs::metadata(&pack).unwrap().len() / (1024 * 1024)
    );
    let (verify, verify_peak_kib) = run_attest(dir, &["verify", pack.to_str().unwrap()]);
    println!(
        "attest verify: {:.2} s, peak {} MiB",
        verify.as_secs_f64(),
        verify_peak_kib / 1024
    );
    Measured {
        items: people * ACCESSES_PER_PERSON,
        export,
        export_peak_kib,
        raw,
        verify,
        verify_peak_kib,
    }
}

/// Syncs the synthetic directory, opens the large campaign, has every other reviewer decide
/// all their items in one bulk decision (alternately approve and revoke), closes it, and
/// writes the configuration the binary reads. Returns (config file, database, campaign id).
fn prepare(dir: &Path, people: usize) -> (PathBuf, PathBuf, String) {
    let csv = dir.join("access.csv");
    write_access_list(&csv, people);
    let db_path = dir.join("bench.db");
    let url = format!("sqlite://{}", db_path.display());
    let db = Database::connect(&DatabaseConfig {
        url: url.clone(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    db.migrate().unwrap();
    let config = config(&url, &csv);
    let started = Instant::now();
    sync_source(&db, &SystemClock, SOURCE, &config.sources[SOURCE], "bench").unwrap();
    let opened = start_campaign(&db, &SystemClock, &config, "large", true, "bench").unwrap();
    let campaign = opened.campaign.id.clone();
    let mut conn = db.conn().unwrap();
    let auth = AuthContext {
        method: "bench".into(),
        link_jti_sha256: None,
        session_tag: None,
        user_agent: None,
        ip: None,
        sso_subject_tag: None,
    };
    let reviewers = reviewers_of(&mut conn, &campaign).unwrap();
    let mut decided = 0;
    for (index, reviewer) in reviewers.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let request = BulkRequest {
            campaign_id: campaign.clone(),
            reviewer_id: reviewer.id.clone(),
            scope: BulkScope::Remaining,
            outcome: if index % 4 == 0 {
                DecisionOutcome::Approve
            } else {
                DecisionOutcome::Revoke
            },
            comment: Some("quarterly review".into()),
            approved_until: None,
            reasons: Default::default(),
        };
        decided += record_bulk(&mut conn, SystemClock.now(), &request, &auth).unwrap();
    }
    close_campaign(
        &mut conn,
        SystemClock.now(),
        &campaign,
        &CloseRules::default(),
        "bench",
    )
    .unwrap();
    println!(
        "setup (not measured): {} items, {decided} decided, {} reviewers, closed, in {:.1} s",
        opened.items,
        reviewers.len(),
        started.elapsed().as_secs_f64()
    );
    let key = dir.join("evidence.key");
    std::fs::write(&key, format!("{}\n", "5a".repeat(32))).unwrap();
    let config_file = dir.join("attest.toml");
    std::fs::write(
        &config_file,
        format!(
            "[database]\nurl = \"{url}\"\n\n[evidence]\nsigning_key_file = \"{}\"\n",
            key.display()
        ),
    )
    .unwrap();
    (config_file, db_path, campaign)
}

/// Runs the attest binary to completion: (wall time, peak resident memory in KiB).
fn run_attest(dir: &Path, args: &[&str]) -> (Duration, u64) {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_attest"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(kib) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|status| high_water_mark(&status))
        {
            peak = peak.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let elapsed = started.elapsed();
    let output = child.wait_with_output().unwrap();
    if std::env::var_os("ATTEST_BENCH_LOG").is_some() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
    }
    assert!(
        output.status.success(),
        "attest {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (elapsed, peak)
}

/// VmHWM (peak resident set) in KiB from a /proc status text.
fn high_water_mark(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}
