//! Faults and bad input at the source (TESTPLAN F7, F8, F9, B1, B2): the connection cut in the
//! middle of a sync, a server limit hit, a referral to another server, values that are not
//! UTF-8, a very large group, a cycle and a deep chain of nested groups. A sync either records
//! the whole population or fails loudly leaving the previous state current; nothing is
//! dropped silently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::sync::Mutex;

use attest::config::{ReferralPolicy, SourceConfig};
use attest::directory::snapshot::{STATUS_FAILED, problems_of, sync_runs_of};
use attest::directory::{SyncObserver, sync_source_observed};

use crate::common::{self, SOURCE, TestApp};
use crate::support::slapd::{self, Slapd};

/// The base entries every generated directory needs (suffix, OUs, the reader account).
fn base_entries() -> String {
    format!(
        "dn: {base}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\no: X\ndc: example\n\n\
         dn: ou=people,{base}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{base}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{base}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {reader}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n\
         cn: attest-reader\nuserPassword: {pw}\n\n",
        base = slapd::BASE_DN,
        reader = slapd::READER_DN,
        pw = slapd::READER_PASSWORD,
    )
}

fn people(n: usize) -> String {
    let mut ldif = String::new();
    for p in 0..n {
        write!(
            ldif,
            "dn: uid=p{p},ou=people,{}\nobjectClass: inetOrgPerson\nuid: p{p}\ncn: P {p}\nsn: P\n\n",
            slapd::BASE_DN
        )
        .unwrap();
    }
    ldif
}

fn without_privileged(mut source: SourceConfig) -> SourceConfig {
    if let SourceConfig::Ldap(ldap) = &mut source {
        ldap.privileged_groups.clear();
    }
    source
}

/// Stops the directory server once the sync has read `after` people.
struct CutAfter<'a> {
    after: u64,
    slapd: &'a Mutex<Slapd>,
}

