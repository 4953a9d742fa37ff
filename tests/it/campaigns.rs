//! Campaign generation rules on the fixture directory: scope by group, one campaign per
//! definition and period, the reviewer chain (group owners from the directory or the
//! definition before managers), and the independence rules: nobody reviews their own access,
//! no mutual pair, no holder of a privileged group reviews it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::model::{items_of_reviewer, reviewers_of};
use attest::campaigns::start_campaign;
use attest::config::{ChainStep, Config};

use crate::common::{self, DEFINITION, TestApp};

async fn app_with(adjust: impl FnOnce(&mut Config)) -> (TestApp, tempfile::TempDir) {
    let dir = common::temp_dir();
    let mut config = common::fixture_config(&common::sqlite_url(dir.path()), None, dir.path());
    adjust(&mut config);
    let app = TestApp::spawn(config).await;
    app.sync().await.expect("LDIF sync");
    (app, dir)
}

fn definition(config: &mut Config) -> &mut attest::config::CampaignDefinition {
    config.campaigns.get_mut(DEFINITION).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_reviews_only_the_named_groups() {
    let (app, _dir) = app_with(|c| definition(c).groups = vec!["prod-admins".into()]).await;
    let started = app.start_campaign().await;
    assert_eq!(started.items, 4);
    let (app2, _dir2) = app_with(|c| definition(c).privileged_only = true).await;
    assert_eq!(
        app2.start_campaign().await.items,
        4,
        "only prod-admins is privileged"
    );
    app.stop().await;
    app2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_in_definition_is_refused_before_anything_is_written() {
    // A configuration error found before the first insert; a generation that fails part-way
    // is tested in generation_faults.rs.
    let (app, _dir) = app_with(|c| definition(c).groups = vec!["no-such-group".into()]).await;
    let error = app
        .blocking(|db, clock, config| start_campaign(db, clock, config, DEFINITION, true, "test"))
        .await
        .expect_err("unknown group");
    assert!(error.to_string().contains("no-such-group"), "{error}");
    assert_eq!(app.count("campaigns").await, 0);
    assert_eq!(app.count("review_items").await, 0);
    assert_eq!(app.count("outbox").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_campaign_per_definition_and_period() {
    let (app, _dir) = app_with(|_| {}).await;
    let first = app
        .blocking(|db, clock, config| start_campaign(db, clock, config, DEFINITION, false, "test"))
        .await
        .unwrap();
    let second = app
        .blocking(|db, clock, config| start_campaign(db, clock, config, DEFINITION, false, "test"))
        .await;
    assert_eq!(second.unwrap_err().code(), "conflict");
    assert_eq!(app.count("campaigns").await, 1);
    assert_eq!(app.count("review_items").await, first.items);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_access_is_rerouted_to_another_reviewer() {
    // alice (the CEO, no manager) is also the first fallback reviewer.
    let (app, _dir) = app_with(|c| {
        definition(c).fallback_reviewers =
            vec!["alice@example.com".into(), "security@example.com".into()];
    })
    .await;
    let started = app.start_campaign().await;
    let id = started.campaign.id.clone();
    let items = app
        .blocking(move |db, _, _| {
            let mut conn = db.conn().unwrap();
            let mut all = Vec::new();
            for reviewer in reviewers_of(&mut conn, &id).unwrap() {
                for item in items_of_reviewer(&mut conn, &reviewer.id).unwrap() {
                    all.push((reviewer.email.clone(), item.identity_login, item.routing));
                }
            }
            all
        })
        .await;
    assert!(
        items
            .iter()
            .all(|(reviewer, person, _)| reviewer != &format!("{person}@example.com"))
    );
    let alice_own = items
        .iter()
        .find(|(_, person, _)| person == "alice")
        .unwrap();
    assert_eq!(
        (alice_own.0.as_str(), alice_own.2.as_str()),
        ("security@example.com", "self_review_rerouted")
    );
    let oscar: Vec<_> = items
        .iter()
        .filter(|(_, person, _)| person == "oscar")
        .collect();
    assert_eq!(oscar.len(), 2);
    // oscar's manager is named but not in the directory: his VPN access goes to the first
    // fallback; alice holds prod-admins, so his prod-admins access goes past her.
    let mut oscar_routes: Vec<_> = oscar
        .iter()
        .map(|(reviewer, _, routing)| (reviewer.as_str(), routing.as_str()))
        .collect();
    oscar_routes.sort();
    assert_eq!(
        oscar_routes,
        [
            ("alice@example.com", "manager_unavailable"),
            ("security@example.com", "privileged_holder_rerouted"),
        ]
    );
    app.stop().await;
}

/// Every item of the campaign as (reviewer's login, person's login, group, routing).
async fn routed_items(app: &TestApp, campaign_id: String) -> Vec<(String, String, String, String)> {
    app.blocking(move |db, _, _| {
        let mut conn = db.conn().unwrap();
        let mut all = Vec::new();
        for reviewer in reviewers_of(&mut conn, &campaign_id).unwrap() {
            let login = reviewer.email.trim_end_matches("@example.com").to_string();
            for item in items_of_reviewer(&mut conn, &reviewer.id).unwrap() {
                all.push((
                    login.clone(),
                    item.identity_login,
                    item.entitlement_name,
                    item.routing,
                ));
            }
        }
        all.sort();
        all
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_managers_and_privileged_holders_do_not_review_each_other() {
    // alice and carol are each other's manager; alice and bob hold prod-admins; heidi, named
    // first fallback, is locked out of the directory.
    let dir = common::temp_dir();
    let fixture = std::fs::read_to_string(common::fixture()).unwrap();
    let mutual = fixture.replacen(
        "employeeNumber: 1001\n",
        "employeeNumber: 1001\nmanager: uid=carol,ou=people,dc=example,dc=com\n",
        1,
    );
    let mutual = mutual.replacen(
        "employeeNumber: 1008\n",
        "employeeNumber: 1008\npwdAccountLockedTime: 000001010000Z\n",
        1,
    );
    assert_eq!(mutual.len(), fixture.len() + 83, "the fixture changed");
    let ldif = dir.path().join("mutual.ldif");
    std::fs::write(&ldif, mutual).unwrap();
    let mut config = common::config(
        &common::sqlite_url(dir.path()),
        common::ldif_source(&ldif),
        None,
        dir.path(),
    );
    definition(&mut config).fallback_reviewers =
        vec!["heidi".into(), "security@example.com".into()];
    let app = TestApp::spawn(config).await;
    app.sync().await.expect("LDIF sync");
    let started = app.start_campaign().await;
    let items = routed_items(&app, started.campaign.id.clone()).await;
    let route = |person: &str, group: &str| {
        items
            .iter()
            .find(|(_, p, g, _)| p == person && g == group)
            .map(|(r, _, _, routing)| (r.as_str(), routing.as_str()))
            .unwrap()
    };
    // One of the pair (the first by external id) moves on; the other keeps their manager.
    let mut pair = [route("alice", "prod-admins"), route("carol", "finance")];
    pair.sort();
    assert!(
        pair == [("alice", "manager"), ("security", "mutual_pair_rerouted")]
            || pair == [("carol", "manager"), ("security", "mutual_pair_rerouted")],
        "{pair:?}"
    );
    // alice and bob hold prod-admins: they review their reports' other access, not that.
    assert_eq!(route("bob", "engineering"), ("alice", "manager"));
    assert_eq!(
        route("bob", "prod-admins"),
        ("security", "privileged_holder_rerouted")
    );
    assert_eq!(route("dave", "engineering"), ("bob", "manager"));
    assert_eq!(
        route("dave", "prod-admins"),
        ("security", "privileged_holder_rerouted")
    );
    // Across the whole campaign: no self-review, no pair, no holder reviewing their group.
    let pairs: std::collections::HashSet<(&str, &str)> = items
        .iter()
        .map(|(r, p, _, _)| (r.as_str(), p.as_str()))
        .collect();
    for (reviewer, person, group, _) in &items {
        assert_ne!(reviewer, person);
        assert_ne!(reviewer, "heidi", "a disabled fallback reviews nothing");
        assert!(
            !pairs.contains(&(person.as_str(), reviewer.as_str())),
            "{reviewer} <-> {person}"
        );
        let holds = items
            .iter()
            .any(|(_, p, g, _)| p == reviewer && g == group && group == "prod-admins");
        assert!(!holds, "{reviewer} holds {group} and reviews {person}'s");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_and_disabled_accounts_can_be_left_out() {
    // mallory is a service account (by filter); heidi is locked out of the directory.
    let dir = common::temp_dir();
    let fixture = std::fs::read_to_string(common::fixture()).unwrap();
    let locked = fixture.replacen(
        "employeeNumber: 1008\n",
        "employeeNumber: 1008\npwdAccountLockedTime: 000001010000Z\n",
        1,
    );
    assert_ne!(locked, fixture);
    let ldif = dir.path().join("directory.ldif");
    std::fs::write(&ldif, locked).unwrap();
    let mut source = common::ldif_source(&ldif);
    if let attest::config::SourceConfig::Ldif(l) = &mut source {
        l.people.service_account_filter = Some("(uid=mallory)".into());
    }
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn(config).await;
    app.sync().await.unwrap();
    let everyone = app.start_campaign().await;
    assert_eq!(everyone.items, 18, "both are reviewed by default");

    // A second ad-hoc campaign: its period starts a minute later.
    app.clock.advance(chrono::Duration::minutes(1));
    let mut narrower = app.config.clone();
    let definition = narrower.campaigns.get_mut(DEFINITION).unwrap();
    definition.include_service_accounts = false;
    definition.include_disabled = false;
    let started = app
        .blocking(move |db, clock, _| {
            start_campaign(db, clock, &narrower, DEFINITION, true, "test").unwrap()
        })
        .await;
    assert_eq!(started.items, 15, "mallory's 1 and heidi's 2 left out");
    let people: Vec<String> = routed_items(&app, started.campaign.id.clone())
        .await
        .into_iter()
        .map(|(_, person, _, _)| person)
        .collect();
    assert!(
        !people.iter().any(|p| p == "mallory" || p == "heidi"),
        "{people:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_owners_review_their_groups_before_the_members_managers() {
    // Over real LDAP: bob owns engineering by its `owner` attribute; the definition names
    // heidi the owner of vpn-users; the other groups have no owner.
    let slapd = crate::support::slapd::Slapd::start();
    let dir = common::temp_dir();
    let mut config = common::config(
        &common::sqlite_url(dir.path()),
        common::ldap_source(&slapd),
        None,
        dir.path(),
    );
    let d = definition(&mut config);
    d.reviewer_chain = vec![ChainStep::Owner, ChainStep::Manager];
    d.group_owners.insert("vpn-users".into(), "heidi".into());
    let app = TestApp::spawn(config).await;
    app.sync().await.expect("LDAP sync");
    let started = app.start_campaign().await;
    let items = routed_items(&app, started.campaign.id.clone()).await;
    let reviewed_by = |reviewer: &str, group: &str| -> Vec<(String, String)> {
        items
            .iter()
            .filter(|(r, _, g, _)| r == reviewer && g == group)
            .map(|(_, p, _, routing)| (p.clone(), routing.clone()))
            .collect()
    };
    let owner = |people: &[&str]| -> Vec<(String, String)> {
        people
            .iter()
            .map(|p| (p.to_string(), "owner".to_string()))
            .collect()
    };
    assert_eq!(
        reviewed_by("bob", "engineering"),
        owner(&["dave", "erin", "frank", "grace"])
    );
    assert_eq!(
        reviewed_by("heidi", "vpn-users"),
        owner(&["dave", "erin", "mallory", "oscar"])
    );
    // An owner's own membership goes on along the chain, to their manager.
    let route = |person: &str, group: &str| {
        items
            .iter()
            .find(|(_, p, g, _)| p == person && g == group)
            .map(|(r, _, _, routing)| (r.as_str(), routing.as_str()))
            .unwrap()
    };
    assert_eq!(
        route("bob", "engineering"),
        ("alice", "self_review_rerouted")
    );
    assert_eq!(
        route("heidi", "vpn-users"),
        ("carol", "self_review_rerouted")
    );
    // No owner: the member's manager, as before.
    assert_eq!(route("heidi", "finance"), ("carol", "manager"));
    assert_eq!(route("dave", "prod-admins").1, "privileged_holder_rerouted");
    // The campaign records the chain it was opened with.
    let scope: serde_json::Value = serde_json::from_str(&started.campaign.scope).unwrap();
    assert_eq!(
        scope["reviewer_chain"],
        serde_json::json!(["owner", "manager"])
    );
    assert_eq!(scope["group_owners"]["vpn-users"], "heidi");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_the_snapshot_does_not_have_is_refused_before_anything_is_written() {
    let (app, _dir) = app_with(|c| {
        let d = definition(c);
        d.reviewer_chain = vec![ChainStep::Owner, ChainStep::Manager];
        d.group_owners.insert("vpn-users".into(), "nobody".into());
    })
    .await;
    let refused = app
        .blocking(|db, clock, config| start_campaign(db, clock, config, DEFINITION, true, "test"))
        .await
        .expect_err("unknown owner")
        .to_string();
    assert!(
        refused.contains("the owner named for `vpn-users`"),
        "{refused}"
    );
    assert!(
        !refused.contains("nobody"),
        "the name may be an address: {refused}"
    );
    assert_eq!(app.count("campaigns").await, 0);
    assert_eq!(app.count("review_items").await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_more_reviewers_than_one_statement_can_bind_opens() {
    // 6,000 managers with one report each: 6,000 reviewers (SQLite binds at most 32,766
    // values per statement; a reviewer row has 6).
    let dir = common::temp_dir();
    let csv = dir.path().join("access.csv");
    let mut text = String::from("person_id,login,email,manager,entitlement,privileged\n");
    for i in 0..6_000 {
        text.push_str(&format!(
            "m{i},mgr{i},mgr{i}@example.com,,team-{},false\n",
            i % 50
        ));
        text.push_str(&format!(
            "r{i},rep{i},rep{i}@example.com,m{i},team-{},false\n",
            i % 50
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let source = attest::config::SourceConfig::Csv(attest::config::CsvSourceConfig {
        path: csv,
        privileged_groups: Vec::new(),
        remediation: None,
    });
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.expect("CSV sync");
    let started = app.start_campaign().await;
    assert_eq!(started.items, 12_000);
    assert_eq!(
        started.reviewers, 6_001,
        "each manager, and the fallback for them"
    );
    app.stop().await;
}
