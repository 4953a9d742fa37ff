//! Revoking links while other work for the same reviewer is half-way, on PostgreSQL where it
//! really runs at once. Each test parks the real code at a chosen point by holding a database
//! lock it needs, waits until PostgreSQL reports it waiting, starts the competing operation,
//! then lets go: no deadlock, no decision after its revocation, no link minted for mail that
//! was cancelled under the worker's feet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::mpsc;
use std::time::Duration;

use attest::campaigns::model::items_of_reviewer;
use attest::db::{Database, DbConnection};
use attest::decisions::{AuthContext, DecisionOutcome, DecisionRequest, Recorded};
use attest::notify::links::lock_reviewer;
use attest::notify::outbox::{STATE_CANCELLED, messages_of_campaign};
use attest::notify::revocation::revoke_campaign_links;
use diesel::Connection;
use diesel::RunQueryDsl;

use crate::common::{self, TestApp, mails_on_disk};
use crate::support::postgres::{self, PgDatabase};
use crate::support::wait_until;

struct Fixture {
    app: TestApp,
    database: PgDatabase,
    _dir: tempfile::TempDir,
    campaign_id: String,
    bob: String,
}

async fn fixture() -> Fixture {
    let dir = common::temp_dir();
    let database = postgres::database();
    let config = common::fixture_config(&database.url, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let campaign_id = app.start_campaign().await.campaign.id;
    let bob = app.reviewer_id(&campaign_id, "bob@example.com").await;
    Fixture {
        app,
        database,
        _dir: dir,
        campaign_id,
        bob,
    }
}

/// Sessions of the database at `url` waiting for a lock.
fn lock_waiters(url: &str) -> usize {
    postgres::psql(
        url,
        "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .trim()
    .parse()
    .unwrap()
}

#[track_caller]
fn wait_for_lock_waiters(url: &str, n: usize) {
    wait_until(
        &format!("{n} session(s) waiting for a lock"),
        Duration::from_secs(30),
        || (lock_waiters(url) == n).then_some(()),
        String::new,
    );
}

/// Holds, on its own connection, a transaction that ran `hold` until told to finish it;
/// `finish` then runs inside the same transaction before it commits.
fn hold_in_transaction(
    db: &Database,
    hold: impl FnOnce(&mut DbConnection) + Send + 'static,
    finish: impl FnOnce(&mut DbConnection) + Send + 'static,
) -> (mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (held_tx, held_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let db = db.clone();
    let holder = std::thread::spawn(move || {
        let mut conn = db.conn().unwrap();
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            hold(conn);
            held_tx.send(()).unwrap();
            go_rx.recv().unwrap();
            finish(conn);
            Ok(())
        })
        .unwrap();
    });
    held_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    (go_tx, holder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_a_decision_in_flight_neither_deadlock_nor_interleave() {
    let f = fixture().await;
    let link = f
        .app
        .mint_link(&f.campaign_id, &f.bob, chrono::Duration::days(3))
        .await;
    let jti_sha256 = common::link_jti_sha256(&link);
    let db = f.app.db.clone();
    let (bob, campaign_id) = (f.bob.clone(), f.campaign_id.clone());
    let item = tokio::task::spawn_blocking({
        let (db, bob) = (db.clone(), bob.clone());
        move || {
            items_of_reviewer(&mut db.conn().unwrap(), &bob).unwrap()[0]
                .id
                .clone()
        }
    })
    .await
    .unwrap();

    // Park a decision just before it writes its row: the table is share-locked meanwhile.
    let (release, holder) = hold_in_transaction(
        &db,
        |conn| {
            diesel::sql_query("LOCK TABLE decisions IN SHARE MODE")
                .execute(conn)
                .unwrap();
        },
        |_| {},
    );
    let now = attest::clock::Clock::now(&*f.app.clock);
    let decision = std::thread::spawn({
        let (db, bob, campaign_id) = (db.clone(), bob.clone(), campaign_id.clone());
        move || {
            let request = DecisionRequest {
                campaign_id,
                reviewer_id: bob,
                item_id: item,
                outcome: DecisionOutcome::Revoke,
                comment: None,
                approved_until: None,
            };
            let auth = AuthContext {
                method: "email_link".into(),
                link_jti_sha256: Some(jti_sha256),
                session_tag: None,
                user_agent: None,
                ip: None,
                sso_subject_tag: None,
            };
            attest::decisions::record_decision(&mut db.conn().unwrap(), now, &request, &auth)
        }
    });
    wait_for_lock_waiters(&f.database.url, 1);
    let revocation = std::thread::spawn({
        let (db, campaign_id) = (db.clone(), campaign_id.clone());
        move || {
            revoke_campaign_links(
                &mut db.conn().unwrap(),
                now,
                &campaign_id,
                Some("bob@example.com"),
                false,
                "test",
            )
        }
    });
    wait_for_lock_waiters(&f.database.url, 2);
    release.send(()).unwrap();
    holder.join().unwrap();

    let decided = decision.join().unwrap();
    let revoked = revocation.join().unwrap();
    assert!(matches!(decided, Ok(Recorded::New(_))), "{decided:?}");
    assert_eq!(revoked.unwrap().links, 1);
    let kinds = f
        .app
        .blocking(|db, _, _| {
            use attest::ledger::EventKind;
            use attest::ledger::events::of_kind;
            let mut conn = db.conn().unwrap();
            let decided = of_kind(&mut conn, EventKind::DecisionRecorded).unwrap();
            let revoked = of_kind(&mut conn, EventKind::LinkRevoked).unwrap();
            (decided[0].seq, revoked[0].seq)
        })
        .await;
    assert!(
        kinds.0 < kinds.1,
        "the decision came first, then the revocation"
    );
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_cancelled_between_claim_and_delivery_mints_no_link() {
    let f = fixture().await;
    let db = f.app.db.clone();
    let (bob, campaign_id) = (f.bob.clone(), f.campaign_id.clone());
    let now = attest::clock::Clock::now(&*f.app.clock);

    // Hold bob's reviewer row as a revocation would, then revoke in that same transaction
    // once the worker has claimed bob's digest and is waiting to mint its link.
    let (go, holder) = hold_in_transaction(
        &db,
        {
            let bob = bob.clone();
            move |conn| lock_reviewer(conn, &bob, true).unwrap()
        },
        {
            let campaign_id = campaign_id.clone();
            move |conn| {
                let summary = revoke_campaign_links(
                    conn,
                    now,
                    &campaign_id,
                    Some("bob@example.com"),
                    false,
                    "test",
                )
                .unwrap();
                assert_eq!(summary.digests_cancelled, 1);
            }
        },
    );
    let worker = f.app.worker.clone();
    let drain = tokio::spawn(async move {
        let mut attempted = 0;
        loop {
            match worker.drain_once().await.unwrap() {
                0 => return attempted,
                n => attempted += n,
            }
        }
    });
    let url = f.database.url.clone();
    tokio::task::spawn_blocking(move || wait_for_lock_waiters(&url, 1))
        .await
        .unwrap();
    go.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(drain.await.unwrap(), 4, "every digest was attempted once");

    let id = campaign_id.clone();
    let (messages, bobs_links) = f
        .app
        .blocking(move |db, _, _| {
            use attest::db::schema::link_tokens;
            use diesel::prelude::*;
            let mut conn = db.conn().unwrap();
            let links: i64 = link_tokens::table
                .filter(link_tokens::reviewer_id.eq(&bob))
                .count()
                .get_result(&mut *conn)
                .unwrap();
            (messages_of_campaign(&mut conn, &id).unwrap(), links)
        })
        .await;
    assert_eq!(bobs_links, 0, "no link was minted for the cancelled digest");
    let bobs: Vec<_> = messages
        .iter()
        .filter(|m| m.recipient == "bob@example.com")
        .collect();
    assert_eq!(bobs[0].state, STATE_CANCELLED);
    let mails = mails_on_disk(&f.app.config.mail.file_dir);
    assert_eq!(mails.len(), 3);
    assert!(mails.iter().all(|(to, _)| to != "bob@example.com"));
    f.app.stop().await;
}
