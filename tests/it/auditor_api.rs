//! Auditor access over HTTP with an API token: list the campaigns, download a campaign's
//! evidence pack and check it offline against the public key the service publishes (not
//! the one in the pack). Refused with the same 401 without a token, with an unknown,
//! expired or revoked one, with a review link's token, and a token never opens a review
//! page. Issuing and revoking are events; the secret is stored only as a hash. And
//! `/metrics` for a token: each open campaign's items by state and whether it is overdue,
//! the outbox by state, and each source's snapshot age and latest sync result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::auth::{NewToken, Role, issue, revoke};
use attest::evidence::verify::verify_pack;
use attest::ledger::EventKind;
use chrono::Duration;
use secrecy::ExposeSecret;

use crate::common::http_client;
use crate::open_review::{Open, events_of, open_campaign};

async fn issue_token(o: &Open, role: Role, days: i64) -> (String, String) {
    o.app
        .blocking(move |db, clock, _| {
            let request = NewToken {
                name: "FY2026 SOC 2 audit",
                role,
                email: "Auditor@Example.com",
                days,
            };
            let now = attest::clock::Clock::now(clock);
            let issued = issue(&mut db.conn().unwrap(), now, &request, "test").unwrap();
            (issued.id, issued.secret.expose_secret().to_string())
        })
        .await
}

