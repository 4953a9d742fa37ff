//! Steps the remediation tests share: a reviewer's revoke recorded as the review page records
//! it, the campaign's close, one round of remediation as the scheduler runs it, a task read
//! back, and the clock moved on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::{CloseRules, close_campaign};
use attest::decisions::{AuthContext, DecisionOutcome, DecisionRequest, record_decision};
use attest::remediation::{RoundReport, Task, run_once};
use chrono::Duration;

use crate::common::{self, TestApp};

/// Opens a campaign and revokes (person, group) as its reviewer; returns the campaign id and
/// the item id.
pub async fn revoke(app: &TestApp, person: &str, group: &str) -> (String, String) {
    let campaign = app.start_campaign().await.campaign.id;
    let (c, p, g) = (campaign.clone(), person.to_string(), group.to_string());
    let item = app
        .blocking(move |db, _, _| {
            use attest::db::schema::review_items::dsl::*;
            use diesel::prelude::*;
            review_items
                .filter(campaign_id.eq(&c))
                .filter(identity_login.eq(&p))
                .filter(entitlement_name.eq(&g))
                .select(id)
                .first::<String>(&mut db.conn().unwrap())
                .unwrap()
        })
        .await;
    decide(app, &campaign, &item, "revoke").await;
    (campaign, item)
}

/// Records the item's reviewer's decision (`approve` or `revoke`).
pub async fn decide(app: &TestApp, campaign: &str, item: &str, outcome: &str) {
    let outcome = match outcome {
        "approve" => DecisionOutcome::Approve,
        _ => DecisionOutcome::Revoke,
    };
    decide_until(app, campaign, item, outcome, None).await;
}

/// Records the item's reviewer's decision, an approval until `until` when given.
pub async fn decide_until(
    app: &TestApp,
    campaign: &str,
    item: &str,
    outcome: DecisionOutcome,
    until: Option<chrono::NaiveDate>,
) {
    let (c, i) = (campaign.to_string(), item.to_string());
    app.blocking(move |db, clock, _| {
        let mut conn = db.conn().unwrap();
        let reviewer: String = {
            use attest::db::schema::review_items::dsl::*;
            use diesel::prelude::*;
            review_items
                .find(&i)
                .select(reviewer_id)
                .first(&mut conn)
                .unwrap()
        };
        let request = DecisionRequest {
            campaign_id: c,
            reviewer_id: reviewer,
            item_id: i,
            outcome,
            comment: Some("no longer needs it".into()),
            approved_until: until,
        };
        let auth = AuthContext {
            method: "link".into(),
            link_jti_sha256: None,
            session_tag: None,
            user_agent: None,
            ip: None,
            sso_subject_tag: None,
        };
        let now = attest::clock::Clock::now(clock);
        record_decision(&mut conn, now, &request, &auth).unwrap();
    })
    .await;
}

/// Opens a campaign, and the reviewer of (person, group) revokes it on the review page their
/// link opens, as a manager clicks it; returns the campaign id and the item id.
pub async fn revoke_on_the_review_page(
    app: &TestApp,
    person: &str,
    group: &str,
) -> (String, String) {
    let campaign = app.start_campaign().await.campaign.id;
    let (c, p, g) = (campaign.clone(), person.to_string(), group.to_string());
    let (item, reviewer) = app
        .blocking(move |db, _, _| {
            use attest::db::schema::review_items::dsl::*;
            use diesel::prelude::*;
            review_items
                .filter(campaign_id.eq(&c))
                .filter(identity_login.eq(&p))
                .filter(entitlement_name.eq(&g))
                .select((id, reviewer_id))
                .first::<(String, String)>(&mut db.conn().unwrap())
                .unwrap()
        })
        .await;
    let url = app
        .mint_link(&campaign, &reviewer, Duration::days(14))
        .await;
    let client = common::http_client();
    let page = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert!(common::form_values(&page, "item").contains(&item), "{page}");
    let csrf = common::form_values(&page, "csrf")[0].clone();
    let posted = client
        .post(format!("{url}/decide"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("item", item.as_str()),
            ("outcome", "revoke"),
            ("comment", "moved to another team"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status().as_u16(), 303, "the revoke is saved");
    (campaign, item)
}

pub async fn close(app: &TestApp, campaign: &str) {
    let c = campaign.to_string();
    app.blocking(move |db, clock, _| {
        let now = attest::clock::Clock::now(clock);
        close_campaign(
            &mut db.conn().unwrap(),
            now,
            &c,
            &CloseRules::default(),
            "test",
        )
        .unwrap();
    })
    .await;
}

/// [`revoke`], a round that must carry out nothing while the reviewer may still change their
/// mind, then [`close`].
pub async fn revoke_and_close(app: &TestApp, person: &str, group: &str) -> (String, String) {
    let (campaign, item) = revoke(app, person, group).await;
    assert_eq!(round(app).await.created, 0, "no task before the close");
    close(app, &campaign).await;
    (campaign, item)
}

pub async fn round(app: &TestApp) -> RoundReport {
    app.blocking(|db, clock, config| {
        run_once(&mut db.conn().unwrap(), config, clock, "test", false).unwrap()
    })
    .await
}

pub async fn task_of(app: &TestApp, item: &str) -> Task {
    let item = item.to_string();
    app.blocking(move |db, _, _| {
        use attest::db::schema::remediation_tasks::dsl::*;
        use diesel::prelude::*;
        remediation_tasks
            .filter(item_id.eq(&item))
            .select(Task::as_select())
            .first(&mut db.conn().unwrap())
            .unwrap()
    })
    .await
}

pub async fn later(app: &TestApp, minutes: i64) {
    let now = attest::clock::Clock::now(app.clock.as_ref());
    app.clock.set(now + Duration::minutes(minutes));
}
