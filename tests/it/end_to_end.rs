//! The whole spine on each backend against real services: sync from slapd, open a campaign,
//! exactly one digest per reviewer arrives in maildev, the link shows items without recording
//! anything, approve and revoke are recorded once, and the export's manifest and CSV match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use attest::campaigns::close_campaign;
use attest::evidence::export::{PackSettings, export_campaign};
use attest::evidence::verify::verify_pack;
use attest::ledger::checkpoint::CheckpointKey;
use sha2::{Digest, Sha256};

use crate::common::{self, FALLBACK, TestApp, count_rows, form_values, http_client, review_url};
use crate::pack_files::{read_entry, reseal, rewrite_pack};
use crate::support::maildev::Maildev;
use crate::support::postgres;
use crate::support::slapd::Slapd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_review_on_sqlite() {
    let dir = common::temp_dir();
    full_review(&common::sqlite_url(dir.path()), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_review_on_postgres() {
    let dir = common::temp_dir();
    let database = postgres::database();
    full_review(&database.url, dir.path()).await;
}

async fn full_review(database_url: &str, dir: &std::path::Path) {
    let slapd = Slapd::start();
    let maildev = Maildev::start();
    let config = common::config(
        database_url,
        common::ldap_source(&slapd),
        Some(maildev.smtp_port),
        dir,
    );
    let app = TestApp::spawn(config).await;

    let synced = app.sync().await.expect("sync from slapd");
    assert_eq!(
        (synced.identities, synced.entitlements, synced.grants),
        (12, 4, 18)
    );

    let started = app.start_campaign().await;
    assert_eq!(started.items, 18, "one item per (person, group)");
    assert_eq!(started.reviewers, 4, "alice, bob, carol and the fallback");

    // Exactly one digest per reviewer, never one per item.
    let mails = maildev.wait_for_messages(4, Duration::from_secs(30));
    let recipients: Vec<String> = mails
        .iter()
        .map(|m| m["to"][0]["address"].as_str().unwrap().to_lowercase())
        .collect();
    let distinct: BTreeSet<&String> = recipients.iter().collect();
    assert_eq!(recipients.len(), 4, "{recipients:?}");
    assert_eq!(
        distinct.into_iter().cloned().collect::<Vec<_>>(),
        vec![
            "alice@example.com".to_string(),
            "bob@example.com".to_string(),
            "carol@example.com".to_string(),
            FALLBACK.to_string()
        ]
    );
    assert_eq!(
        app.worker.drain_once().await.unwrap(),
        0,
        "nothing left to send"
    );
    assert_eq!(maildev.messages().len(), 4);

    let bob_mail = mails
        .iter()
        .find(|m| m["to"][0]["address"] == "bob@example.com")
        .unwrap();
    let text = bob_mail["text"].as_str().unwrap();
    assert_eq!(
        text.matches("Approve: ").count(),
        6,
        "bob reviews 6 accesses (he holds prod-admins, so dave's goes to the fallback)"
    );
    let url = review_url(text);

    // Opening the link changes nothing.
    let client = http_client();
    let events_before = app.count("events").await;
    let page = client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("dave") && html.contains("engineering"));
    assert!(!html.contains("prod-admins"), "bob holds prod-admins");
    assert_eq!(
        app.count("events").await,
        events_before,
        "GET wrote an event"
    );
    assert_eq!(app.count("decisions").await, 0);

    let csrf = form_values(&html, "csrf")[0].clone();
    let items = form_values(&html, "item");
    assert_eq!(items.len(), 6);
    let decide_url = format!("{url}/decide");
    let post = |item: &str, outcome: &str, comment: &str| {
        client
            .post(&decide_url)
            .form(&[
                ("csrf", csrf.as_str()),
                ("item", item),
                ("outcome", outcome),
                ("comment", comment),
            ])
            .send()
    };
    assert_eq!(post(&items[0], "approve", "").await.unwrap().status(), 303);
    assert_eq!(
        post(&items[1], "revoke", "=HYPERLINK(\"x\") left the team")
            .await
            .unwrap()
            .status(),
        303
    );
    assert_eq!(app.count("decisions").await, 2);
    // Replaying the same POST records nothing new.
    assert_eq!(post(&items[0], "approve", "").await.unwrap().status(), 303);
    assert_eq!(app.count("decisions").await, 2);
    let decision_events = app
        .blocking(|db, _, _| {
            let mut conn = db.conn().unwrap();
            attest::ledger::events::of_kind(&mut conn, attest::ledger::EventKind::DecisionRecorded)
                .unwrap()
                .len()
        })
        .await;
    assert_eq!(decision_events, 2, "one event per accepted decision");

    let after = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(
        after.contains("<strong>2</strong> of 6 reviewed"),
        "progress shown"
    );

    // Close, then decisions are refused.
    let campaign_id = started.campaign.id.clone();
    let id = campaign_id.clone();
    app.blocking(move |db, clock, _| {
        let mut conn = db.conn().unwrap();
        close_campaign(
            &mut conn,
            attest::clock::Clock::now(clock),
            &id,
            &attest::campaigns::CloseRules::default(),
            "test",
        )
        .unwrap();
    })
    .await;
    assert_eq!(post(&items[2], "approve", "").await.unwrap().status(), 409);
    assert_eq!(app.count("decisions").await, 2);

    // Export and check the pack.
    let pack = dir.join("pack.zip");
    let out = pack.clone();
    let id = campaign_id.clone();
    let summary = app
        .blocking(move |db, clock, config| {
            let mut conn = db.conn().unwrap();
            let key = CheckpointKey::from_config(&config.evidence).unwrap();
            export_campaign(
                &mut conn,
                attest::clock::Clock::now(clock),
                &id,
                &out,
                PackSettings {
                    key: &key,
                    retention_years: 7,
                },
                "test",
            )
            .unwrap()
        })
        .await;
    assert_eq!((summary.items, summary.decisions), (18, 2));
    check_verification(&pack, &app.config, dir);
    let decided = app
        .blocking(|db, _, _| {
            use attest::db::schema::decisions;
            use diesel::prelude::*;
            let mut conn = db.conn().unwrap();
            decisions::table
                .select((decisions::item_id, decisions::outcome))
                .load::<(String, String)>(&mut *conn)
                .unwrap()
                .into_iter()
                .collect::<BTreeSet<_>>()
        })
        .await;
    check_pack(&pack, &campaign_id, &decided);
    assert!(count_rows(&app.db, "events") > events_before);

    // A later pack proves that the log only grew since the first pack's checkpoint.
    let later = dir.join("later.zip");
    let (out, id) = (later.clone(), campaign_id.clone());
    app.blocking(move |db, clock, config| {
        let key = CheckpointKey::from_config(&config.evidence).unwrap();
        let now = attest::clock::Clock::now(clock);
        let settings = PackSettings {
            key: &key,
            retention_years: 7,
        };
        export_campaign(&mut db.conn().unwrap(), now, &id, &out, settings, "test").unwrap()
    })
    .await;
    let mut first = zip::ZipArchive::new(std::fs::File::open(&pack).unwrap()).unwrap();
    let earlier = String::from_utf8(read_entry(&mut first, "checkpoint.txt")).unwrap();
    let grown = verify_pack(&later, None, Some(&earlier)).unwrap();
    assert!(grown.checkpoint_size > verify_pack(&pack, None, None).unwrap().checkpoint_size);
    // A checkpoint of another log (another key) is refused.
    let other = CheckpointKey::from_bytes(&[6u8; 32], "attest").sign(3, &[1u8; 32]);
    let refused = verify_pack(&later, None, Some(&other))
        .unwrap_err()
        .to_string();
    assert!(refused.contains("previous checkpoint"), "{refused}");
    app.stop().await;
}

/// The pack verifies offline with its own key and with the instance's; a changed file, an
/// unsigned manifest or another key is refused, naming what failed.
fn check_verification(
    pack: &std::path::Path,
    config: &attest::config::Config,
    dir: &std::path::Path,
) {
    let verified = verify_pack(pack, None, None).unwrap();
    assert_eq!((verified.items, verified.decisions), (18, 2));
    assert!(verified.events >= 3, "{verified:?}");
    let trusted = CheckpointKey::from_config(&config.evidence)
        .unwrap()
        .verifier_key();
    assert_eq!(verify_pack(pack, Some(&trusted), None).unwrap(), verified);
    let stranger = CheckpointKey::from_bytes(&[3u8; 32], "attest").verifier_key();
    let refused = verify_pack(pack, Some(&stranger), None)
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("signed by key") && refused.contains("no rotation"),
        "{refused}"
    );

    // The same pack with one file changed (its manifest entry left as it was).
    let tampered = dir.join("tampered.zip");
    rewrite_pack(pack, &tampered, |name, bytes| {
        if name == "items.csv" {
            bytes.extend_from_slice(b"forged,row\n");
        }
    });
    let refused = verify_pack(&tampered, None, None).unwrap_err().to_string();
    assert!(refused.contains("items.csv"), "{refused}");
    // A decision's outcome changed, and the pack sealed again with the real key: the
    // decision no longer matches the event that proves it.
    let key = CheckpointKey::from_config(&config.evidence).unwrap();
    let edited = dir.join("edited.zip");
    reseal(pack, &edited, &key, |name, bytes| {
        if name == "decisions.jsonl" {
            let text = String::from_utf8(bytes.clone()).unwrap();
            *bytes = text
                .replacen("\"outcome\":\"revoke\"", "\"outcome\":\"approve\"", 1)
                .into_bytes();
        }
    });
    let refused = verify_pack(&edited, None, None).unwrap_err().to_string();
    assert!(
        refused.contains("outcome differs from its event"),
        "{refused}"
    );
    // Sealed by someone else with their own key in the pack: it checks with that key, and
    // is refused with the organisation's.
    let impostor = CheckpointKey::from_bytes(&[5u8; 32], "attest");
    let swapped = dir.join("swapped.zip");
    reseal(pack, &swapped, &impostor, |_, _| {});
    assert!(
        verify_pack(&swapped, None, None).is_ok(),
        "resealed consistently"
    );
    let refused = verify_pack(&swapped, Some(&trusted), None)
        .unwrap_err()
        .to_string();
    assert!(refused.contains("no rotation"), "{refused}");
    // The manifest rewritten to match, but its signature is then for another manifest.
    let resigned = dir.join("resigned.zip");
    rewrite_pack(pack, &resigned, |name, bytes| {
        if name == "manifest.json" {
            let text = String::from_utf8(bytes.clone())
                .unwrap()
                .replace("attest-evidence", "x");
            *bytes = text.into_bytes();
        }
    });
    let refused = verify_pack(&resigned, None, None).unwrap_err().to_string();
    assert!(refused.contains("manifest.sig"), "{refused}");
}

