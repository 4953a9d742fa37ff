//! A review item always names a campaign and a reviewer that exist, on both backends:
//! SQLite's foreign keys, and on PostgreSQL the checks once per statement that replace them
//! (migration 000013). Inserts and updates naming a missing row fail, deleting a row that
//! items name fails, and on PostgreSQL a reviewer cannot be deleted while a transaction that
//! has just given it items is still open (the rows are locked as a foreign key locks them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::{Connection, RunQueryDsl};

use crate::common::{self, TestApp};
use crate::support::postgres;

/// Copies an item of the campaign under a new id, naming `reviewer` and `campaign` (SQL).
fn copy_item(id: &str, campaign: &str, reviewer: &str) -> String {
    format!(
        "INSERT INTO review_items (id, campaign_id, reviewer_id, routing, \
         identity_external_id, identity_login, identity_name, identity_email, identity_status, \
         entitlement_external_id, entitlement_name, entitlement_dn, privileged, via, \
         granted_since, stage, state) \
         SELECT '{id}', {campaign}, {reviewer}, routing, identity_external_id, identity_login, \
         identity_name, identity_email, identity_status, entitlement_external_id || '-{id}', \
         entitlement_name, entitlement_dn, privileged, via, granted_since, stage, state \
         FROM review_items ORDER BY id LIMIT 1"
    )
}

const A_REVIEWER: &str = "(SELECT min(reviewer_id) FROM review_items)";
const A_CAMPAIGN: &str = "(SELECT min(campaign_id) FROM review_items)";
/// Adds a reviewer `id` with no items to the campaign (SQL).
fn new_reviewer(id: &str) -> String {
    format!(
        "INSERT INTO reviewers (id, campaign_id, email, display_name) \
         SELECT '{id}', id, '{id}@example.com', 'Spare' FROM campaigns ORDER BY id LIMIT 1"
    )
}

async fn app_with_a_campaign(database_url: &str, dir: &std::path::Path) -> TestApp {
    let config = common::fixture_config(database_url, None, dir);
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    app.start_campaign().await;
    app
}

/// A campaign that only items will name: a copy of the open one under another definition.
const SPARE_CAMPAIGN: &str = "INSERT INTO campaigns (id, definition, title, source, sync_run_id, \
     scope, period_start, opened_at, due_at, closed_at, state, late, close_held_at, stage) \
     SELECT 'spare-campaign', 'spare', title, source, sync_run_id, scope, period_start, \
     opened_at, due_at, closed_at, state, late, close_held_at, stage FROM campaigns LIMIT 1";

/// How the database answered each statement, run on its own: `ok`, `fk` for a foreign key
/// violation (SQLSTATE 23503 on PostgreSQL), or the other error.
async fn outcomes(app: &TestApp, statements: Vec<String>) -> Vec<String> {
    use diesel::result::{DatabaseErrorKind, Error};
    app.blocking(move |db, _, _| {
        let mut conn = db.conn().unwrap();
        statements
            .iter()
            .map(|sql| match diesel::sql_query(sql).execute(&mut *conn) {
                Ok(_) => "ok".to_string(),
                Err(Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)) => {
                    "fk".to_string()
                }
                Err(other) => format!("{sql}: {other}"),
            })
            .collect()
    })
    .await
}

async fn references_hold(app: &TestApp) {
    let items = app.count("review_items").await;
    // Rows that nothing but review items will name.
    assert_eq!(
        outcomes(app, vec![new_reviewer("spare"), SPARE_CAMPAIGN.to_string()]).await,
        ["ok", "ok"]
    );
    let answers = outcomes(
        app,
        vec![
            copy_item("no-reviewer", A_CAMPAIGN, "'missing'"),
            copy_item("no-campaign", "'missing'", A_REVIEWER),
            format!("UPDATE review_items SET reviewer_id = 'missing' WHERE reviewer_id = {A_REVIEWER}"),
            format!("UPDATE review_items SET campaign_id = 'missing' WHERE reviewer_id = {A_REVIEWER}"),
            // Items for the spare rows, then the spare rows themselves are kept.
            copy_item("to-spare", "'spare-campaign'", "'spare'"),
            format!("UPDATE review_items SET reviewer_id = 'spare' WHERE id = (SELECT min(id) FROM review_items WHERE reviewer_id <> 'spare')"),
            "DELETE FROM reviewers WHERE id = 'spare'".to_string(),
            "DELETE FROM campaigns WHERE id = 'spare-campaign'".to_string(),
            "UPDATE campaigns SET id = 'renamed' WHERE id = 'spare-campaign'".to_string(),
        ],
    )
    .await;
    assert_eq!(
        answers,
        ["fk", "fk", "fk", "fk", "ok", "ok", "fk", "fk", "fk"],
        "broken references are refused as foreign key violations; valid ones are accepted"
    );
    assert_eq!(app.count("review_items").await, items + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_name_existing_campaigns_and_reviewers_on_sqlite() {
    let dir = common::temp_dir();
    let app = app_with_a_campaign(&common::sqlite_url(dir.path()), dir.path()).await;
    references_hold(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_name_existing_campaigns_and_reviewers_on_postgres() {
    let dir = common::temp_dir();
    let database = postgres::database();
    let app = app_with_a_campaign(&database.url, dir.path()).await;
    references_hold(&app).await;

    // A transaction gives a new reviewer an item and stays open: deleting the reviewer
    // waits for it, then fails once the item is committed.
    let url = database.url.clone();
    let mut giving = diesel::PgConnection::establish(&url).unwrap();
    diesel::sql_query(new_reviewer("racer"))
        .execute(&mut giving)
        .unwrap();
    diesel::sql_query("BEGIN").execute(&mut giving).unwrap();
    diesel::sql_query(copy_item("racing", A_CAMPAIGN, "'racer'"))
        .execute(&mut giving)
        .unwrap();
    let deleting = std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        diesel::sql_query("DELETE FROM reviewers WHERE id = 'racer'").execute(&mut conn)
    });
    // Wait (without a timer) until the delete is blocked on the reviewer's row lock.
    let mut watcher = diesel::PgConnection::establish(&database.url).unwrap();
    loop {
        #[derive(diesel::QueryableByName)]
        struct Waiting {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let waiting: Waiting = diesel::sql_query(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM reviewers%'",
        )
        .get_result(&mut watcher)
        .unwrap();
        if waiting.n == 1 {
            break;
        }
        assert!(
            !deleting.is_finished(),
            "the delete did not wait for the insert"
        );
        std::thread::yield_now();
    }
    diesel::sql_query("COMMIT").execute(&mut giving).unwrap();
    let deleted = deleting.join().unwrap();
    assert!(
        deleted.is_err(),
        "a reviewer named by a committed item is kept"
    );
    app.stop().await;
}
