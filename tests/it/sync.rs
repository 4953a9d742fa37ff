//! Syncing from a real slapd: the population and its provenance are recorded; a failed sync
//! (server down, wrong password) is recorded as failed and the previous snapshot stays current.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::config::SourceConfig;
use attest::directory::current_sync_run;
use attest::directory::snapshot::{STATUS_FAILED, STATUS_SUCCEEDED, sync_runs_of};
use secrecy::SecretString;

use crate::common::{self, SOURCE, TestApp};
use crate::support::slapd::Slapd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sync_keeps_the_previous_snapshot() {
    let dir = common::temp_dir();
    let mut slapd = Slapd::start();
    let config = common::config(
        &common::sqlite_url(dir.path()),
        common::ldap_source(&slapd),
        None,
        dir.path(),
    );
    let app = TestApp::spawn(config).await;
    let first = app.sync().await.expect("first sync");
    let identities_after_first = app.count("identity_versions").await;

    slapd.stop();
    let error = app
        .sync()
        .await
        .expect_err("sync against a stopped server fails");
    assert_eq!(error.code(), "source_failed");

    let runs = app
        .blocking(|db, _, _| {
            let mut conn = db.conn().unwrap();
            let runs = sync_runs_of(&mut conn, SOURCE).unwrap();
            let current = current_sync_run(&mut conn, SOURCE).unwrap().unwrap();
            (runs, current)
        })
        .await;
    let (runs, current) = runs;
    assert_eq!(
        current.id, first.sync_run_id,
        "previous snapshot is still current"
    );
    assert_eq!(runs.len(), 2);
    let failed = runs.iter().find(|r| r.status == STATUS_FAILED).unwrap();
    assert!(failed.error.as_deref().is_some_and(|e| !e.is_empty()));
    assert!(failed.finished_at.is_some());
    assert_eq!(
        app.count("identity_versions").await,
        identities_after_first,
        "partial rows removed"
    );

    // A campaign still opens from the previous snapshot.
    let started = app.start_campaign().await;
    assert_eq!(started.campaign.sync_run_id, first.sync_run_id);
    assert_eq!(started.items, 18);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_bind_password_fails_loudly_and_names_the_cause() {
    let dir = common::temp_dir();
    let slapd = Slapd::start();
    let mut source = common::ldap_source(&slapd);
    if let SourceConfig::Ldap(ldap) = &mut source {
        ldap.bind_password = Some(SecretString::from("wrong-password"));
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn(config).await;
    let error = app.sync().await.expect_err("bad credentials fail");
    let expected = format!(
        "source `{SOURCE}` failed: bind as {} failed: invalid credentials (49)",
        crate::support::slapd::READER_DN
    );
    assert_eq!(error.code(), "source_failed");
    assert_eq!(error.to_string(), expected);
    let failed = app
        .blocking(|db, _, _| sync_runs_of(&mut db.conn().unwrap(), SOURCE).unwrap())
        .await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].status, STATUS_FAILED);
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap()
            .ends_with("invalid credentials (49)"),
        "{:?}",
        failed[0].error
    );
    app.stop().await;

    // What the admin sees from the command line: one line with the code and the cause, and
    // never the password.
    let file = dir.path().join("attest.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[database]
url = "{db}"
[links]
signing_key = "cli-test-signing-key-0123456789-abcdefgh"
[sources.{SOURCE}]
kind = "ldap"
url = "{url}"
bind_dn = "{dn}"
bind_password = "wrong-password"
starttls = true
tls_ca_file = "{ca}"
[sources.{SOURCE}.people]
base_dns = ["ou=people,dc=example,dc=com"]
[sources.{SOURCE}.groups]
base_dns = ["ou=groups,dc=example,dc=com"]
"#,
            db = common::sqlite_url(dir.path()),
            url = slapd.url,
            dn = crate::support::slapd::READER_DN,
            ca = slapd.ca_file.display(),
        ),
    )
    .unwrap();
    let output = crate::binary::run(dir.path(), &file, &["sync"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(
        lines,
        vec![format!("error[source_failed]: {expected}")],
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-password"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_run_records_where_the_population_came_from() {
    let dir = common::temp_dir();
    let slapd = Slapd::start();
    let config = common::config(
        &common::sqlite_url(dir.path()),
        common::ldap_source(&slapd),
        None,
        dir.path(),
    );
    let app = TestApp::spawn(config).await;
    let outcome = app.sync().await.unwrap();
    let run = app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            attest::directory::snapshot::sync_run(&mut conn, &outcome.sync_run_id).unwrap()
        })
        .await;
    assert_eq!(run.status, STATUS_SUCCEEDED);
    assert_eq!(run.server, slapd.url);
    let searches: serde_json::Value = serde_json::from_str(&run.searches).unwrap();
    assert_eq!(searches[0]["base"], "ou=people,dc=example,dc=com");
    assert_eq!(searches[0]["filter"], "(objectClass=inetOrgPerson)");
    assert!(
        searches[0]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "entryUUID")
    );
    assert_eq!(searches[0]["entries"], 12);
    assert!(
        searches[0]["pages"].as_u64().unwrap() >= 3,
        "page size 5 over 12 people"
    );
    assert_eq!(run.entries, 16);
    assert!(run.raw_sha256.as_deref().is_some_and(|h| h.len() == 64));
    assert!(run.finished_at.unwrap() >= run.started_at);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_failing_midway_removes_its_partial_rows() {
    let dir = common::temp_dir();
    let ldif = dir.path().join("directory.ldif");
    std::fs::copy(common::fixture(), &ldif).unwrap();
    let config = common::config(
        &common::sqlite_url(dir.path()),
        common::ldif_source(&ldif),
        None,
        dir.path(),
    );
    let app = TestApp::spawn(config).await;
    let first = app.sync().await.expect("first sync");
    let identities = app.count("identity_versions").await;

    // Enough people that the import has flushed batches before it meets a broken entry.
    let mut big = String::new();
    for n in 0..25_000 {
        big.push_str(&format!(
            "dn: uid=p{n},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: p{n}\ncn: P {n}\nsn: P\n\n"
        ));
    }
    big.push_str("dn: cn=no login,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\ncn: no login\nsn: x\n\n");
    std::fs::write(&ldif, big).unwrap();
    let error = app
        .sync()
        .await
        .expect_err("an entry without a login fails the sync");
    assert!(error.to_string().contains("cn=no login"), "{error}");

    assert_eq!(
        app.count("identity_versions").await,
        identities,
        "partial rows removed"
    );
    let current = app
        .blocking(|db, _, _| {
            current_sync_run(&mut db.conn().unwrap(), SOURCE)
                .unwrap()
                .unwrap()
        })
        .await;
    assert_eq!(current.id, first.sync_run_id);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_from_an_untrusted_ca_fails_the_sync() {
    let dir = common::temp_dir();
    let slapd = Slapd::start();
    let mut source = common::ldap_source(&slapd);
    if let SourceConfig::Ldap(ldap) = &mut source {
        ldap.tls_ca_file = None;
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn(config).await;
    let error = app.sync().await.expect_err("untrusted certificate");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
    assert_eq!(app.count("identity_versions").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_left_running_by_a_dead_process_is_undone_and_ended() {
    use attest::db::schema::{identity_versions, sync_runs};
    use diesel::prelude::*;

    let dir = common::temp_dir();
    let config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    let app = TestApp::spawn(config).await;
    let first = app.sync().await.unwrap();
    let versions = app.count("identity_versions").await;
    // What a process killed mid-import leaves behind: a running run 2 that wrote a new person
    // and closed one of run 1's.
    app.blocking(|db, clock, _| {
        let mut conn = db.conn().unwrap();
        let at = attest::clock::Clock::now(clock).naive_utc();
        diesel::insert_into(sync_runs::table)
            .values((
                sync_runs::id.eq("00000000-0000-4000-8000-000000000001"),
                sync_runs::source.eq(SOURCE),
                sync_runs::seq.eq(2i64),
                sync_runs::server.eq("ldap://gone"),
                sync_runs::searches.eq("[]"),
                sync_runs::started_at.eq(at),
                sync_runs::heartbeat_at.eq(Some(at)),
                sync_runs::status.eq("running"),
            ))
            .execute(&mut *conn)
            .unwrap();
        diesel::insert_into(identity_versions::table)
            .values((
                identity_versions::source.eq(SOURCE),
                identity_versions::external_id.eq("x"),
                identity_versions::valid_from.eq(2i64),
                identity_versions::content_sha256.eq("x"),
                identity_versions::dn.eq("uid=x"),
                identity_versions::dn_norm.eq("uid=x"),
                identity_versions::login.eq("x"),
                identity_versions::display_name.eq("X"),
                identity_versions::status.eq("active"),
                identity_versions::account_kind.eq("person"),
                identity_versions::member_of.eq("[]"),
            ))
            .execute(&mut *conn)
            .unwrap();
        let closed =
            diesel::update(identity_versions::table.filter(identity_versions::login.eq("alice")))
                .set(identity_versions::valid_to.eq(Some(2i64)))
                .execute(&mut *conn)
                .unwrap();
        assert_eq!(closed, 1);
    })
    .await;

    // While it may still be alive, the source is busy: a second sync is refused.
    app.clock.advance(chrono::Duration::minutes(5));
    let busy = app.sync().await.expect_err("one sync per source at a time");
    assert!(busy.to_string().contains("already running"), "{busy}");

    // Silent for long enough: the next sync undoes and ends it, then runs.
    app.clock.advance(chrono::Duration::minutes(20));
    let outcome = app.sync().await.unwrap();
    assert!(!outcome.diff.directory_changed(), "{:?}", outcome.diff);
    let runs = app
        .blocking(|db, _, _| sync_runs_of(&mut db.conn().unwrap(), SOURCE).unwrap())
        .await;
    let abandoned = runs
        .iter()
        .find(|r| r.id == "00000000-0000-4000-8000-000000000001")
        .unwrap();
    assert_eq!(abandoned.status, STATUS_FAILED);
    assert!(abandoned.error.as_deref().unwrap().starts_with("abandoned"));
    assert_eq!(
        app.count("identity_versions").await,
        versions,
        "the dead run's version is gone and alice's is current again; nothing new written"
    );
    assert_ne!(outcome.sync_run_id, first.sync_run_id);
    app.stop().await;
}
