//! Every group schema the defaults read, against a real slapd: `groupOfUniqueNames`
//! (`uniqueMember`, with its optional unique-id suffix), `posixGroup` (`memberUid` and the
//! primary group by `gidNumber`), memberships stated only in a person's `memberOf`, a group
//! named in `memberOf` but outside the group search (listed), service accounts by base, and
//! account state from a configured attribute.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::config::SourceConfig;
use attest::directory::snapshot::problems_of;

use crate::common::{self, TestApp};
use crate::support::slapd::Slapd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_default_group_schema_and_member_of_are_read() {
    let dir = common::temp_dir();
    let slapd = Slapd::start_with_ldif_file(
        &crate::support::repo_root().join("tests/fixtures/schemas.ldif"),
    );
    let mut source = common::ldap_source(&slapd);
    if let SourceConfig::Ldap(ldap) = &mut source {
        ldap.people.base_dns = vec![
            "ou=people,dc=example,dc=com".into(),
            "ou=services,dc=example,dc=com".into(),
        ];
        // The reader account has no uid: keep it out with the filter.
        ldap.people.filter = "(&(objectClass=inetOrgPerson)(uid=*))".into();
        ldap.people.service_account_bases = vec!["ou=services,dc=example,dc=com".into()];
        ldap.people.disabled_attribute = Some("employeeType".into());
        ldap.privileged_groups = vec![];
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    let outcome = app.sync().await.unwrap();
    assert_eq!(
        (outcome.identities, outcome.entitlements, outcome.grants),
        (4, 3, 5)
    );

    let accesses = app
        .blocking(|db, _, _| {
            use attest::db::schema::{grant_versions, identity_versions};
            use diesel::prelude::*;
            let mut conn = db.conn().unwrap();
            let people: Vec<(String, String, String, String)> = identity_versions::table
                .select((
                    identity_versions::external_id,
                    identity_versions::login,
                    identity_versions::account_kind,
                    identity_versions::status,
                ))
                .load(&mut *conn)
                .unwrap();
            let groups: Vec<(String, String)> = attest::db::schema::entitlement_versions::table
                .select((
                    attest::db::schema::entitlement_versions::external_id,
                    attest::db::schema::entitlement_versions::name,
                ))
                .load(&mut *conn)
                .unwrap();
            let grants: Vec<(String, String)> = grant_versions::table
                .select((
                    grant_versions::identity_external_id,
                    grant_versions::entitlement_external_id,
                ))
                .load(&mut *conn)
                .unwrap();
            let login = |id: &str| people.iter().find(|p| p.0 == id).unwrap().1.clone();
            let group = |id: &str| groups.iter().find(|g| g.0 == id).unwrap().1.clone();
            let mut accesses: Vec<(String, String)> =
                grants.iter().map(|(p, g)| (login(p), group(g))).collect();
            accesses.sort();
            let mut kinds: Vec<(String, String, String)> = people
                .into_iter()
                .map(|(_, login, kind, status)| (login, kind, status))
                .collect();
            kinds.sort();
            (accesses, kinds)
        })
        .await;
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        accesses.0,
        vec![
            pair("ann", "developers"),
            pair("ann", "vpn"),
            pair("bob", "wiki-editors"),
            pair("cara", "developers"),
            pair("cara", "wiki-editors"),
        ]
    );
    let kind = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        accesses.1,
        vec![
            kind("ann", "person", "active"),
            kind("bob", "person", "active"),
            kind("cara", "person", "disabled"),
            kind("svc-ci", "service", "active"),
        ]
    );
    let id = outcome.sync_run_id.clone();
    let problems = app
        .blocking(move |db, _, _| problems_of(&mut db.conn().unwrap(), &id).unwrap())
        .await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].kind, "group_outside_scope");
    assert_eq!(
        problems[0].subject,
        "cn=domain admins,cn=builtin,dc=example,dc=com"
    );
    app.stop().await;
}

