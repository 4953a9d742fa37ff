//! The OpenID Connect source against a real provider (npm `oidc-provider`) and the SCIM 2.0
//! directory behind it (npm `scimmy`), which accepts only the provider's tokens: users and
//! groups paged across several pages, nested groups, a group whose member list the server caps
//! (read through the `groups.value` filter), a token refused mid-sync and renewed, a token the
//! directory refuses, and the provider down (TESTPLAN F14).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::config::{OidcSourceConfig, ScimConfig, SourceConfig};
use attest::directory::snapshot::sync_run;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::common::{self, TestApp};
use crate::support::oidc_scim::{self, OidcScim, Options};

const USERS: usize = 250;

/// 250 users (u2 inactive; everyone's manager is u1), and three groups: `admins` (u1 and the
/// nested group `ops`), `ops` (u2, u3), `everyone` (all 250).
fn directory() -> Value {
    let users: Vec<Value> = (1..=USERS)
        .map(|n| {
            let mut user = json!({
                "id": format!("u{n}"),
                "userName": format!("user{n}"),
                "displayName": format!("User {n}"),
                "active": n != 2,
                "emails": [{"value": format!("user{n}@example.com"), "primary": true}],
            });
            if n > 1 {
                user["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] =
                    json!({"manager": {"value": "u1"}});
            }
            user
        })
        .collect();
    let everyone: Vec<Value> = (1..=USERS)
        .map(|n| json!({"value": format!("u{n}"), "type": "User"}))
        .collect();
    json!({
        "users": users,
        "groups": [
            {"id": "g-admins", "displayName": "admins", "members": [
                {"value": "u1", "type": "User"}, {"value": "g-ops", "type": "Group"}]},
            {"id": "g-ops", "displayName": "ops", "members": [
                {"value": "u2", "type": "User"}, {"value": "u3", "type": "User"}]},
            {"id": "g-everyone", "displayName": "everyone", "members": everyone},
        ],
    })
}

fn source(servers: &OidcScim, resource: Option<String>) -> SourceConfig {
    SourceConfig::Oidc(OidcSourceConfig {
        issuer: servers.issuer.clone(),
        client_id: oidc_scim::CLIENT_ID.into(),
        client_secret: Some(SecretString::from(oidc_scim::CLIENT_SECRET)),
        client_secret_file: None,
        scopes: vec!["scim.read".into()],
        resource,
        tls_ca_file: None,
        allow_insecure_http: true,
        timeout_seconds: 10,
        scim: ScimConfig {
            url: servers.scim_url.clone(),
            page_size: 100,
            verify_group_members: true,
        },
        privileged_groups: vec!["admins".into()],
        remediation: None,
    })
}

async fn app_for(source: SourceConfig, dir: &std::path::Path) -> TestApp {
    let config = common::config(&common::sqlite_url(dir), source, None, dir);
    TestApp::spawn_without_background_workers(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scim_directory_behind_the_provider_syncs_exactly() {
    let servers = OidcScim::start(
        &directory(),
        Options {
            expire_after: Some(4),
            member_cap: Some(50),
        },
    );
    let dir = common::temp_dir();
    let app = app_for(source(&servers, Some(servers.scim_url.clone())), dir.path()).await;
    let outcome = app.sync().await.unwrap();
    assert_eq!(
        (outcome.identities, outcome.entitlements),
        (USERS as i64, 3)
    );
    // admins: u1, u2 and u3 (through ops); ops: 2; everyone: all 250 despite the cap of 50.
    assert_eq!(
        outcome.grants,
        3 + 2 + USERS as i64,
        "{}",
        outcome.summary()
    );
    assert_eq!(outcome.unresolved_members, 0);

    let id = outcome.sync_run_id.clone();
    let (run, facts) = app
        .blocking(move |db, _, _| {
            use attest::db::schema::identity_versions as i;
            use attest::db::schema::{entitlement_versions as e, grant_versions as g};
            use diesel::prelude::*;
            let mut conn = db.conn().unwrap();
            let run = sync_run(&mut conn, &id).unwrap();
            let via: Option<String> = g::table
                .inner_join(e::table.on(e::external_id.eq(g::entitlement_external_id)))
                .filter(e::name.eq("admins"))
                .filter(g::identity_external_id.eq("u3"))
                .select(g::via)
                .first(&mut *conn)
                .unwrap();
            let bob: (String, String, Option<String>) = i::table
                .filter(i::external_id.eq("u2"))
                .select((i::login, i::status, i::manager_dn_norm))
                .first(&mut *conn)
                .unwrap();
            (run, (via, bob))
        })
        .await;
    assert_eq!(facts.0.as_deref(), Some("ops"));
    assert_eq!(
        facts.1,
        (
            "user2".to_string(),
            "disabled".to_string(),
            Some("scim-user=u1".to_string())
        )
    );
    let searches: Value = serde_json::from_str(&run.searches).unwrap();
    assert_eq!(searches[0]["entries"], USERS);
    assert_eq!(searches[0]["pages"], 3, "250 users in pages of 100");
    assert_eq!(
        searches[2]["entries"],
        USERS - 50,
        "members the group listing left out"
    );
    let bound = run.bind_identity.clone().unwrap();
    assert!(
        bound.starts_with(&format!("client `attest` of {}", servers.issuer)),
        "{bound}"
    );
    assert!(
        !bound.contains("(1 token(s))"),
        "tokens refused mid-sync were renewed: {bound}"
    );

    let problems = app
        .blocking(move |db, _, _| {
            attest::directory::snapshot::problems_of(&mut db.conn().unwrap(), &run.id).unwrap()
        })
        .await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        (problems[0].kind.as_str(), problems[0].subject.as_str()),
        ("member_list_capped", "everyone")
    );

    // Unchanged: nothing written the second time.
    let again = app.sync().await.unwrap();
    assert!(!again.diff.directory_changed(), "{:?}", again.diff);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_the_directory_refuses_fails_the_sync() {
    let servers = OidcScim::start(&directory(), Options::default());
    let dir = common::temp_dir();
    // Without the resource indicator the provider issues a token that is not for the SCIM API.
    let app = app_for(source(&servers, None), dir.path()).await;
    let error = app.sync().await.expect_err("refused token");
    let message = error.to_string();
    assert!(
        message.contains("the SCIM server refused the access token (a new one too): 401"),
        "{message}"
    );
    assert!(!message.contains(oidc_scim::CLIENT_SECRET));
    assert_eq!(app.count("identity_versions").await, 0);
    app.stop().await;
}

/// Stops the provider and the directory once the sync has read `after` people.
struct CutAfter<'a> {
    after: u64,
    servers: &'a std::sync::Mutex<OidcScim>,
}

impl attest::directory::SyncObserver for CutAfter<'_> {
    fn read(&self, people: u64, _groups: u64) {
        if people >= self.after {
            self.servers.lock().unwrap().stop();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_directory_going_down_mid_pull_fails_the_sync_and_writes_nothing() {
    let servers = OidcScim::start(&directory(), Options::default());
    let dir = common::temp_dir();
    let app = app_for(source(&servers, Some(servers.scim_url.clone())), dir.path()).await;
    let servers = std::sync::Mutex::new(servers);
    let error = app
        .blocking(move |db, clock, config| {
            let cut = CutAfter {
                after: 100,
                servers: &servers,
            };
            let source = config.source(common::SOURCE).unwrap();
            attest::directory::sync_source_observed(db, clock, common::SOURCE, source, "test", &cut)
        })
        .await
        .expect_err("the directory went away");
    assert!(error.to_string().contains("cannot read"), "{error}");
    assert_eq!(
        app.count("identity_versions").await,
        0,
        "nothing of the failed run stays"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provider_down_fails_the_sync_and_keeps_the_previous_state() {
    let mut servers = OidcScim::start(&directory(), Options::default());
    let dir = common::temp_dir();
    let app = app_for(source(&servers, Some(servers.scim_url.clone())), dir.path()).await;
    let first = app.sync().await.unwrap();
    let versions = app.count("identity_versions").await;
    servers.stop();
    let error = app.sync().await.expect_err("provider down");
    assert!(
        error.to_string().contains(&format!(
            "cannot discover the OpenID Connect provider {}",
            servers.issuer
        )),
        "{error}"
    );
    assert_eq!(app.count("identity_versions").await, versions);
    let current = app
        .blocking(|db, _, _| {
            attest::directory::current_sync_run(&mut db.conn().unwrap(), common::SOURCE)
                .unwrap()
                .unwrap()
        })
        .await;
    assert_eq!(current.id, first.sync_run_id);
    app.stop().await;
}
