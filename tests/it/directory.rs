//! The directory as a versioned graph, against a real slapd: nested groups reach their members
//! with the chain they come through, what cannot be placed is listed, an unchanged directory
//! writes nothing, and changes (joiner, leaver, rename, moved membership) are the diff, with an
//! access's "first seen" surviving a rename.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use attest::config::SourceConfig;
use attest::directory::snapshot::{SyncProblem, problems_of, sync_run};

use crate::common::{self, TestApp};
use crate::support::postgres;
use crate::support::slapd::Slapd;

fn nested_fixture() -> PathBuf {
    crate::support::repo_root().join("tests/fixtures/nested.ldif")
}

fn with_privileged(mut source: SourceConfig, group: &str) -> SourceConfig {
    match &mut source {
        SourceConfig::Ldap(c) => c.privileged_groups = vec![group.into()],
        SourceConfig::Ldif(c) => c.privileged_groups = vec![group.into()],
        SourceConfig::Csv(c) => c.privileged_groups = vec![group.into()],
        SourceConfig::Oidc(c) => c.privileged_groups = vec![group.into()],
    }
    source
}

async fn app_on(source: SourceConfig, database_url: &str, dir: &Path) -> TestApp {
    let config = common::config(database_url, source, None, dir);
    TestApp::spawn_without_background_workers(config).await
}

/// (login, group, via) of every review item of the only campaign, sorted.
async fn reviewed(app: &TestApp) -> Vec<(String, String, String)> {
    app.blocking(|db, _, _| {
        use attest::db::schema::review_items;
        use diesel::prelude::*;
        let mut rows: Vec<(String, String, Option<String>)> = review_items::table
            .select((
                review_items::identity_login,
                review_items::entitlement_name,
                review_items::via,
            ))
            .load(&mut *db.conn().unwrap())
            .unwrap();
        rows.sort();
        rows.into_iter()
            .map(|(login, group, via)| (login, group, via.unwrap_or_default()))
            .collect()
    })
    .await
}

fn access(login: &str, group: &str, via: &str) -> (String, String, String) {
    (login.into(), group.into(), via.into())
}