#[test]
fn a_privileged_group_that_matches_nothing_is_named_and_refused() {
    let dir = common::temp_dir();
    let config = crate::binary::write_config(dir.path(), None, None, "");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(r#"["prod-admins"]"#, r#"["prod-admins", "db-admins"]"#);
    std::fs::write(&config, text).unwrap();

    let synced = crate::binary::run_ok(dir.path(), &config, &["sync"]);
    assert!(
        synced.contains("privileged group(s) not found: db-admins"),
        "{synced}"
    );
    for args in [
        &["check-config"][..],
        &["campaign", "start", "access-review", "--now"][..],
    ] {
        let output = crate::binary::run(dir.path(), &config, args);
        assert!(!output.status.success(), "{args:?} accepted it");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("sources.corp.privileged_groups") && stderr.contains("`db-admins`"),
            "{args:?}: {stderr}"
        );
    }
    // Fixed, both pass.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(r#", "db-admins""#, "");
    std::fs::write(&config, text).unwrap();
    crate::binary::run_ok(dir.path(), &config, &["check-config"]);
    crate::binary::run_ok(
        dir.path(),
        &config,
        &["campaign", "start", "access-review", "--now"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_csv_access_list_is_reviewed_and_a_broken_one_imports_nothing() {
    let dir = common::temp_dir();
    let csv = dir.path().join("billing-app.csv");
    std::fs::write(
        &csv,
        "person_id,login,name,email,manager,entitlement,privileged\n\
         u1,ann,Ann,ann@example.com,,billing-admin,true\n\
         u2,bob,Bob,bob@example.com,u1,billing-admin,\n\
         u2,bob,Bob,bob@example.com,u1,invoices-read,false\n",
    )
    .unwrap();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    config.sources.insert(
        common::SOURCE.into(),
        SourceConfig::Csv(attest::config::CsvSourceConfig {
            path: csv.clone(),
            privileged_groups: vec![],
            remediation: None,
        }),
    );
    config
        .campaigns
        .get_mut(common::DEFINITION)
        .unwrap()
        .fallback_reviewers = vec!["security@example.com".into()];
    let app = TestApp::spawn_without_background_workers(config).await;
    let first = app.sync().await.unwrap();
    assert_eq!(
        (first.identities, first.entitlements, first.grants),
        (2, 2, 3)
    );

    // A later export with mistakes: refused with its lines, the previous state stays current.
    std::fs::write(
        &csv,
        "person_id,login,entitlement,privileged\nu1,ann,billing-admin,perhaps\n",
    )
    .unwrap();
    let error = app.sync().await.expect_err("a broken file imports nothing");
    assert!(
        error
            .to_string()
            .contains("line 2: privileged is `perhaps`"),
        "{error}"
    );
    let started = app.start_campaign().await;
    assert_eq!(started.campaign.sync_run_id, first.sync_run_id);
    let items = app
        .blocking(|db, _, _| {
            use attest::db::schema::review_items;
            use diesel::prelude::*;
            let mut rows: Vec<(String, String, bool, String)> = review_items::table
                .inner_join(attest::db::schema::reviewers::table)
                .select((
                    review_items::identity_login,
                    review_items::entitlement_name,
                    review_items::privileged,
                    attest::db::schema::reviewers::email,
                ))
                .load(&mut *db.conn().unwrap())
                .unwrap();
            rows.sort();
            rows
        })
        .await;
    let item =
        |a: &str, b: &str, p: bool, r: &str| (a.to_string(), b.to_string(), p, r.to_string());
    assert_eq!(
        items,
        vec![
            item("ann", "billing-admin", true, "security@example.com"),
            // ann holds billing-admin herself: bob's goes past her.
            item("bob", "billing-admin", true, "security@example.com"),
            item("bob", "invoices-read", false, "ann@example.com"),
        ]
    );
    app.stop().await;
}
