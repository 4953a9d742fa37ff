//! Campaigns that open by themselves, driven by the injected clock: a quarter opens on the
//! first of January in its time zone and once; a weekly cron keeps its local time across
//! daylight saving (TESTPLAN F12); a service down across a boundary opens the missed period's
//! campaign late (F13); `first_period = "next"` waits; several schedulers at the boundary open
//! one campaign (F5), with threads on SQLite and two `attest serve` processes on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use attest::config::FirstPeriod;
use attest::jobs::Scheduler;
use chrono::{DateTime, Utc};

use crate::binary::{self, Running};
use crate::common::{self, DEFINITION, TestApp};
use crate::support::{postgres, wait_until};

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

async fn scheduled_app(
    dir: &std::path::Path,
    schedule: &str,
    timezone: &str,
    first_period: FirstPeriod,
) -> TestApp {
    let mut config = common::fixture_config(&common::sqlite_url(dir), None, dir);
    config.scheduler.enabled = true;
    let definition = config.campaigns.get_mut(DEFINITION).unwrap();
    definition.schedule = schedule.into();
    definition.timezone = timezone.into();
    definition.first_period = first_period;
    TestApp::spawn_without_background_workers(config).await
}

/// (period start, late) of every campaign, oldest period first.
async fn campaigns(app: &TestApp) -> Vec<(DateTime<Utc>, bool)> {
    app.blocking(|db, _, _| {
        use attest::db::schema::campaigns as c;
        use diesel::prelude::*;
        c::table
            .order(c::period_start.asc())
            .select((c::period_start, c::late))
            .load::<(chrono::NaiveDateTime, bool)>(&mut *db.conn().unwrap())
            .unwrap()
            .into_iter()
            .map(|(start, late)| (start.and_utc(), late))
            .collect()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_opens_on_the_first_of_january_in_its_zone_and_once() {
    let dir = common::temp_dir();
    let app = scheduled_app(
        dir.path(),
        "quarterly",
        "Europe/Berlin",
        FirstPeriod::Current,
    )
    .await;
    // 23:30 on New Year's Eve in Berlin: the first start opens Q4 (not late: first start).
    assert_eq!(app.tick_at(utc("2026-12-31T22:30:00Z")).await, 1);
    assert_eq!(app.tick_at(utc("2026-12-31T22:59:59Z")).await, 0);
    // Midnight in Berlin: Q1 opens, once.
    assert_eq!(app.tick_at(utc("2026-12-31T23:00:30Z")).await, 1);
    // The Q1 opening synced first: the still open Q4 campaign checks its reviewers against
    // that snapshot (once), and nothing else runs.
    assert_eq!(app.tick_at(utc("2026-12-31T23:05:00Z")).await, 1);
    assert_eq!(app.tick_at(utc("2026-12-31T23:10:00Z")).await, 0);
    assert_eq!(
        campaigns(&app).await,
        vec![
            (utc("2026-09-30T22:00:00Z"), false),
            (utc("2026-12-31T23:00:00Z"), false)
        ]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weekly_cron_keeps_its_local_time_across_daylight_saving() {
    let dir = common::temp_dir();
    let app = scheduled_app(
        dir.path(),
        "0 9 * * Mon",
        "America/New_York",
        FirstPeriod::Current,
    )
    .await;
    // Every hour for three weeks around the change to daylight saving (14 March 2027).
    let mut at = utc("2027-03-01T00:00:00Z");
    while at <= utc("2027-03-23T00:00:00Z") {
        app.tick_at(at).await;
        at += chrono::Duration::hours(1);
    }
    let periods: Vec<DateTime<Utc>> = campaigns(&app).await.into_iter().map(|c| c.0).collect();
    assert_eq!(
        periods,
        vec![
            utc("2027-02-22T14:00:00Z"),
            utc("2027-03-01T14:00:00Z"),
            utc("2027-03-08T14:00:00Z"),
            utc("2027-03-15T13:00:00Z"),
            utc("2027-03-22T13:00:00Z"),
        ],
        "09:00 in New York every Monday, once each"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_down_across_a_boundary_opens_the_campaign_late() {
    let dir = common::temp_dir();
    let app = scheduled_app(dir.path(), "quarterly", "UTC", FirstPeriod::Current).await;
    app.tick_at(utc("2026-11-02T09:00:00Z")).await;
    // Down from November to May: Q1 passed unseen, Q2 opens on restart, late.
    app.tick_at(utc("2027-05-10T08:00:00Z")).await;
    assert_eq!(
        campaigns(&app).await,
        vec![
            (utc("2026-10-01T00:00:00Z"), false),
            (utc("2027-04-01T00:00:00Z"), true)
        ]
    );
    let opened = app
        .blocking(|db, _, _| {
            attest::ledger::events::of_kind(
                &mut db.conn().unwrap(),
                attest::ledger::EventKind::CampaignOpened,
            )
            .unwrap()
        })
        .await;
    let payload: serde_json::Value = serde_json::from_str(&opened[1].payload).unwrap();
    assert_eq!(payload["late"], true);
    assert_eq!(
        payload["missed_periods"],
        serde_json::json!(["2027-01-01T00:00:00+00:00"])
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_period_next_waits_for_the_next_period() {
    let dir = common::temp_dir();
    let app = scheduled_app(dir.path(), "quarterly", "UTC", FirstPeriod::Next).await;
    assert_eq!(app.tick_at(utc("2026-11-02T09:00:00Z")).await, 0);
    assert!(campaigns(&app).await.is_empty());
    assert_eq!(app.tick_at(utc("2027-01-01T00:00:01Z")).await, 1);
    assert_eq!(
        campaigns(&app).await,
        vec![(utc("2027-01-01T00:00:00Z"), false)]
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schedulers_racing_at_the_boundary_open_one_campaign_on_sqlite() {
    let dir = common::temp_dir();
    let app = scheduled_app(dir.path(), "quarterly", "UTC", FirstPeriod::Current).await;
    app.clock.set(utc("2027-01-01T00:00:05Z"));
    let schedulers: Vec<Scheduler> = (0..4).map(|_| app.scheduler()).collect();
    let ran = tokio::task::spawn_blocking(move || {
        let barrier = std::sync::Barrier::new(schedulers.len());
        std::thread::scope(|scope| {
            let handles: Vec<_> = schedulers
                .iter()
                .map(|s| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        s.tick().unwrap()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        })
    })
    .await
    .unwrap();
    assert_eq!(ran, 1, "one job, run by one of them");
    assert_eq!(campaigns(&app).await.len(), 1);
    app.stop().await;
}

#[test]
fn two_serve_processes_on_postgres_open_one_campaign() {
    let dir = common::temp_dir();
    let database = postgres::database();
    let config = binary::write_config(
        dir.path(),
        Some(&database.url),
        None,
        "[scheduler]\ntick_seconds = 1\n\n[log]\nlevel = \"info,attest::jobs=debug\"\n",
    );
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("schedule = \"manual\"", "schedule = \"quarterly\"");
    std::fs::write(&config, text).unwrap();
    let config_arg = config.to_str().unwrap().to_string();
    let first = Running::start(dir.path(), &["--config", &config_arg, "serve"]);
    let second = Running::start(dir.path(), &["--config", &config_arg, "serve"]);
    let count = || {
        database
            .psql("SELECT count(*) FROM campaigns")
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    wait_until(
        "the scheduled campaign",
        Duration::from_secs(60),
        || (count() == 1).then_some(()),
        || first.stderr() + &second.stderr(),
    );
    // Both instances keep ticking after it opened: still one campaign.
    let ticks = |running: &Running| running.stderr().matches("scheduler tick").count();
    let (a, b) = (ticks(&first), ticks(&second));
    wait_until(
        "both schedulers to tick three more times",
        Duration::from_secs(60),
        || (ticks(&first) >= a + 3 && ticks(&second) >= b + 3).then_some(()),
        || first.stderr() + &second.stderr(),
    );
    assert_eq!(count(), 1);
    let jobs = database.psql("SELECT state FROM jobs");
    assert_eq!(jobs.trim(), "done", "one opening job, done once");

    let listed = binary::run_ok(dir.path(), &config, &["campaign", "list"]);
    assert!(listed.contains("access-review: next opens 20"), "{listed}");
}