fn check_pack(path: &std::path::Path, campaign_id: &str, decided: &BTreeSet<(String, String)>) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_entry(&mut archive, "manifest.json")).unwrap();
    assert_eq!(manifest["campaign"], campaign_id);
    let files = manifest["files"].as_array().unwrap();
    let names: BTreeSet<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "checkpoint.txt",
            "consistency.jsonl",
            "decisions.csv",
            "decisions.jsonl",
            "events.jsonl",
            "exceptions.csv",
            "items.csv",
            "items.jsonl",
            "key-history.jsonl",
            "population.json",
            "public-key.txt",
            "remediation.csv",
            "report.html",
            "soc2.json",
            "summary.json"
        ])
    );
    for file in files {
        let bytes = read_entry(&mut archive, file["name"].as_str().unwrap());
        assert_eq!(
            file["sha256"].as_str().unwrap(),
            hex::encode(Sha256::digest(&bytes))
        );
        assert_eq!(file["bytes"].as_u64().unwrap(), bytes.len() as u64);
    }

    let csv_bytes = read_entry(&mut archive, "decisions.csv");
    let mut reader = csv::Reader::from_reader(csv_bytes.as_slice());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let exported: BTreeSet<(String, String)> = rows
        .iter()
        .map(|r| (r[3].to_string(), r[4].to_string()))
        .collect();
    assert_eq!(
        &exported, decided,
        "CSV rows are exactly the recorded decisions"
    );
    assert_eq!(rows.len(), decided.len());
    let revoke = rows.iter().find(|r| &r[4] == "revoke").unwrap();
    assert!(
        revoke[5].starts_with("'=HYPERLINK"),
        "formula neutralised: {:?}",
        &revoke[5]
    );
    assert!(
        rows.iter()
            .all(|r| &r[6] == "bob@example.com" && &r[14] == "email_link")
    );

    let jsonl = String::from_utf8(read_entry(&mut archive, "decisions.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), rows.len());
    assert!(
        records
            .iter()
            .any(|r| r["comment"] == "=HYPERLINK(\"x\") left the team")
    );

    // One row per item, decided or not: the two decisions, and what nobody answered with
    // what the no-response policy did (the default flags them).
    let items_bytes = read_entry(&mut archive, "items.csv");
    let mut reader = csv::Reader::from_reader(items_bytes.as_slice());
    let header = reader.headers().unwrap().clone();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let items: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(items.len(), 18);
    for item in &items {
        let id = &item[column("item_id")];
        let outcome = &item[column("outcome")];
        match decided.iter().find(|(decided_id, _)| decided_id == id) {
            Some((_, decision)) => {
                let expected = if decision == "approve" {
                    "approved"
                } else {
                    "revoked"
                };
                assert_eq!(outcome, expected, "{item:?}");
                assert_eq!(&item[column("last_auth_method")], "email_link");
                assert!(!item[column("last_decision_id")].is_empty());
            }
            None => {
                assert_eq!(outcome, "no_response", "{item:?}");
                assert_eq!(&item[column("no_response_outcome")], "flag");
                assert!(item[column("last_decision_id")].is_empty());
            }
        }
        assert!(!item[column("reviewer_email")].is_empty());
        assert!(!item[column("routing")].is_empty());
    }
    let items_jsonl = String::from_utf8(read_entry(&mut archive, "items.jsonl")).unwrap();
    assert_eq!(items_jsonl.lines().count(), 18);

    let population: serde_json::Value =
        serde_json::from_slice(&read_entry(&mut archive, "population.json")).unwrap();
    assert_eq!(population["counts"]["review_items"], 18);
    assert_eq!(population["counts"]["items_listed"], 18);
    assert_eq!(population["counts"]["no_response"], 16);
    assert_eq!(population["sync_run"]["identities"], 12);
    assert_eq!(population["sync_run"]["status"], "succeeded");
    assert!(
        population["sync_run"]["server"]
            .as_str()
            .unwrap()
            .starts_with("ldap://127.0.0.1:")
    );
}
