//! TESTPLAN F4: a campaign whose generation dies part-way leaves nothing behind (no campaign,
//! reviewers, items, mail or events), and a rerun yields exactly one whole campaign. On SQLite
//! the database refuses an insert once the first batch of items is in (as a full disk would);
//! on PostgreSQL the real `attest campaign start` process is killed while its transaction
//! holds the first batch, leaving only the `generating` claim, which the rerun removes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::binary;
use crate::common::{self, TestApp};
use crate::support::{kill_and_reap, log_tail, postgres, wait_until};

const PEOPLE: usize = 300;
const GROUPS: usize = 4;
/// Every person is in every group: more items than one insert batch (500).
const ITEMS: i64 = (PEOPLE * GROUPS) as i64;

/// Tables a campaign writes to; all must be empty after a failed generation.
const CAMPAIGN_TABLES: [&str; 5] = [
    "campaigns",
    "reviewers",
    "review_items",
    "outbox",
    "link_tokens",
];

fn write_directory(path: &Path) {
    write_directory_of(path, PEOPLE, GROUPS);
}

/// `people` people, each in each of `groups` groups.
fn write_directory_of(path: &Path, people: usize, groups: usize) {
    let mut ldif = String::new();
    for p in 0..people {
        writeln!(
            ldif,
            "dn: uid=p{p},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: p{p}\n\
             cn: Person {p}\nsn: {p}\nmail: p{p}@example.com\n"
        )
        .unwrap();
    }
    for g in 0..groups {
        writeln!(
            ldif,
            "dn: cn=group-{g},ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: group-{g}"
        )
        .unwrap();
        for p in 0..people {
            writeln!(ldif, "member: uid=p{p},ou=people,dc=example,dc=com").unwrap();
        }
        ldif.push('\n');
    }
    std::fs::write(path, ldif).unwrap();
}

