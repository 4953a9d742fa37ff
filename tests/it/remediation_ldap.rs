//! Remediation against a real slapd: a reviewer's revoke, after close, removes the membership
//! with the write account and the next sync proves it gone (with both as events in the
//! evidence pack); `memberUid` and `uniqueMember` values go too; access through a nested
//! group is removed where it is held; a write the directory's ACL denies fails with the LDAP
//! error and is retried with backoff; a member re-added by hand raises the re-granted alert;
//! a dry run and a protected group (reached through a nested group too) change nothing in the
//! directory; two instances carry a task out once; an unreachable directory charges no
//! attempt, and a decision changed meanwhile cancels the task; an edited `remediation.csv` is
//! refused by `attest verify`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::config::{RemediationConfig, RemediationMode, SourceConfig};
use attest::evidence::export::{PackSettings, export_campaign};
use attest::evidence::verify::verify_pack;
use attest::ledger::checkpoint::CheckpointKey;
use attest::remediation::RoundReport;
use secrecy::SecretString;

use crate::common::{self, TestApp};
use crate::pack_files::{read_entry, reseal};
use crate::remediation_steps::{
    close, later, revoke_and_close, revoke_on_the_review_page, round, task_of,
};

fn entry(pack: &std::path::Path, name: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(pack).unwrap()).unwrap();
    String::from_utf8(read_entry(&mut archive, name)).unwrap()
}
use crate::support::postgres;
use crate::support::slapd::{self, Slapd};

const VPN: &str = "cn=vpn-users,ou=groups,dc=example,dc=com";
const SRE: &str = "cn=sre,ou=groups,dc=example,dc=com";

fn dn_of(login: &str) -> String {
    format!("uid={login},ou=people,dc=example,dc=com")
}

fn remediation(bind_dn: &str, password: &str) -> RemediationConfig {
    RemediationConfig {
        mode: RemediationMode::Ldap,
        bind_dn: bind_dn.into(),
        bind_password: Some(SecretString::from(password)),
        ..RemediationConfig::default()
    }
}

/// slapd with the write account and `sre` (judy, frank) nested in `vpn-users`, and an app whose
/// source removes memberships as configured by `adjust`.
async fn start(
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut RemediationConfig),
) -> (Slapd, TestApp) {
    start_on(&common::sqlite_url(dir), dir, adjust).await
}