async fn get(o: &Open, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = http_client().get(format!("{}{path}", o.app.base_url));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_downloads_a_pack_that_verifies_with_the_published_key() {
    let o = open_campaign(|_| {}).await;
    let (token_id, secret) = issue_token(&o, Role::Auditor, 30).await;
    assert!(secret.starts_with("attest_at_"));
    // Only the hash is stored, and the event does not carry the secret.
    let stored: Vec<String> = o
        .app
        .blocking(|db, _, _| {
            use attest::db::schema::api_tokens;
            use diesel::prelude::*;
            api_tokens::table
                .select(api_tokens::token_hash)
                .load(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&secret[10..]));
    let created = events_of(&o, EventKind::ApiTokenCreated).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["role"], "auditor");
    assert!(!created[0].to_string().contains(&secret[10..]));

    let listed = get(&o, "/api/v1/campaigns", Some(&secret)).await;
    assert_eq!(listed.status(), 200);
    let listed: serde_json::Value = listed.json().await.unwrap();
    let campaign = &listed["campaigns"][0];
    assert_eq!(campaign["id"], o.campaign.as_str());
    assert_eq!(campaign["items"], 18);

    // Anyone may fetch the public key; the auditor checks the pack against it.
    let key = get(&o, "/api/v1/evidence/public-key", None).await;
    assert_eq!(key.status(), 200);
    let key = key.text().await.unwrap();
    let evidence_path = campaign["evidence"].as_str().unwrap();
    let pack = get(&o, evidence_path, Some(&secret)).await;
    assert_eq!(pack.status(), 200);
    assert_eq!(pack.headers()["content-type"], "application/zip");
    let disposition = pack.headers()["content-disposition"].to_str().unwrap();
    assert!(disposition.contains(&o.campaign), "{disposition}");
    let bytes = pack.bytes().await.unwrap();
    let file = o.ldif.with_file_name("downloaded.zip");
    std::fs::write(&file, &bytes).unwrap();
    let verified = verify_pack(&file, Some(key.trim()), None).unwrap();
    assert_eq!(verified.items, 18);
    assert_eq!(verified.key, key.trim());
    // The export is recorded as the token's.
    let exported = o
        .app
        .blocking(|db, _, _| {
            attest::ledger::events::of_kind(&mut db.conn().unwrap(), EventKind::EvidenceExported)
                .unwrap()
        })
        .await;
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0].actor, format!("api_token:{token_id}"));
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wrong_expired_or_revoked_token_gets_the_same_401() {
    let o = open_campaign(|_| {}).await;
    let (token_id, secret) = issue_token(&o, Role::Auditor, 1).await;
    let evidence = format!("/api/v1/campaigns/{}/evidence", o.campaign);
    let refused = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 401);
        assert!(response.headers().contains_key("www-authenticate"));
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unauthorized");
        body["message"].as_str().unwrap().to_string()
    };
    let without = refused(get(&o, &evidence, None).await).await;
    let mut forged = secret.clone();
    forged.pop();
    forged.push(if secret.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        refused(get(&o, &evidence, Some(&forged)).await).await,
        without
    );
    assert_eq!(
        refused(get(&o, "/api/v1/campaigns", Some("Basic x")).await).await,
        without
    );
    // A review link's token is not an API token, and an API token opens no review page.
    let reviewer = o.app.reviewer_id(&o.campaign, "bob@example.com").await;
    let link = o
        .app
        .mint_link(&o.campaign, &reviewer, Duration::days(7))
        .await;
    let link_token = link.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        refused(get(&o, &evidence, Some(&link_token)).await).await,
        without
    );
    let page = get(&o, &format!("/r/{secret}"), None).await;
    assert!(page.status().is_client_error(), "{}", page.status());
    // Valid now; not after it expires; not once revoked.
    assert_eq!(get(&o, &evidence, Some(&secret)).await.status(), 200);
    o.app.clock.advance(Duration::days(1));
    assert_eq!(
        refused(get(&o, &evidence, Some(&secret)).await).await,
        without
    );
    let (second_id, second) = issue_token(&o, Role::Auditor, 30).await;
    assert_eq!(
        get(&o, "/api/v1/campaigns", Some(&second)).await.status(),
        200
    );
    let id = second_id.clone();
    let revoked = o
        .app
        .blocking(move |db, clock, _| {
            let now = attest::clock::Clock::now(clock);
            let mut conn = db.conn().unwrap();
            (
                revoke(&mut conn, now, &id, "test").unwrap(),
                revoke(&mut conn, now, &id, "test").unwrap(),
            )
        })
        .await;
    assert_eq!(revoked, (true, false), "a second revoke changes nothing");
    assert_eq!(
        refused(get(&o, "/api/v1/campaigns", Some(&second)).await).await,
        without
    );
    let events = events_of(&o, EventKind::ApiTokenRevoked).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["token"], second_id.as_str());
    assert_ne!(token_id, second_id);
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_issued_only_within_their_rules() {
    let o = open_campaign(|_| {}).await;
    let refusal = |name: &'static str, email: &'static str, role: Role, days: i64| {
        o.app.blocking(move |db, clock, _| {
            let request = NewToken {
                name,
                role,
                email,
                days,
            };
            let now = attest::clock::Clock::now(clock);
            issue(&mut db.conn().unwrap(), now, &request, "test")
                .unwrap_err()
                .to_string()
        })
    };
    assert!(
        refusal(" ", "a@example.com", Role::Auditor, 30)
            .await
            .contains("name")
    );
    assert!(
        refusal("x", "nobody", Role::Auditor, 30)
            .await
            .contains("email")
    );
    assert!(
        refusal("x", "a@example.com", Role::Auditor, 367)
            .await
            .contains("366")
    );
    // One staff member, one role: an auditor's address cannot be given an admin token.
    issue_token(&o, Role::Auditor, 30).await;
    let refused = refusal("x", "auditor@example.com", Role::Admin, 30).await;
    assert!(refused.contains("auditor"), "{refused}");
    o.app.stop().await;
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<i64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_progress_the_outbox_and_how_fresh_each_source_is() {
    let o = open_campaign(|_| {}).await;
    assert_eq!(get(&o, "/metrics", None).await.status(), 401);
    let (_, secret) = issue_token(&o, Role::Auditor, 30).await;

    let item = crate::decision_actions::items_of(&o, "bob@example.com").await[0].clone();
    let (campaign, reviewer) = (o.campaign.clone(), item.reviewer_id.clone());
    o.app
        .blocking(move |db, clock, _| {
            let request = attest::decisions::DecisionRequest {
                campaign_id: campaign,
                reviewer_id: reviewer,
                item_id: item.id,
                outcome: attest::decisions::DecisionOutcome::Approve,
                comment: None,
                approved_until: None,
            };
            let now = attest::clock::Clock::now(clock);
            attest::decisions::record_decision(
                &mut db.conn().unwrap(),
                now,
                &request,
                &crate::open_review::auth(),
            )
            .unwrap();
        })
        .await;
    // Ninety seconds after the sync, and after the due date.
    o.app.clock.set(o.due + Duration::seconds(90));
    let response = get(&o, "/metrics", Some(&secret)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    let series = |name: &str, state: &str| {
        format!(
            "{name}{{campaign=\"{}\",definition=\"access-review\",state=\"{state}\"}}",
            o.campaign
        )
    };
    assert_eq!(
        metric(&text, &series("attest_campaign_items", "pending")),
        Some(17),
        "{text}"
    );
    assert_eq!(
        metric(&text, &series("attest_campaign_items", "approved")),
        Some(1)
    );
    assert_eq!(
        metric(
            &text,
            &format!(
                "attest_campaign_overdue{{campaign=\"{}\",definition=\"access-review\"}}",
                o.campaign
            )
        ),
        Some(1)
    );
    assert_eq!(
        metric(&text, "attest_outbox_messages{state=\"sent\"}"),
        Some(4),
        "{text}"
    );
    let age = metric(&text, "attest_source_snapshot_age_seconds{source=\"corp\"}").unwrap();
    assert_eq!(age, (o.due - o.opened).num_seconds() + 90, "{text}");
    assert_eq!(
        metric(&text, "attest_source_last_sync_succeeded{source=\"corp\"}"),
        Some(1)
    );
    assert!(!text.contains("@example.com"), "no people in the metrics");
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route_and_each_answers_as_described() {
    let o = open_campaign(|_| {}).await;
    let (_, secret) = issue_token(&o, Role::Auditor, 30).await;
    let response = get(&o, "/api/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.unwrap();
    assert!(
        document["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        document["openapi"]
    );
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let paths: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    for expected in [
        "/api/v1/campaigns",
        "/api/v1/campaigns/{id}/items",
        "/api/v1/campaigns/{id}/decisions",
        "/api/v1/campaigns/{id}/evidence",
        "/api/v1/evidence/public-key",
        "/api/v1/sources",
        "/api/v1/sources/{name}/sync-runs",
        "/api/v1/sources/{name}/sync",
        "/api/v1/campaigns/{id}/close",
        "/api/v1/definitions/{name}/campaigns",
        "/metrics",
    ] {
        assert!(
            paths.contains(&expected.to_string()),
            "{expected} in {paths:?}"
        );
    }
    // Every read answers: 401 without a token where the document asks for one, 200 with;
    // every write is secured, answers 401 without a token and 403 to this auditor's (what
    // an admin's does is `admin_api`'s), and says so.
    for path in &paths {
        let url = path.replace("{id}", &o.campaign).replace("{name}", "corp");
        let operation = &document["paths"][path]["get"];
        if operation.is_null() {
            let write = &document["paths"][path]["post"];
            assert!(
                write["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{path}"
            );
            assert!(write["responses"]["401"].is_object(), "{path}");
            assert!(write["responses"]["403"].is_object(), "{path}");
            let post = |token: Option<&str>| {
                let mut request = http_client().post(format!("{}{url}", o.app.base_url));
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                async move { request.send().await.unwrap().status().as_u16() }
            };
            assert_eq!(post(None).await, 401, "{path}");
            assert_eq!(post(Some(&secret)).await, 403, "{path}");
            continue;
        }
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| !s.is_empty());
        let without = get(&o, &url, None).await.status().as_u16();
        assert_eq!(without, if secured { 401 } else { 200 }, "{path}");
        assert!(
            operation["responses"]["401"].is_object() == secured,
            "{path}"
        );
        assert_eq!(get(&o, &url, Some(&secret)).await.status(), 200, "{path}");
    }

    let sources: serde_json::Value = get(&o, "/api/v1/sources", Some(&secret))
        .await
        .json()
        .await
        .unwrap();
    let corp = &sources["sources"][0];
    assert_eq!(
        (corp["name"].as_str(), corp["kind"].as_str()),
        (Some("corp"), Some("ldif"))
    );
    assert_eq!(corp["latest_sync_status"], "succeeded");
    let runs: serde_json::Value = get(&o, corp["sync_runs"].as_str().unwrap(), Some(&secret))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(runs["sync_runs"].as_array().unwrap().len(), 1);
    assert_eq!(runs["sync_runs"][0]["identities"], 12);
    assert_eq!(
        get(&o, "/api/v1/sources/nope/sync-runs", Some(&secret))
            .await
            .status(),
        404
    );
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_and_decisions_come_page_by_page_each_once() {
    let o = open_campaign(|_| {}).await;
    let (_, secret) = issue_token(&o, Role::Auditor, 30).await;
    let campaigns: serde_json::Value = get(&o, "/api/v1/campaigns", Some(&secret))
        .await
        .json()
        .await
        .unwrap();
    let items_total = campaigns["campaigns"][0]["items"].as_u64().unwrap() as usize;
    // Follows `next` from the first page; returns every entry of `field`.
    let walk = |first: String, field: &'static str| {
        let (o, secret) = (&o, secret.clone());
        async move {
            let (mut url, mut seen, mut pages) = (Some(first), Vec::new(), 0);
            while let Some(at) = url {
                let page: serde_json::Value =
                    get(o, &at, Some(&secret)).await.json().await.unwrap();
                seen.extend(page[field].as_array().unwrap().iter().cloned());
                url = page["next"].as_str().map(str::to_string);
                pages += 1;
                assert!(pages < 100, "paging does not end");
            }
            (seen, pages)
        }
    };
    let (items, pages) = walk(
        format!("/api/v1/campaigns/{}/items?limit=5", o.campaign),
        "items",
    )
    .await;
    assert_eq!(items.len(), items_total);
    assert!(pages > 1, "more than one page of 5");
    let ids: std::collections::BTreeSet<&str> =
        items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), items_total, "each item once");
    assert!(
        items
            .iter()
            .all(|i| i["reviewer_email"].as_str().unwrap().contains('@'))
    );

    // Three decisions, one of them a change of mind: all three are listed.
    let first = items[0]["id"].as_str().unwrap();
    let second = items[1]["id"].as_str().unwrap();
    crate::remediation_steps::decide(&o.app, &o.campaign, first, "approve").await;
    crate::remediation_steps::decide(&o.app, &o.campaign, second, "revoke").await;
    crate::remediation_steps::decide(&o.app, &o.campaign, first, "revoke").await;
    let decisions_total = o.app.count("decisions").await as usize;
    assert_eq!(decisions_total, 3);
    let (decisions, _) = walk(
        format!("/api/v1/campaigns/{}/decisions?limit=2", o.campaign),
        "decisions",
    )
    .await;
    assert_eq!(decisions.len(), decisions_total);
    assert!(
        decisions
            .iter()
            .all(|d| ids.contains(d["item"].as_str().unwrap()))
    );

    let missing = get(&o, "/api/v1/campaigns/nope/items", Some(&secret)).await;
    assert_eq!(missing.status(), 404);
    o.app.stop().await;
}