/// What tests/fixtures/nested.ldif gives, worked out by hand (see the file's header).
async fn assert_nested_population(app: &TestApp) {
    let outcome = app.sync().await.unwrap();
    assert_eq!(
        (
            outcome.identities,
            outcome.entitlements,
            outcome.memberships,
            outcome.grants,
            outcome.unresolved_members,
            outcome.cycles
        ),
        (5, 7, 11, 13, 2, 1)
    );
    app.start_campaign().await;
    assert_eq!(
        reviewed(app).await,
        vec![
            access("alee", "qa", ""),
            access("ceo", "all-staff", ""),
            access("dev1", "all-staff", "eng"),
            access("dev1", "eng", ""),
            access("dev1", "loop-a", ""),
            access("dev1", "loop-b", "loop-a"),
            access("ops1", "all-staff", "eng <- sre"),
            access("ops1", "backup-operators", ""),
            access("ops1", "eng", "sre"),
            access("ops1", "sre", ""),
            access("ops2", "all-staff", "eng <- sre"),
            access("ops2", "eng", "sre"),
            access("ops2", "sre", ""),
        ]
    );
    let id = outcome.sync_run_id.clone();
    let problems = app
        .blocking(move |db, _, _| problems_of(&mut db.conn().unwrap(), &id).unwrap())
        .await;
    let problem = |kind: &str, subject: &str, detail: &str| SyncProblem {
        kind: kind.into(),
        subject: subject.into(),
        detail: detail.into(),
    };
    assert_eq!(
        problems,
        vec![
            problem(
                "cycle",
                "loop-a",
                "groups nested in each other: loop-a, loop-b"
            ),
            problem(
                "unresolved_member",
                "backup-operators",
                "dn uid=ghost,ou=people,dc=example,dc=com"
            ),
            problem(
                "unresolved_member",
                "backup-operators",
                "dn uid=svc-backup,ou=services,dc=example,dc=com"
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_groups_reach_their_members_with_the_chain_over_ldap() {
    let dir = common::temp_dir();
    let slapd = Slapd::start_with_ldif_file(&nested_fixture());
    let source = with_privileged(common::ldap_source(&slapd), "backup-operators");
    let app = app_on(source, &common::sqlite_url(dir.path()), dir.path()).await;
    assert_nested_population(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_groups_reach_their_members_with_the_chain_from_an_ldif_file() {
    let dir = common::temp_dir();
    let source = with_privileged(common::ldif_source(&nested_fixture()), "backup-operators");
    let app = app_on(source, &common::sqlite_url(dir.path()), dir.path()).await;
    assert_nested_population(&app).await;
    app.stop().await;
}

const VERSION_TABLES: [&str; 4] = [
    "identity_versions",
    "entitlement_versions",
    "membership_versions",
    "grant_versions",
];

/// Every row of the versioned tables as (table, id, valid from, valid to), and every last logon:
/// what an unchanged sync must leave exactly as it was.
async fn versioned_rows(app: &TestApp) -> Vec<String> {
    app.blocking(|db, _, _| {
        use diesel::RunQueryDsl;
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            valid_from: i64,
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
            valid_to: Option<i64>,
        }
        let mut conn = db.conn().unwrap();
        let mut out = Vec::new();
        for table in VERSION_TABLES {
            let rows: Vec<Row> = diesel::sql_query(format!(
                "SELECT id, valid_from, valid_to FROM {table} ORDER BY id"
            ))
            .load(&mut *conn)
            .unwrap();
            out.extend(
                rows.iter()
                    .map(|r| format!("{table} {} {} {:?}", r.id, r.valid_from, r.valid_to)),
            );
        }
        let logons: Vec<(i64, Option<chrono::NaiveDateTime>)> = {
            use attest::db::schema::identity_versions as i;
            use diesel::prelude::*;
            i::table
                .select((i::id, i::last_login_at))
                .order(i::id.asc())
                .load(&mut *conn)
                .unwrap()
        };
        out.extend(logons.iter().map(|l| format!("logon {l:?}")));
        out
    })
    .await
}

async fn unchanged_resync_writes_nothing(database_url: &str, dir: &Path) {
    let slapd = Slapd::start_with_ldif_file(&nested_fixture());
    let source = with_privileged(common::ldap_source(&slapd), "backup-operators");
    let app = app_on(source, database_url, dir).await;
    let first = app.sync().await.unwrap();
    let before = versioned_rows(&app).await;
    let problem_rows = app.count("sync_run_problems").await;
    app.clock.advance(chrono::Duration::hours(1));
    let second = app.sync().await.unwrap();
    assert_eq!(
        versioned_rows(&app).await,
        before,
        "an unchanged sync changed rows"
    );
    assert_eq!(
        app.count("sync_run_problems").await,
        problem_rows,
        "problems are named, not copied"
    );
    assert!(!second.diff.directory_changed(), "{:?}", second.diff);
    assert_eq!(
        (second.identities, second.grants, second.unresolved_members),
        (first.identities, first.grants, first.unresolved_members)
    );
    let (a, b) = (first.sync_run_id.clone(), second.sync_run_id.clone());
    let (first_run, second_run) = app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            (
                sync_run(&mut conn, &a).unwrap(),
                sync_run(&mut conn, &b).unwrap(),
            )
        })
        .await;
    assert_eq!(
        first_run.raw_sha256, second_run.raw_sha256,
        "IPE hash is stable"
    );
    assert_eq!(second_run.seq, first_run.seq + 1);
    // The unchanged run still lists what it could not place.
    let problems = app
        .blocking(move |db, _, _| problems_of(&mut db.conn().unwrap(), &second_run.id).unwrap())
        .await;
    assert_eq!(problems.len(), 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_resync_writes_nothing_on_sqlite() {
    let dir = common::temp_dir();
    unchanged_resync_writes_nothing(&common::sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_resync_writes_nothing_on_postgres() {
    let dir = common::temp_dir();
    let database = postgres::database();
    unchanged_resync_writes_nothing(&database.url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_leavers_movers_and_a_rename_are_the_diff() {
    let dir = common::temp_dir();
    let slapd = Slapd::start_with_ldif_file(&nested_fixture());
    let app = app_on(
        with_privileged(common::ldap_source(&slapd), "backup-operators"),
        &common::sqlite_url(dir.path()),
        dir.path(),
    )
    .await;
    app.sync().await.unwrap();
    // A campaign open across the rename: its items are keyed by the person's stable id.
    app.start_campaign().await;
    let dev1_id = app
        .blocking(|db, _, _| {
            use attest::db::schema::review_items as r;
            use diesel::prelude::*;
            r::table
                .filter(r::identity_login.eq("dev1"))
                .select(r::identity_external_id)
                .first::<String>(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;

    // A day later: newbie joins (into sre), ops2 leaves, dev1 is renamed (refint updates the
    // groups that name her), the CEO's address changes.
    app.clock.advance(chrono::Duration::days(1));
    slapd.ldapadd(
        "dn: uid=newbie,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: newbie\n\
         cn: Nora New\nsn: New\nmail: newbie@example.com\n",
    );
    slapd.ldapmodify(
        "dn: cn=sre,ou=groups,dc=example,dc=com\nchangetype: modify\nadd: member\n\
         member: uid=newbie,ou=people,dc=example,dc=com\n\n\
         dn: uid=ops2,ou=people,dc=example,dc=com\nchangetype: delete\n\n\
         dn: uid=dev1,ou=people,dc=example,dc=com\nchangetype: modrdn\n\
         newrdn: uid=dana\ndeleteoldrdn: 1\n\n\
         dn: uid=ceo,ou=people,dc=example,dc=com\nchangetype: modify\nreplace: mail\n\
         mail: carla@example.com\n",
    );
    let outcome = app.sync().await.unwrap();
    let d = outcome.diff;
    assert_eq!((d.joiners, d.leavers, d.movers), (1, 1, 2), "{d:?}");
    assert_eq!(
        (d.groups_added, d.groups_removed, d.groups_changed),
        (0, 0, 3),
        "sre, eng and loop-a changed members: {d:?}"
    );
    assert_eq!(
        (d.memberships_added, d.memberships_removed),
        (3, 3),
        "{d:?}"
    );
    assert_eq!(
        (d.grants_added, d.grants_removed, d.grants_rerouted),
        (3, 3, 0),
        "newbie gains sre, eng, all-staff; ops2 loses them; dana keeps hers: {d:?}"
    );

    let renamed_id = app
        .blocking(|db, _, _| {
            use attest::db::schema::identity_versions as i;
            use diesel::prelude::*;
            i::table
                .filter(i::login.eq("dana"))
                .filter(i::valid_to.is_null())
                .select(i::external_id)
                .first::<String>(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(
        renamed_id, dev1_id,
        "the open campaign's items follow the renamed person"
    );

    app.clock.advance(chrono::Duration::days(1));
    app.start_campaign().await;
    let since = app
        .blocking(|db, _, _| {
            use attest::db::schema::review_items;
            use diesel::prelude::*;
            review_items::table
                .inner_join(attest::db::schema::campaigns::table)
                .filter(review_items::entitlement_name.eq("eng"))
                .filter(
                    attest::db::schema::campaigns::opened_at
                        .gt(common::start_time().naive_utc() + chrono::Duration::days(1)),
                )
                .select((review_items::identity_login, review_items::granted_since))
                .order(review_items::identity_login.asc())
                .load::<(String, chrono::NaiveDateTime)>(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    let day = |t: chrono::NaiveDateTime| t.date().to_string();
    let start = common::start_time().date_naive().to_string();
    let next = (common::start_time() + chrono::Duration::days(1))
        .date_naive()
        .to_string();
    assert_eq!(
        since
            .iter()
            .map(|(login, at)| (login.as_str(), day(*at)))
            .collect::<Vec<_>>(),
        vec![("dana", start.clone()), ("newbie", next), ("ops1", start)],
        "a rename keeps when the access was first seen"
    );
    app.stop().await;
}