async fn execute(app: &TestApp, sql: &'static str) {
    app.blocking(move |db, _, _| {
        use diesel::RunQueryDsl;
        diesel::sql_query(sql)
            .execute(&mut *db.conn().unwrap())
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generation_failing_after_a_batch_leaves_no_half_campaign_on_sqlite() {
    let dir = common::temp_dir();
    let ldif = dir.path().join("directory.ldif");
    write_directory(&ldif);
    let mut source = common::ldif_source(&ldif);
    if let attest::config::SourceConfig::Ldif(ldif) = &mut source {
        ldif.privileged_groups = vec!["group-0".into()];
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    assert_eq!(app.sync().await.unwrap().grants, ITEMS);
    let events_before = app.count("events").await;

    // The database fails the insert that would go past the first range of items: the
    // campaign row, its reviewers and the first range (at most 500 accesses) are committed by
    // then, and must be removed.
    execute(
        &app,
        "CREATE TRIGGER fail_after_first_batch BEFORE INSERT ON review_items \
         WHEN (SELECT COUNT(*) FROM review_items) >= 500 \
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END",
    )
    .await;
    let error = app
        .blocking(|db, clock, config| {
            attest::campaigns::start_campaign(db, clock, config, common::DEFINITION, true, "test")
        })
        .await
        .expect_err("generation fails part-way");
    assert_eq!(error.code(), "database_error");
    assert!(error.to_string().contains("disk is full"), "{error}");
    for table in CAMPAIGN_TABLES {
        assert_eq!(app.count(table).await, 0, "rows left in {table}");
    }
    assert_eq!(app.count("events").await, events_before, "no events");

    execute(&app, "DROP TRIGGER fail_after_first_batch").await;
    let started = app.start_campaign().await;
    assert_eq!(started.items, ITEMS);
    assert_eq!(app.count("campaigns").await, 1);
    assert_eq!(app.count("review_items").await, ITEMS);
    app.stop().await;
}

#[test]
fn generation_killed_mid_transaction_leaves_no_half_campaign_on_postgres() {
    let dir = common::temp_dir();
    let ldif = dir.path().join("directory.ldif");
    write_directory(&ldif);
    let database = postgres::database();
    let config = binary::write_config(dir.path(), Some(&database.url), Some(&ldif), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(r#"["prod-admins"]"#, r#"["group-0"]"#);
    std::fs::write(&config, text).unwrap();
    binary::run_ok(dir.path(), &config, &["sync"]);

    // After the first batch of items, the generating transaction stalls inside the database;
    // the server checks every 100 ms whether its client is still there.
    database.psql(
        "CREATE FUNCTION stall_generation() RETURNS trigger AS $$ \
         BEGIN PERFORM pg_sleep(120); RETURN NULL; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER stall_generation AFTER INSERT ON review_items \
         FOR EACH STATEMENT EXECUTE FUNCTION stall_generation();",
    );
    database.psql(&format!(
        "ALTER DATABASE \"{}\" SET client_connection_check_interval = '100ms'",
        database.name
    ));
    let log = dir.path().join("generation.log");
    let mut generating = binary::attest(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["campaign", "start", "access-review", "--now"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        "generation to hold its first batch of items",
        Duration::from_secs(60),
        || {
            if let Some(status) = generating.try_wait().unwrap() {
                panic!("generation ended early ({status}):\n{}", log_tail(&log, 20));
            }
            let stalled = database.psql(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event = 'PgSleep'",
            );
            (stalled.trim() == "1").then_some(())
        },
        || log_tail(&log, 20),
    );
    kill_and_reap(&mut generating);

    // The server notices the dead client and rolls the transaction back.
    wait_until(
        "the killed process's sessions to end",
        Duration::from_secs(30),
        || {
            let others = database.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            );
            (others.trim() == "0").then_some(())
        },
        String::new,
    );
    // Only the claim of the period is left, still `generating`: nobody sees it, no reviewer,
    // item, mail, link or event.
    assert_eq!(
        database.psql("SELECT state FROM campaigns").trim(),
        "generating"
    );
    for table in &CAMPAIGN_TABLES[1..] {
        let rows = database.psql(&format!("SELECT count(*) FROM {table}"));
        assert_eq!(rows.trim(), "0", "rows left in {table}");
    }
    let opened = database.psql("SELECT count(*) FROM events WHERE kind = 'campaign.opened'");
    assert_eq!(opened.trim(), "0");

    database.psql("DROP TRIGGER stall_generation ON review_items");
    let output = binary::run_ok(
        dir.path(),
        &config,
        &["campaign", "start", "access-review", "--now"],
    );
    assert!(output.contains(&format!("{ITEMS} items")), "{output}");
    // The dead generation was removed: one campaign, open.
    assert_eq!(database.psql("SELECT state FROM campaigns").trim(), "open");
    assert_eq!(
        database.psql("SELECT count(*) FROM review_items").trim(),
        ITEMS.to_string()
    );
}

/// A `sqlite3` shell holding the database's write lock (an immediate transaction), once it
/// has it.
fn hold_write_lock(db: &Path) -> std::process::Child {
    use std::io::{BufRead, Write};
    let mut shell = std::process::Command::new("sqlite3")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = shell.stdin.as_mut().unwrap();
    stdin
        .write_all(b".timeout 30000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n")
        .unwrap();
    stdin.flush().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(shell.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked", "the write lock was not taken");
    shell
}

fn release_write_lock(mut shell: std::process::Child) {
    use std::io::Write;
    let mut stdin = shell.stdin.take().unwrap();
    stdin.write_all(b"ROLLBACK;\n.quit\n").unwrap();
    drop(stdin);
    shell.wait().unwrap();
}

/// Reads one number from the SQLite database with its own connection.
fn sqlite_number(db: &Path, sql: &str) -> i64 {
    // A busy database answers after a wait, not with an error read as a number.
    let conn = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8_lossy(&conn.stdout)
        .trim()
        .parse()
        .unwrap_or(-1)
}

#[test]
fn a_generation_killed_between_chunks_is_removed_by_the_next_start_on_sqlite() {
    // 100,000 items: five committed ranges of 20,000, so the process dies with some of them
    // written (the check below looks every few milliseconds).
    let (people, groups) = (5_000, 20);
    let dir = common::temp_dir();
    let ldif = dir.path().join("directory.ldif");
    write_directory_of(&ldif, people, groups);
    let config = binary::write_config(dir.path(), None, Some(&ldif), "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(r#"["prod-admins"]"#, r#"["group-0"]"#);
    std::fs::write(&config, text).unwrap();
    binary::run_ok(dir.path(), &config, &["sync"]);
    let db = dir.path().join("attest.db");

    let log = dir.path().join("generation.log");
    let mut generating = binary::attest(dir.path())
        .arg("--config")
        .arg(&config)
        .args(["campaign", "start", "access-review", "--now"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // (-1: the count could not be read; that is not a committed range either.)
    while sqlite_number(&db, "SELECT count(*) FROM review_items") <= 0 {
        if let Some(status) = generating.try_wait().unwrap() {
            panic!("generation ended early ({status}):\n{}", log_tail(&log, 20));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for generation to commit its first range:\n{}",
            log_tail(&log, 20)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // Take the database's write lock: the generator's next range waits for it, and is killed
    // waiting, between two committed ranges, however fast or loaded the machine is.
    let lock = hold_write_lock(&db);
    kill_and_reap(&mut generating);
    let written = sqlite_number(&db, "SELECT count(*) FROM review_items");
    release_write_lock(lock);
    assert!(
        written > 0 && written < (people * groups) as i64,
        "{written} items"
    );
    assert_eq!(
        sqlite_number(
            &db,
            "SELECT count(*) FROM campaigns WHERE state = 'generating'"
        ),
        1
    );
    for table in ["outbox", "link_tokens"] {
        assert_eq!(
            sqlite_number(&db, &format!("SELECT count(*) FROM {table}")),
            0
        );
    }
    assert_eq!(
        sqlite_number(
            &db,
            "SELECT count(*) FROM events WHERE kind = 'campaign.opened'"
        ),
        0
    );

    let output = binary::run_ok(
        dir.path(),
        &config,
        &["campaign", "start", "access-review", "--now"],
    );
    assert!(
        output.contains(&format!("{} items", people * groups)),
        "{output}"
    );
    assert_eq!(sqlite_number(&db, "SELECT count(*) FROM campaigns"), 1);
    assert_eq!(
        sqlite_number(&db, "SELECT count(*) FROM review_items"),
        (people * groups) as i64
    );
    let leftovers: Vec<_> = std::fs::read_dir(db.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".generating-"))
        .collect();
    assert!(leftovers.is_empty(), "lock files left: {leftovers:?}");
}
