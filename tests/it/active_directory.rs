//! Active Directory behaviour against a real Samba AD DC (StartTLS, bound as a UPN):
//! `objectGUID` ids in their canonical form, `userAccountControl` disabled accounts,
//! `sAMAccountName` logins, nested groups, `memberOf`, and a group read in ranges
//! (`member;range=0-9`, then the following windows) whose member count equals the server's
//! (TESTPLAN F10); and a revoke removed from the group that really holds the membership.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;

use attest::config::{GroupQuery, LdapSourceConfig, PeopleQuery, SourceConfig};
use base64::Engine;
use secrecy::SecretString;

use crate::common::{self, TestApp};
use crate::remediation_steps::{later, revoke_and_close, round, task_of};
use crate::support::samba::{self, SambaDc};

fn ad_source(dc: &SambaDc) -> SourceConfig {
    SourceConfig::Ldap(LdapSourceConfig {
        url: dc.url.clone(),
        bind_dn: samba::ADMIN_UPN.into(),
        bind_password: Some(SecretString::from(samba::ADMIN_PASSWORD)),
        bind_password_file: None,
        starttls: true,
        tls_ca_file: Some(dc.ca_file.clone()),
        allow_cleartext_bind: false,
        page_size: 10,
        member_range_size: Some(10),
        referrals: Default::default(),
        timeout_seconds: 30,
        people: PeopleQuery {
            base_dns: vec![samba::USERS_DN.into()],
            filter: "(&(objectClass=user)(objectCategory=person))".into(),
            id_attribute: "objectGUID".into(),
            login_attribute: "sAMAccountName".into(),
            ..PeopleQuery::default()
        },
        groups: GroupQuery {
            base_dns: vec![samba::USERS_DN.into()],
            id_attribute: "objectGUID".into(),
            ..GroupQuery::default()
        },
        privileged_groups: vec!["Domain Admins".into()],
        remediation: None,
    })
}

