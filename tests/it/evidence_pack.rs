//! The evidence pack of a campaign that went every way: approvals, a change of mind, items
//! delegated to another reviewer, an item rerouted by an independence rule, a decision after
//! the due date and items nobody answered. Its summary, exceptions, SOC 2 mapping and report
//! say what the database holds, it verifies the same way on SQLite and PostgreSQL, and each
//! edit of TESTPLAN A9 (a CSV cell, a JSONL line, reordered or dropped events, another
//! checkpoint, a stripped signature) is refused naming the place, even when the editor
//! re-signs the pack with the real key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use attest::decisions::{DecisionOutcome, DecisionRequest, record_decision};
use attest::evidence::export::{PackSettings, export_campaign};
use attest::evidence::summary::daily_progress;
use attest::evidence::verify::verify_pack;
use attest::ledger::checkpoint::CheckpointKey;
use chrono::{Datelike, Duration};
use diesel::prelude::*;

use crate::open_review::{
    Open, auth, decide_all_of, open_campaign, open_campaign_on_postgres, pending_of,
    reassign_by_admin,
};
use crate::pack_files::{read_entry, reseal, without_entry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_of_every_kind_of_item_reconciles_on_sqlite() {
    let o = open_campaign(|_| {}).await;
    let pack = review_every_way_and_export(&o).await;
    check_tampering(&o, &pack).await;
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_applied_after_a_later_one_stays_last_in_the_history() {
    let o = open_campaign(|_| {}).await;
    let (item, _, _) = pending_of(&o, "alice@example.com").await.remove(0);
    // Two submissions raced: the one stamped later was applied first.
    o.app.clock.set(o.opened + Duration::hours(2));
    decide(
        &o,
        "alice@example.com",
        &item,
        DecisionOutcome::Revoke,
        "gone",
    )
    .await;
    o.app.clock.set(o.opened + Duration::hours(1));
    decide(
        &o,
        "alice@example.com",
        &item,
        DecisionOutcome::Approve,
        "still here",
    )
    .await;
    let pack = export(&o, "raced.zip").await;
    verify_pack(&pack, None, None).unwrap();
    let row: serde_json::Value = text_entry(&pack, "items.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["item_id"] == *item)
        .unwrap();
    assert_eq!(
        row["outcome"], "approved",
        "the decision applied last holds"
    );
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_of_every_kind_of_item_reconciles_on_postgres() {
    let o = open_campaign_on_postgres(|_| {}).await;
    review_every_way_and_export(&o).await;
    o.app.stop().await;
}

async fn decide(o: &Open, email: &str, item: &str, outcome: DecisionOutcome, comment: &str) {
    let reviewer = o.app.reviewer_id(&o.campaign, email).await;
    let request = DecisionRequest {
        campaign_id: o.campaign.clone(),
        reviewer_id: reviewer,
        item_id: item.to_string(),
        outcome,
        comment: Some(comment.to_string()),
        approved_until: None,
    };
    o.app
        .blocking(move |db, clock, _| {
            let now = attest::clock::Clock::now(clock);
            record_decision(&mut db.conn().unwrap(), now, &request, &auth()).unwrap();
        })
        .await;
}

pub async fn export(o: &Open, name: &str) -> PathBuf {
    let out = o.ldif.with_file_name(name);
    let (id, path) = (o.campaign.clone(), out.clone());
    o.app
        .blocking(move |db, clock, config| {
            let key = CheckpointKey::from_config(&config.evidence).unwrap();
            let settings = PackSettings {
                key: &key,
                retention_years: 7,
            };
            let now = attest::clock::Clock::now(clock);
            export_campaign(&mut db.conn().unwrap(), now, &id, &path, settings, "test").unwrap()
        })
        .await;
    out
}

/// (state, reviewer email, group id) of every item, as the database holds them.
async fn items_in_database(o: &Open) -> Vec<(String, String, String)> {
    let campaign = o.campaign.clone();
    o.app
        .blocking(move |db, _, _| {
            use attest::db::schema::{review_items, reviewers};
            review_items::table
                .inner_join(reviewers::table)
                .filter(review_items::campaign_id.eq(&campaign))
                .select((
                    review_items::state,
                    reviewers::email,
                    review_items::entitlement_external_id,
                ))
                .load(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await
}

fn json_entry(pack: &Path, name: &str) -> serde_json::Value {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(pack).unwrap()).unwrap();
    serde_json::from_slice(&read_entry(&mut archive, name)).unwrap()
}

fn text_entry(pack: &Path, name: &str) -> String {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(pack).unwrap()).unwrap();
    String::from_utf8(read_entry(&mut archive, name)).unwrap()
}

async fn review_every_way_and_export(o: &Open) -> PathBuf {
    let approved_by_alice = decide_all_of(o, "alice@example.com", DecisionOutcome::Approve).await;
    // bob approves one access, then changes his mind; the rest he hands to carol.
    let bobs = pending_of(o, "bob@example.com").await;
    let changed = bobs[0].0.clone();
    decide(
        o,
        "bob@example.com",
        &changed,
        DecisionOutcome::Approve,
        "fine",
    )
    .await;
    decide(
        o,
        "bob@example.com",
        &changed,
        DecisionOutcome::Revoke,
        "left the team",
    )
    .await;
    let moved = reassign_by_admin(o, "bob@example.com", "carol", "bob is on leave")
        .await
        .unwrap();
    assert_eq!(moved.items, bobs.len() - 1);
    // carol decides one delegated access after the due date, before the close.
    o.app.clock.set(o.due + Duration::minutes(1));
    let carols = pending_of(o, "carol@example.com").await;
    let late = carols
        .iter()
        .find(|(_, _, routing)| routing == "reassigned_by_admin")
        .unwrap()
        .0
        .clone();
    decide(
        o,
        "carol@example.com",
        &late,
        DecisionOutcome::Approve,
        "still needed",
    )
    .await;
    o.app.tick_at(o.due + Duration::minutes(2)).await;
    let pack = export(o, "pack.zip").await;

    let verified = verify_pack(&pack, None, None).unwrap();
    let items = items_in_database(o).await;
    assert_eq!(verified.items, items.len() as u64);
    assert_eq!(verified.decisions, approved_by_alice as u64 + 3);

    // The summary counts what the database holds, in total, per reviewer and per group.
    let summary = json_entry(&pack, "summary.json");
    let count = |state: &str| items.iter().filter(|i| i.0 == state).count() as u64;
    let totals = &summary["totals"];
    assert_eq!(totals["items"], items.len() as u64);
    assert_eq!(totals["approved"], count("approved"));
    assert_eq!(totals["approved"], approved_by_alice as u64 + 1);
    assert_eq!(totals["revoked"], 1);
    assert_eq!(totals["no_response"], count("no_response"));
    assert_eq!(totals["pending"], 0);
    let mut per_reviewer: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, email, _) in &items {
        *per_reviewer.entry(email.as_str()).or_default() += 1;
    }
    let said: BTreeMap<&str, u64> = summary["by_reviewer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let email = r["reviewer_email"].as_str().unwrap();
            (email, r["outcomes"]["items"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(said, per_reviewer);
    let bob = summary["by_reviewer"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["reviewer_email"] == "bob@example.com")
        .unwrap();
    assert_eq!(bob["outcomes"]["items"], 1, "only the changed item stayed");
    assert_eq!(bob["outcomes"]["revoked"], 1);
    let group_items: u64 = summary["by_group"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["outcomes"]["items"].as_u64().unwrap())
        .sum();
    assert_eq!(group_items, items.len() as u64);
    let timeliness = &summary["timeliness"];
    assert_eq!(timeliness["decisions_after_due"], 1);
    assert_eq!(timeliness["items_decided_after_due"], 1);
    assert_eq!(timeliness["closed_after_due"], true);
    assert_eq!(timeliness["items_without_decision"], count("no_response"));
    let progress = summary["progress"].as_array().unwrap();
    assert_eq!(
        progress.last().unwrap()["items_decided_so_far"],
        approved_by_alice as u64 + 2,
        "the change of mind is one item decided"
    );
    assert_eq!(summary["no_response_policy"]["flag"], count("no_response"));
    // Counted as the rows were written, the progress is what the database's grouped counts
    // (the console's chart) say.
    let campaign = o.campaign.clone();
    let by_query = o
        .app
        .blocking(move |db, _, _| daily_progress(&mut db.conn().unwrap(), &campaign).unwrap())
        .await;
    assert!(by_query.len() >= 2, "decisions on two days: {by_query:?}");
    assert_eq!(serde_json::to_value(by_query).unwrap(), summary["progress"]);

    // One exception row per item and kind; the summary counts them.
    let exceptions = text_entry(&pack, "exceptions.csv");
    let mut reader = csv::Reader::from_reader(exceptions.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let of_kind = |kind: &str| rows.iter().filter(|r| &r[6] == kind).count() as u64;
    assert_eq!(of_kind("reassigned"), moved.items as u64);
    assert!(
        rows.iter()
            .any(|r| r[0] == *late && &r[6] == "decided_after_due")
    );
    assert!(
        rows.iter()
            .any(|r| &r[6] == "rerouted" && &r[7] == "privileged_holder_rerouted"),
        "dave's prod-admins went past bob, who holds it"
    );
    assert_eq!(of_kind("no_response"), count("no_response"));
    for kind in ["reassigned", "no_response", "decided_after_due", "rerouted"] {
        assert_eq!(summary["exceptions"][kind], of_kind(kind), "{kind}");
    }

    // The history keeps the change of mind; the item's row has the final outcome.
    let history = text_entry(&pack, "decisions.jsonl");
    assert_eq!(history.matches(&changed).count(), 2);
    let items_jsonl = text_entry(&pack, "items.jsonl");
    let row: serde_json::Value = items_jsonl
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["item_id"] == *changed)
        .unwrap();
    assert_eq!(
        (row["outcome"].as_str(), row["last_comment"].as_str()),
        (Some("revoked"), Some("left the team"))
    );

    let soc2 = json_entry(&pack, "soc2.json");
    let ids: Vec<&str> = soc2["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["CC6.1", "CC6.2", "CC6.3", "C1.1"]);
    assert_eq!(soc2["retention_years"], 7);
    let closed = (o.due + Duration::minutes(2)).date_naive();
    assert_eq!(
        soc2["keep_until"],
        closed.with_year(closed.year() + 7).unwrap().to_string()
    );

    // The report stands alone: no script, no external asset; it carries the key to check.
    let report = text_entry(&pack, "report.html");
    assert!(report.contains("<svg") && report.contains("<polyline"));
    assert!(!report.contains("<script") && !report.contains("src=\"http"));
    assert!(!report.contains("href=\"http"));
    assert!(report.contains(&verified.key));
    assert!(report.contains("attest verify PACK.zip --public-key"));
    assert!(report.contains("CC6.3") && report.contains("prod-admins"));
    pack
}

/// Each edit is refused naming the place, even re-signed with the real key.
async fn check_tampering(o: &Open, pack: &Path) {
    let key = o
        .app
        .blocking(|_, _, config| CheckpointKey::from_config(&config.evidence).unwrap())
        .await;
    let dir = pack.parent().unwrap();
    let refusal = |name: &str, change: &dyn Fn(&str, &mut Vec<u8>)| {
        let edited = dir.join(format!("edited-{name}.zip"));
        reseal(pack, &edited, &key, change);
        match verify_pack(&edited, None, None) {
            Ok(verified) => panic!("the {name} edit verified: {verified:?}"),
            Err(e) => e.to_string(),
        }
    };
    let edit_text = |bytes: &mut Vec<u8>, edit: &dyn Fn(&str) -> String| {
        let text = String::from_utf8(bytes.clone()).unwrap();
        *bytes = edit(&text).into_bytes();
    };
    let drop_line = |text: &str, index: usize| {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(index);
        lines.iter().map(|l| format!("{l}\n")).collect::<String>()
    };

    // One cell of items.csv: an unanswered access shown as approved.
    let refused = refusal("cell", &|name, bytes| {
        if name == "items.csv" {
            edit_text(bytes, &|t| t.replacen(",no_response,", ",approved,", 1));
        }
    });
    assert!(
        refused.contains("items.jsonl line") && refused.contains("items.csv"),
        "{refused}"
    );
    // One item deleted from both item files: its exceptions, its decisions or the summary
    // no longer match.
    let refused = refusal("item", &|name, bytes| match name {
        "items.csv" => edit_text(bytes, &|t| drop_line(t, 1)),
        "items.jsonl" => edit_text(bytes, &|t| drop_line(t, 0)),
        _ => {}
    });
    assert!(
        refused.contains("summary.json")
            || refused.contains("which items.jsonl does not list")
            || refused.contains("exceptions.csv row"),
        "{refused}"
    );
    // One decision deleted from both decision files, its event left.
    let refused = refusal("decision", &|name, bytes| match name {
        "decisions.jsonl" => edit_text(bytes, &|t| drop_line(t, 0)),
        "decisions.csv" => edit_text(bytes, &|t| drop_line(t, 1)),
        _ => {}
    });
    assert!(
        refused.contains("which decisions.jsonl does not list"),
        "{refused}"
    );
    // The revoked access shown as approved everywhere the pack counts it: out of its place
    // among the outcomes, or, moved there, not following from its decision.
    let refused = refusal("outcome", &|name, bytes| match name {
        "items.csv" => edit_text(bytes, &|t| t.replacen(",revoked,", ",approved,", 1)),
        "items.jsonl" => edit_text(bytes, &|t| {
            t.replacen("\"outcome\":\"revoked\"", "\"outcome\":\"approved\"", 1)
        }),
        "summary.json" | "population.json" => {
            let mut doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            recount_one_revoked_as_approved(&mut doc);
            *bytes = serde_json::to_vec_pretty(&doc).unwrap();
        }
        _ => {}
    });
    assert!(refused.contains("is repeated or out of order"), "{refused}");
    // An approval's time moved, in both item files: it no longer follows from its decision.
    let approved: serde_json::Value = text_entry(pack, "items.jsonl")
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["outcome"] == "approved")
        .unwrap();
    let at = approved["decided_at"].as_str().unwrap();
    let earlier = (chrono::DateTime::parse_from_rfc3339(at).unwrap() - Duration::seconds(1))
        .with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let item = approved["item_id"].as_str().unwrap().to_string();
    let refused = refusal("decided-at", &|name, bytes| match name {
        "items.jsonl" => edit_text(bytes, &|t| {
            t.lines()
                .map(|line| {
                    let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
                    if row["item_id"] == *item {
                        row["decided_at"] = earlier.clone().into();
                    }
                    format!("{row}\n")
                })
                .collect()
        }),
        "items.csv" => {
            let mut reader = csv::Reader::from_reader(bytes.as_slice());
            let header = reader.headers().unwrap().clone();
            let column = header.iter().position(|h| h == "decided_at").unwrap();
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(&header).unwrap();
            for record in reader.records() {
                let mut cells: Vec<String> = record.unwrap().iter().map(str::to_string).collect();
                if cells[0] == item {
                    cells[column] = earlier.clone();
                }
                writer.write_record(&cells).unwrap();
            }
            *bytes = writer.into_inner().unwrap();
        }
        _ => {}
    });
    assert!(
        refused.contains("do not follow from its latest decision"),
        "{refused}"
    );
    // An unanswered access shown as kept instead of flagged, recounted everywhere.
    let refused = refusal("no-response", &|name, bytes| match name {
        "items.csv" => edit_text(bytes, &|t| {
            t.replacen(",no_response,flag,", ",no_response,keep,", 1)
        }),
        "items.jsonl" => edit_text(bytes, &|t| {
            t.replacen(
                "\"no_response_outcome\":\"flag\"",
                "\"no_response_outcome\":\"keep\"",
                1,
            )
        }),
        "summary.json" => {
            let mut doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            let flagged = doc["no_response_policy"]["flag"].as_u64().unwrap();
            doc["no_response_policy"]["flag"] = (flagged - 1).into();
            doc["no_response_policy"]["keep"] = 1.into();
            *bytes = serde_json::to_vec_pretty(&doc).unwrap();
        }
        _ => {}
    });
    assert!(
        refused.contains("no-response outcome is not the one the close recorded"),
        "{refused}"
    );
    // The due date moved past the late decision.
    let refused = refusal("due", &|name, bytes| {
        if name == "summary.json" {
            let mut doc: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            doc["timeliness"]["due_at"] = "2099-01-01T00:00:00.000000Z".into();
            *bytes = serde_json::to_vec_pretty(&doc).unwrap();
        }
    });
    assert!(
        refused.contains("campaign.opened event proves"),
        "{refused}"
    );
    // Two events swapped, and one event dropped.
    let refused = refusal("reordered", &|name, bytes| {
        if name == "events.jsonl" {
            edit_text(bytes, &|t| {
                let mut lines: Vec<&str> = t.lines().collect();
                lines.swap(1, 2);
                lines.iter().map(|l| format!("{l}\n")).collect()
            });
        }
    });
    assert!(
        refused.contains("events.jsonl line 3") && refused.contains("out of log order"),
        "{refused}"
    );
    let refused = refusal("dropped", &|name, bytes| {
        if name == "events.jsonl" {
            edit_text(bytes, &|t| {
                let keep: Vec<&str> = t
                    .lines()
                    .filter(|l| !l.contains("items.reassigned"))
                    .collect();
                keep.iter().map(|l| format!("{l}\n")).collect()
            });
        }
    });
    assert!(
        refused.contains("summary.json counts the events"),
        "{refused}"
    );
    // An exception hidden.
    let refused = refusal("exception", &|name, bytes| {
        if name == "exceptions.csv" {
            edit_text(bytes, &|t| drop_line(t, 1));
        }
    });
    assert!(
        refused.contains("exceptions.csv row 2: not the"),
        "{refused}"
    );
    // The late decision hidden from the timeliness figures, in total or for its reviewer.
    let refused = refusal("timeliness", &|name, bytes| {
        if name == "summary.json" {
            let mut summary: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            summary["timeliness"]["decisions_after_due"] = 0.into();
            *bytes = serde_json::to_vec_pretty(&summary).unwrap();
        }
    });
    assert!(
        refused.contains("decisions after the due date"),
        "{refused}"
    );
    let refused = refusal("reviewer-timeliness", &|name, bytes| {
        if name == "summary.json" {
            let mut summary: serde_json::Value = serde_json::from_slice(bytes).unwrap();
            for reviewer in summary["by_reviewer"].as_array_mut().unwrap() {
                reviewer["decisions_after_due"] = 0.into();
            }
            *bytes = serde_json::to_vec_pretty(&summary).unwrap();
        }
    });
    assert!(
        refused.contains("reviewer carol@example.com's decisions"),
        "{refused}"
    );
    // Another checkpoint of the same log (a later one, signed by the real key).
    let later = export(o, "later.zip").await;
    let other = text_entry(&later, "checkpoint.txt");
    assert_ne!(other, text_entry(pack, "checkpoint.txt"));
    let refused = refusal("checkpoint", &|name, bytes| {
        if name == "checkpoint.txt" {
            *bytes = other.clone().into_bytes();
        }
    });
    assert!(
        refused.contains("events.jsonl line 1") && refused.contains("not in the log"),
        "{refused}"
    );
    // The signature stripped.
    let stripped = dir.join("stripped.zip");
    without_entry(pack, &stripped, "manifest.sig");
    let refused = verify_pack(&stripped, None, None).unwrap_err().to_string();
    assert!(refused.contains("manifest.sig is missing"), "{refused}");
}

/// In a summary or population document, one revoked access counted as approved instead.
fn recount_one_revoked_as_approved(doc: &mut serde_json::Value) {
    let shift = |counts: &mut serde_json::Value| {
        if counts["revoked"].as_u64().unwrap_or(0) > 0 {
            counts["revoked"] = (counts["revoked"].as_u64().unwrap() - 1).into();
            counts["approved"] = (counts["approved"].as_u64().unwrap() + 1).into();
        }
    };
    if doc.get("counts").is_some() {
        shift(&mut doc["counts"]);
        return;
    }
    shift(&mut doc["totals"]);
    for list in ["by_reviewer", "by_group"] {
        for entry in doc[list].as_array_mut().unwrap() {
            shift(&mut entry["outcomes"]);
        }
    }
}

/// The campaign's pack as it stands verifies (other tests call this after their own story:
/// stages, approvals that expired, "don't know", bulk decisions, delegation).
pub async fn export_verifies(o: &Open) -> attest::evidence::verify::Verified {
    let pack = export(o, "verified.zip").await;
    verify_pack(&pack, None, None).unwrap_or_else(|e| panic!("the pack does not verify: {e}"))
}