async fn start_on(
    database_url: &str,
    dir: &std::path::Path,
    adjust: impl FnOnce(&mut RemediationConfig),
) -> (Slapd, TestApp) {
    let slapd = Slapd::start();
    slapd.add_writer();
    slapd.ldapadd(&format!(
        "dn: {SRE}\nobjectClass: groupOfNames\ncn: sre\ndescription: Site reliability\n\
         member: {}\nmember: {}\n",
        dn_of("judy"),
        dn_of("frank")
    ));
    slapd.ldapmodify(&format!(
        "dn: {VPN}\nchangetype: modify\nadd: member\nmember: {SRE}\n"
    ));
    let mut source = common::ldap_source(&slapd);
    let mut settings = remediation(slapd::WRITER_DN, slapd::WRITER_PASSWORD);
    adjust(&mut settings);
    if let SourceConfig::Ldap(ldap) = &mut source {
        ldap.remediation = Some(settings);
    }
    let config = common::config(database_url, source, None, dir);
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.expect("first sync");
    (slapd, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_is_removed_in_slapd_at_close_and_proved_by_the_next_sync() {
    let dir = common::temp_dir();
    removed_and_proved(&common::sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_is_removed_and_proved_on_postgres() {
    let dir = common::temp_dir();
    let database = postgres::database();
    removed_and_proved(&database.url, dir.path()).await;
}

async fn removed_and_proved(database_url: &str, dir: &std::path::Path) {
    let (slapd, app) = start_on(database_url, dir, |_| {}).await;
    let (campaign, item) = revoke_on_the_review_page(&app, "dave", "vpn-users").await;
    assert_eq!(
        round(&app).await.created,
        0,
        "nothing is carried out before the close"
    );
    close(&app, &campaign).await;
    assert!(slapd.values(VPN, "member").contains(&dn_of("dave")));

    let first = round(&app).await;
    assert_eq!(
        (first.created, first.execution.executed),
        (1, 1),
        "{first:?}"
    );
    let members = slapd.values(VPN, "member");
    assert!(!members.contains(&dn_of("dave")), "{members:?}");
    assert!(
        members.contains(&dn_of("erin")),
        "only dave is removed: {members:?}"
    );
    let task = task_of(&app, &item).await;
    assert_eq!(task.state, "executed");
    let action: serde_json::Value = serde_json::from_str(task.action.as_deref().unwrap()).unwrap();
    assert_eq!(action["group_dn"], VPN);
    assert_eq!(action["attributes"], serde_json::json!(["member"]));

    // Run again: nothing more happens (a task carried out is never carried out twice).
    let again = round(&app).await;
    assert_eq!(again, RoundReport::default());

    later(&app, 5).await;
    let synced = app.sync().await.unwrap();
    let proved = round(&app).await;
    assert_eq!(proved.verification.verified, 1, "{proved:?}");
    let task = task_of(&app, &item).await;
    assert_eq!(task.state, "verified");
    assert_eq!(
        task.verified_sync_run_id.as_deref(),
        Some(synced.sync_run_id.as_str())
    );

    // The evidence pack shows revoke -> LDAP change -> the sync that proved it.
    let pack = dir.join("pack.zip");
    let c = campaign.clone();
    let out = pack.clone();
    app.blocking(move |db, clock, config| {
        let key = CheckpointKey::from_config(&config.evidence).unwrap();
        let settings = PackSettings {
            key: &key,
            retention_years: 7,
        };
        let mut conn = db.conn().unwrap();
        export_campaign(
            &mut conn,
            attest::clock::Clock::now(clock),
            &c,
            &out,
            settings,
            "test",
        )
        .unwrap();
    })
    .await;
    let events = entry(&pack, "events.jsonl");
    let of_task: Vec<(String, serde_json::Value)> = events
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|e| {
            let payload = serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
            (e["kind"].as_str().unwrap().to_string(), payload)
        })
        .filter(|(_, p): &(String, serde_json::Value)| p["task"] == task.id.as_str())
        .collect();
    let payload_of = |kind: &str| {
        of_task
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("no {kind} event for the task: {of_task:?}"))
    };
    assert_eq!(
        payload_of("remediation.executed")["action"]["group_dn"],
        VPN
    );
    assert_eq!(
        payload_of("remediation.verified")["sync_run"],
        synced.sync_run_id.as_str()
    );
    let rows = entry(&pack, "remediation.csv");
    assert!(
        rows.lines()
            .any(|l| l.contains(&task.id) && l.contains("verified")),
        "{rows}"
    );
    let report = verify_pack(&pack, None, None).expect("the pack verifies");
    assert!(report.events > 0);

    // A row edited to another state, or dropped, is refused even when re-signed with the key.
    let key = app
        .blocking(|_, _, config| CheckpointKey::from_config(&config.evidence).unwrap())
        .await;
    let edited = dir.join("edited.zip");
    reseal(&pack, &edited, &key, |name, bytes| {
        if name == "remediation.csv" {
            let text = String::from_utf8(bytes.clone()).unwrap();
            *bytes = text.replace(",verified,", ",executed,").into_bytes();
        }
    });
    let refused = verify_pack(&edited, None, None).unwrap_err().to_string();
    assert!(
        refused.contains("remediation.csv row 2") && refused.contains("state"),
        "{refused}"
    );
    reseal(&pack, &edited, &key, |name, bytes| {
        if name == "remediation.csv" {
            let text = String::from_utf8(bytes.clone()).unwrap();
            *bytes = format!("{}\n", text.lines().next().unwrap()).into_bytes();
        }
    });
    let refused = verify_pack(&edited, None, None).unwrap_err().to_string();
    assert!(refused.contains("has no row for task"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_through_a_nested_group_is_removed_where_it_is_held() {
    let dir = common::temp_dir();
    let (slapd, app) = start(dir.path(), |_| {}).await;
    let (_, item) = revoke_and_close(&app, "judy", "vpn-users").await;
    // The scheduler's tick runs the round inside `attest serve`.
    let now = attest::clock::Clock::now(app.clock.as_ref());
    app.tick_at(now).await;
    assert_eq!(
        slapd.values(SRE, "member"),
        vec![dn_of("frank")],
        "judy is removed from sre, which holds her access"
    );
    assert!(
        slapd.values(VPN, "member").contains(&SRE.to_string()),
        "vpn-users keeps sre as a member"
    );
    let task = task_of(&app, &item).await;
    let action: serde_json::Value = serde_json::from_str(task.action.as_deref().unwrap()).unwrap();
    assert_eq!(action["group_dn"], SRE);
    assert_eq!(action["through_nested_group"], true);
    assert_eq!(action["reviewed_group"], "vpn-users");
    later(&app, 5).await;
    app.sync().await.unwrap();
    assert_eq!(round(&app).await.verification.verified, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_acl_denies_fails_with_the_ldap_error_and_is_retried_with_backoff() {
    let dir = common::temp_dir();
    let (slapd, app) = start(dir.path(), |r| {
        r.bind_dn = slapd::READER_DN.into();
        r.bind_password = Some(SecretString::from(slapd::READER_PASSWORD));
        r.retry_base_seconds = 60;
        r.max_attempts = 3;
    })
    .await;
    let (_, item) = revoke_and_close(&app, "dave", "vpn-users").await;
    let first = round(&app).await;
    assert_eq!(first.execution.failed, 1);
    let task = task_of(&app, &item).await;
    assert_eq!((task.state.as_str(), task.attempts), ("failed", 1));
    let error = task.last_error.clone().unwrap();
    assert!(error.contains("insufficient access rights (50)"), "{error}");
    assert!(slapd.values(VPN, "member").contains(&dn_of("dave")));
    let failed_at = attest::clock::Clock::now(app.clock.as_ref());
    let waited = |task: &attest::remediation::Task| {
        (attest::db::time::from_db(task.next_attempt_at.unwrap()) - failed_at).num_seconds()
    };
    assert_eq!(waited(&task), 60);

    // Not before the backoff has passed; then again, waiting twice as long; then it waits
    // for an admin.
    app.clock.set(failed_at + chrono::Duration::seconds(59));
    assert_eq!(round(&app).await.execution.failed, 0);
    app.clock.set(failed_at + chrono::Duration::seconds(60));
    assert_eq!(round(&app).await.execution.failed, 1);
    let task = task_of(&app, &item).await;
    assert_eq!((task.attempts, waited(&task)), (2, 60 + 120));
    app.clock.set(failed_at + chrono::Duration::seconds(180));
    assert_eq!(round(&app).await.execution.failed, 1);
    let task = task_of(&app, &item).await;
    assert_eq!((task.attempts, task.next_attempt_at), (3, None));
    later(&app, 600).await;
    assert_eq!(
        round(&app).await.execution.failed,
        0,
        "gave up after max_attempts"
    );
    let listed = app
        .blocking(|db, _, _| {
            attest::remediation::list(&mut db.conn().unwrap(), Some("failed"), None, 10).unwrap()
        })
        .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].person, "dave");
    let failures = app
        .blocking(|db, _, _| {
            attest::ledger::events::of_kind(
                &mut db.conn().unwrap(),
                attest::ledger::EventKind::RemediationFailed,
            )
            .unwrap()
        })
        .await;
    assert_eq!(failures.len(), 3, "one event per attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_added_back_by_hand_raises_the_regranted_alert() {
    let dir = common::temp_dir();
    let (slapd, app) = start(dir.path(), |_| {}).await;
    let (_, item) = revoke_and_close(&app, "dave", "vpn-users").await;
    round(&app).await;
    later(&app, 5).await;
    app.sync().await.unwrap();
    round(&app).await;
    assert_eq!(task_of(&app, &item).await.state, "verified");

    slapd.ldapmodify(&format!(
        "dn: {VPN}\nchangetype: modify\nadd: member\nmember: {}\n",
        dn_of("dave")
    ));
    later(&app, 60 * 24).await;
    app.sync().await.unwrap();
    assert_eq!(round(&app).await.verification.regranted, 1);
    assert_eq!(task_of(&app, &item).await.state, "regranted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_and_a_protected_group_change_nothing_in_the_directory() {
    let dir = common::temp_dir();
    let (slapd, app) = start(dir.path(), |r| r.dry_run = true).await;
    let (_, item) = revoke_and_close(&app, "dave", "vpn-users").await;
    let report = round(&app).await;
    assert_eq!(
        (report.execution.planned, report.execution.executed),
        (1, 0)
    );
    assert!(slapd.values(VPN, "member").contains(&dn_of("dave")));
    let task = task_of(&app, &item).await;
    assert_eq!(task.state, "pending");
    let plan: serde_json::Value = serde_json::from_str(task.action.as_deref().unwrap()).unwrap();
    assert_eq!(
        (plan["dry_run"].clone(), plan["group_dn"].clone()),
        (true.into(), VPN.into())
    );
    drop(app);

    let dir = common::temp_dir();
    let (slapd, app) = start(dir.path(), |r| {
        r.protected_groups = vec!["VPN-Users".into()]
    })
    .await;
    // judy has vpn-users through sre: writing sre would change access to vpn-users.
    let (_, item) = revoke_and_close(&app, "judy", "vpn-users").await;
    assert_eq!(round(&app).await.execution.blocked, 1);
    assert!(slapd.values(SRE, "member").contains(&dn_of("judy")));
    let task = task_of(&app, &item).await;
    assert_eq!(task.state, "blocked");
    let why = task.last_error.unwrap();
    assert!(
        why.contains("vpn-users is protected") && why.contains("VPN-Users"),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_carry_a_task_out_once() {
    let dir = common::temp_dir();
    let database = postgres::database();
    let (slapd, app) = start_on(&database.url, dir.path(), |_| {}).await;
    let (_, item) = revoke_and_close(&app, "dave", "vpn-users").await;
    // Two instances run their round at the same moment on the same database.
    let rounds: Vec<RoundReport> = futures_join(&app).await;
    let executed: usize = rounds.iter().map(|r| r.execution.executed).sum();
    let created: usize = rounds.iter().map(|r| r.created).sum();
    assert_eq!((created, executed), (1, 1), "{rounds:?}");
    assert!(!slapd.values(VPN, "member").contains(&dn_of("dave")));
    let events = app
        .blocking(|db, _, _| {
            attest::ledger::events::of_kind(
                &mut db.conn().unwrap(),
                attest::ledger::EventKind::RemediationExecuted,
            )
            .unwrap()
        })
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(task_of(&app, &item).await.state, "executed");
}

/// Two rounds at once, each on its own connection, as two instances would run them.
async fn futures_join(app: &TestApp) -> Vec<RoundReport> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
    let mut handles = Vec::new();
    for _ in 0..2 {
        let (db, clock, config) = (app.db.clone(), app.clock.clone(), app.config.clone());
        let barrier = barrier.clone();
        handles.push(tokio::task::spawn_blocking(move || {
            let mut conn = db.conn().unwrap();
            barrier.wait();
            attest::remediation::run_once(&mut conn, &config, clock.as_ref(), "test", false)
                .unwrap()
        }));
    }
    let mut rounds = Vec::new();
    for handle in handles {
        rounds.push(handle.await.unwrap());
    }
    rounds
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_directory_charges_no_attempt_and_a_changed_decision_cancels_the_task() {
    let dir = common::temp_dir();
    let (mut slapd, app) = start(dir.path(), |r| {
        r.when = attest::config::RemediationWhen::Immediately;
    })
    .await;
    let (campaign, item) = crate::remediation_steps::revoke(&app, "dave", "vpn-users").await;
    slapd.stop();
    let report = round(&app).await;
    assert_eq!(
        (
            report.created,
            report.execution.unavailable,
            report.execution.failed
        ),
        (1, 1, 0)
    );
    let task = task_of(&app, &item).await;
    assert_eq!((task.state.as_str(), task.attempts), ("pending", 0));
    assert!(task.last_error.unwrap().contains("cannot connect"));

    // The reviewer changes their mind while the directory is down: nothing is removed.
    crate::remediation_steps::decide(&app, &campaign, &item, "approve").await;
    slapd.restart();
    let report = round(&app).await;
    assert_eq!(report.execution.cancelled, 1, "{report:?}");
    assert!(slapd.values(VPN, "member").contains(&dn_of("dave")));
    let task = task_of(&app, &item).await;
    assert_eq!(task.state, "cancelled");
    assert!(task.last_error.unwrap().contains("decision changed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_uid_and_unique_member_values_are_removed_too() {
    let dir = common::temp_dir();
    let (slapd, app) = start(dir.path(), |_| {}).await;
    let (ftp, wiki) = (
        "cn=legacy-ftp,ou=groups,dc=example,dc=com",
        "cn=wiki-editors,ou=groups,dc=example,dc=com",
    );
    slapd.ldapadd(&format!(
        "dn: {ftp}\nobjectClass: posixGroup\ncn: legacy-ftp\ngidNumber: 5999\nmemberUid: dave\n\
         memberUid: erin\n\n\
         dn: {wiki}\nobjectClass: groupOfUniqueNames\ncn: wiki-editors\nuniqueMember: {}\n\
         uniqueMember: {}\n",
        dn_of("dave"),
        dn_of("erin")
    ));
    app.sync().await.unwrap();
    let (campaign, ftp_item) = crate::remediation_steps::revoke(&app, "dave", "legacy-ftp").await;
    let wiki_item = app
        .blocking({
            let campaign = campaign.clone();
            move |db, _, _| {
                use attest::db::schema::review_items::dsl::*;
                use diesel::prelude::*;
                review_items
                    .filter(campaign_id.eq(&campaign))
                    .filter(identity_login.eq("dave"))
                    .filter(entitlement_name.eq("wiki-editors"))
                    .select(id)
                    .first::<String>(&mut db.conn().unwrap())
                    .unwrap()
            }
        })
        .await;
    crate::remediation_steps::decide(&app, &campaign, &wiki_item, "revoke").await;
    close(&app, &campaign).await;
    assert_eq!(round(&app).await.execution.executed, 2);
    assert_eq!(slapd.values(ftp, "memberUid"), vec!["erin".to_string()]);
    assert_eq!(slapd.values(wiki, "uniqueMember"), vec![dn_of("erin")]);
    for (item, attribute) in [(ftp_item, "memberUid"), (wiki_item, "uniqueMember")] {
        let task = task_of(&app, &item).await;
        let action: serde_json::Value =
            serde_json::from_str(task.action.as_deref().unwrap()).unwrap();
        assert_eq!(action["attributes"], serde_json::json!([attribute]));
    }
    later(&app, 5).await;
    app.sync().await.unwrap();
    assert_eq!(round(&app).await.verification.verified, 2);
}