fn guid_of(dc: &SambaDc, account: &str) -> String {
    let out = dc.ldapsearch(
        samba::USERS_DN,
        &format!("(sAMAccountName={account})"),
        &["objectGUID"],
    );
    let encoded = out
        .lines()
        .find_map(|l| l.strip_prefix("objectGUID:: "))
        .unwrap();
    let b = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        b[10..]
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_population_is_read_exactly() {
    assert!(samba::available(), "tests/run installs Samba's AD DC");
    let dc = SambaDc::start();
    dc.add_user("alice", "Alice", "Anders", "alice@acme.test");
    dc.add_user("bob", "Bob", "Berg", "bob@acme.test");
    // 25 accounts created without a password: Active Directory keeps them disabled (546).
    let users = samba::USERS_DN;
    let mut ldif = String::new();
    for i in 1..=25 {
        write!(
            ldif,
            "dn: CN=user{i:02},{users}\nobjectClass: user\nsAMAccountName: user{i:02}\n\n"
        )
        .unwrap();
    }
    write!(
        ldif,
        "dn: CN=big,{users}\nobjectClass: group\nsAMAccountName: big\n"
    )
    .unwrap();
    for i in 1..=25 {
        writeln!(ldif, "member: CN=user{i:02},{users}").unwrap();
    }
    writeln!(ldif, "member: CN=alice,{users}\n").unwrap();
    write!(
        ldif,
        "dn: CN=sre,{users}\nobjectClass: group\nsAMAccountName: sre\nmember: CN=alice,{users}\n\n\
         dn: CN=eng,{users}\nobjectClass: group\nsAMAccountName: eng\nmember: CN=sre,{users}\n\
         member: CN=bob,{users}\n"
    )
    .unwrap();
    dc.ldapadd(&ldif);
    let server_members = dc
        .ldapsearch(&format!("CN=big,{users}"), "(objectClass=*)", &["member"])
        .lines()
        .filter(|l| l.starts_with("member"))
        .count();
    assert_eq!(server_members, 26);

    let dir = common::temp_dir();
    let config = common::config(
        &common::sqlite_url(dir.path()),
        ad_source(&dc),
        None,
        dir.path(),
    );
    let app = TestApp::spawn_without_background_workers(config).await;
    let outcome = app.sync().await.unwrap();
    let alice_guid = guid_of(&dc, "alice");

    let (people, big, alice) = app
        .blocking(move |db, _, _| {
            use attest::db::schema::identity_versions as i;
            use attest::db::schema::{entitlement_versions as e, grant_versions as g};
            use diesel::prelude::*;
            let mut conn = db.conn().unwrap();
            let people: Vec<(String, String, String)> = i::table
                .select((i::external_id, i::login, i::status))
                .load(&mut *conn)
                .unwrap();
            let big_id: String = e::table
                .filter(e::name.eq("big"))
                .select(e::external_id)
                .first(&mut *conn)
                .unwrap();
            // What the group's own `member` ranges list (memberOf would fill gaps otherwise).
            let listed: i64 = e::table
                .filter(e::external_id.eq(&big_id))
                .select(e::direct_members)
                .first(&mut *conn)
                .unwrap();
            let effective: i64 = g::table
                .filter(g::entitlement_external_id.eq(&big_id))
                .count()
                .get_result(&mut *conn)
                .unwrap();
            let big = (listed, effective);
            let alice: Vec<(String, Option<String>)> = g::table
                .inner_join(e::table.on(e::external_id.eq(g::entitlement_external_id)))
                .filter(g::identity_external_id.eq(&alice_guid))
                .select((e::name, g::via))
                .order(e::name.asc())
                .load(&mut *conn)
                .unwrap();
            (people, big, alice)
        })
        .await;
    assert_eq!(
        big,
        (server_members as i64, server_members as i64),
        "every range of `big` was read"
    );
    assert_eq!(
        alice,
        vec![
            ("big".to_string(), None),
            ("eng".to_string(), Some("sre".to_string())),
            ("sre".to_string(), None),
        ]
    );
    let alice_row = people
        .iter()
        .find(|(_, login, _)| login == "alice")
        .unwrap();
    assert_eq!(
        alice_row.0,
        guid_of(&dc, "alice"),
        "objectGUID in canonical form"
    );
    assert_eq!(alice_row.2, "active");
    let disabled = people
        .iter()
        .filter(|(_, login, status)| login.starts_with("user") && status == "disabled")
        .count();
    assert_eq!(disabled, 25, "userAccountControl 546 is a disabled account");
    assert_eq!(outcome.unresolved_members, 0, "{}", outcome.summary());

    // An unchanged directory (ranges and all) writes nothing the second time.
    let before = app.count("membership_versions").await;
    let again = app.sync().await.unwrap();
    assert!(!again.diff.directory_changed(), "{:?}", again.diff);
    assert_eq!(app.count("membership_versions").await, before);
    app.stop().await;
}

/// Remediation on Active Directory: access to `eng` that alice holds through `sre` is revoked,
/// and the write account removes her from `sre` (AD's `member`), not from `eng`; the next
/// sync proves it gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_is_removed_from_the_group_that_holds_it_in_active_directory() {
    assert!(samba::available(), "tests/run installs Samba's AD DC");
    let dc = SambaDc::start();
    dc.add_user("alice", "Alice", "Anders", "alice@acme.test");
    dc.add_user("bob", "Bob", "Berg", "bob@acme.test");
    let users = samba::USERS_DN;
    dc.ldapadd(&format!(
        "dn: CN=sre,{users}\nobjectClass: group\nsAMAccountName: sre\nmember: CN=alice,{users}\n\
         member: CN=bob,{users}\n\n\
         dn: CN=eng,{users}\nobjectClass: group\nsAMAccountName: eng\nmember: CN=sre,{users}\n"
    ));
    let mut source = ad_source(&dc);
    if let SourceConfig::Ldap(ldap) = &mut source {
        ldap.remediation = Some(attest::config::RemediationConfig {
            mode: attest::config::RemediationMode::Ldap,
            bind_dn: samba::ADMIN_UPN.into(),
            bind_password: Some(SecretString::from(samba::ADMIN_PASSWORD)),
            ..Default::default()
        });
    }
    let dir = common::temp_dir();
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let (_, item) = revoke_and_close(&app, "alice", "eng").await;
    let round_report = round(&app).await;
    assert_eq!(round_report.execution.executed, 1, "{round_report:?}");
    let members = |group: &str| -> Vec<String> {
        dc.ldapsearch(
            &format!("CN={group},{users}"),
            "(objectClass=*)",
            &["member"],
        )
        .lines()
        .filter_map(|l| l.strip_prefix("member: "))
        .map(str::to_string)
        .collect()
    };
    assert_eq!(members("sre"), vec![format!("CN=bob,{users}")]);
    assert_eq!(members("eng"), vec![format!("CN=sre,{users}")]);
    later(&app, 5).await;
    app.sync().await.unwrap();
    assert_eq!(round(&app).await.verification.verified, 1);
    assert_eq!(task_of(&app, &item).await.state, "verified");
    app.stop().await;
}