impl SyncObserver for CutAfter<'_> {
    fn read(&self, people: u64, _groups: u64) {
        if people >= self.after {
            self.slapd.lock().unwrap().stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_sync_fails_it_and_keeps_the_previous_state() {
    let dir = common::temp_dir();
    let slapd = Slapd::start_with_ldif(&(base_entries() + &people(2_000)));
    let source = without_privileged(common::ldap_source(&slapd));
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    let first = app.sync().await.unwrap();
    assert_eq!(first.identities, 2_000);
    let versions = app.count("identity_versions").await;

    let slapd = Mutex::new(slapd);
    let error = app
        .blocking(move |db, clock, config| {
            let cut = CutAfter {
                after: 1_000,
                slapd: &slapd,
            };
            let source = config.source(SOURCE).unwrap();
            sync_source_observed(db, clock, SOURCE, source, "test", &cut)
        })
        .await
        .expect_err("a sync whose server goes away fails");
    assert_eq!(error.code(), "source_failed");
    assert!(error.to_string().contains("people search"), "{error}");
    let runs = app
        .blocking(|db, _, _| sync_runs_of(&mut db.conn().unwrap(), SOURCE).unwrap())
        .await;
    assert_eq!(runs[0].status, STATUS_FAILED);
    assert_eq!(app.count("identity_versions").await, versions);
    let current = app
        .blocking(|db, _, _| {
            attest::directory::current_sync_run(&mut db.conn().unwrap(), SOURCE)
                .unwrap()
                .unwrap()
        })
        .await;
    assert_eq!(
        current.id, first.sync_run_id,
        "the previous state stays current"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_limit_fails_the_sync_with_its_result_code() {
    let dir = common::temp_dir();
    // The test server gives the limited reader at most 100 entries, paged or not.
    let limited = format!(
        "dn: {}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\n\
         cn: limited-reader\nuserPassword: limited-secret\n\n",
        slapd::LIMITED_READER_DN
    );
    let slapd = Slapd::start_with_ldif(&(base_entries() + &limited + &people(150)));
    let mut source = without_privileged(common::ldap_source(&slapd));
    if let SourceConfig::Ldap(ldap) = &mut source {
        ldap.bind_dn = slapd::LIMITED_READER_DN.into();
        ldap.bind_password = Some(secrecy::SecretString::from("limited-secret"));
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    let error = app
        .sync()
        .await
        .expect_err("a limit is never a partial success");
    let message = error.to_string();
    assert!(message.contains("size limit exceeded (4)"), "{message}");
    assert!(
        message.contains("the population would be partial"),
        "{message}"
    );
    assert_eq!(app.count("identity_versions").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrals_fail_the_sync_unless_skipped_and_listed() {
    let dir = common::temp_dir();
    let referral = format!(
        "dn: ou=remote,ou=people,{base}\nobjectClass: referral\nobjectClass: extensibleObject\n\
         ou: remote\nref: ldap://remote.example.com/ou=people,{base}\n\n",
        base = slapd::BASE_DN
    );
    let slapd = Slapd::start_with_ldif(&(base_entries() + &people(3) + &referral));
    let source = without_privileged(common::ldap_source(&slapd));
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config.clone()).await;
    let error = app
        .sync()
        .await
        .expect_err("a referral is not followed silently");
    assert!(
        error
            .to_string()
            .contains("referral to ldap://remote.example.com/ou=people,dc=example,dc=com"),
        "{error}"
    );
    app.stop().await;

    let mut skipping = config;
    if let Some(SourceConfig::Ldap(ldap)) = skipping.sources.get_mut(SOURCE) {
        ldap.referrals = ReferralPolicy::Skip;
    }
    let app = TestApp::spawn_without_background_workers(skipping).await;
    let outcome = app.sync().await.unwrap();
    assert_eq!(outcome.identities, 3);
    let id = outcome.sync_run_id.clone();
    let (problems, run) = app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            (
                problems_of(&mut conn, &id).unwrap(),
                attest::directory::snapshot::sync_run(&mut conn, &id).unwrap(),
            )
        })
        .await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, "referral_skipped");
    assert!(problems[0].detail.contains("ldap://remote.example.com"));
    assert!(
        run.searches.contains("referrals_skipped"),
        "{}",
        run.searches
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_that_are_not_utf8_are_kept_as_base64() {
    let dir = common::temp_dir();
    let ldif = dir.path().join("directory.ldif");
    std::fs::write(
        &ldif,
        "dn: uid=ann,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: ann\n\
         cn:: /0FubgA=\nmail: ann@example.com\n\n\
         dn: cn=vpn,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: vpn\n\
         member: uid=ann,ou=people,dc=example,dc=com\nmember:: dWlkPf8sb3U9cGVvcGxl\n",
    )
    .unwrap();
    let mut source = common::ldif_source(&ldif);
    if let SourceConfig::Ldif(c) = &mut source {
        c.privileged_groups.clear();
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    let outcome = app.sync().await.unwrap();
    assert_eq!(
        (
            outcome.identities,
            outcome.grants,
            outcome.unresolved_members
        ),
        (1, 1, 1)
    );
    let name = app
        .blocking(|db, _, _| {
            use attest::db::schema::identity_versions as i;
            use diesel::prelude::*;
            i::table
                .select(i::display_name)
                .first::<String>(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(name, "base64:/0FubgA=");
    let id = outcome.sync_run_id.clone();
    let problems = app
        .blocking(move |db, _, _| problems_of(&mut db.conn().unwrap(), &id).unwrap())
        .await;
    assert_eq!(problems[0].detail, "dn base64:dWlkPf8sb3U9cGVvcGxl");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_group_a_cycle_and_a_deep_chain_are_expanded_without_looping() {
    const PEOPLE: usize = 100_000;
    const DEPTH: usize = 50;
    let dir = common::temp_dir();
    let path = dir.path().join("directory.ldif");
    let mut ldif = String::with_capacity(PEOPLE * 120);
    for p in 0..PEOPLE {
        write!(
            ldif,
            "dn: uid=p{p},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: p{p}\n\n"
        )
        .unwrap();
    }
    ldif.push_str(
        "dn: cn=everyone,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: everyone\n",
    );
    for p in 0..PEOPLE {
        writeln!(ldif, "member: uid=p{p},ou=people,dc=example,dc=com").unwrap();
    }
    ldif.push('\n');
    // chain-00 contains chain-01 ... contains chain-50, which holds p0; and two groups that
    // contain each other.
    for level in 0..=DEPTH {
        let member = if level == DEPTH {
            "uid=p0,ou=people,dc=example,dc=com".to_string()
        } else {
            format!("cn=chain-{:02},ou=groups,dc=example,dc=com", level + 1)
        };
        write!(
            ldif,
            "dn: cn=chain-{level:02},ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\n\
             cn: chain-{level:02}\nmember: {member}\n\n"
        )
        .unwrap();
    }
    ldif.push_str(
        "dn: cn=ring-a,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: ring-a\n\
         member: cn=ring-b,ou=groups,dc=example,dc=com\nmember: uid=p1,ou=people,dc=example,dc=com\n\n\
         dn: cn=ring-b,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: ring-b\n\
         member: cn=ring-a,ou=groups,dc=example,dc=com\n",
    );
    std::fs::write(&path, ldif).unwrap();
    let mut source = common::ldif_source(&path);
    if let SourceConfig::Ldif(c) = &mut source {
        c.privileged_groups.clear();
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    let outcome = app.sync().await.unwrap();
    // everyone: 100k; p0 in all 51 chain groups; p1 in both ring groups.
    assert_eq!(outcome.grants, (PEOPLE + DEPTH + 1 + 2) as i64);
    assert_eq!(outcome.cycles, 1);
    let via = app
        .blocking(|db, _, _| {
            use attest::db::schema::{entitlement_versions as e, grant_versions as g};
            use diesel::prelude::*;
            g::table
                .inner_join(e::table.on(e::external_id.eq(g::entitlement_external_id)))
                .filter(e::name.eq("chain-00"))
                .select(g::via)
                .first::<Option<String>>(&mut *db.conn().unwrap())
                .unwrap()
                .unwrap()
        })
        .await;
    let expected: Vec<String> = (1..=DEPTH).map(|l| format!("chain-{l:02}")).collect();
    assert_eq!(via, expected.join(" <- "));
    app.stop().await;
}

/// Ends the running sync run from outside once `after` people were read, as another process
/// sweeping it as abandoned would.
struct EndRunAfter {
    after: u64,
    db: attest::db::Database,
    done: std::sync::atomic::AtomicBool,
}

impl SyncObserver for EndRunAfter {
    fn read(&self, people: u64, _groups: u64) {
        use diesel::RunQueryDsl;
        if people >= self.after && !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            diesel::sql_query(
                "UPDATE sync_runs SET status = 'failed', error = 'swept' WHERE status = 'running'",
            )
            .execute(&mut *self.db.conn().unwrap())
            .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_ended_by_another_process_stops_writing() {
    let dir = common::temp_dir();
    let path = dir.path().join("directory.ldif");
    let mut ldif = String::new();
    for p in 0..25_000 {
        write!(
            ldif,
            "dn: uid=p{p},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: p{p}\n\n"
        )
        .unwrap();
    }
    std::fs::write(&path, ldif).unwrap();
    let mut source = common::ldif_source(&path);
    if let SourceConfig::Ldif(c) = &mut source {
        c.privileged_groups.clear();
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    let error = app
        .blocking(|db, clock, config| {
            let end = EndRunAfter {
                after: 1_000,
                db: db.clone(),
                done: std::sync::atomic::AtomicBool::new(false),
            };
            let source = config.source(SOURCE).unwrap();
            sync_source_observed(db, clock, SOURCE, source, "test", &end)
        })
        .await
        .expect_err("a run ended elsewhere must not go on");
    assert!(
        error.to_string().contains("ended by another process"),
        "{error}"
    );
    assert_eq!(
        app.count("identity_versions").await,
        0,
        "its next batch was refused"
    );
    app.stop().await;
}
