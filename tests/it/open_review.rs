//! A campaign opened by hand on a copy of the fixture directory, with the scheduler and the
//! mail worker driven by the test, and what tests read of it: a reviewer's undecided items,
//! the campaign's mail and its evidence events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::model::items_of_reviewer;
use attest::config::Config;
use attest::decisions::{AuthContext, DecisionOutcome, DecisionRequest, record_decision};
use attest::ledger::EventKind;
use attest::notify::outbox::messages_of_campaign;
use chrono::{DateTime, Utc};

use crate::common::{self, DEFINITION, TestApp};
use crate::support::postgres::{self, PgDatabase};

pub struct Open {
    pub app: TestApp,
    /// The directory the source reads (a copy of the fixture the test may edit).
    pub ldif: std::path::PathBuf,
    pub campaign: String,
    pub opened: DateTime<Utc>,
    pub due: DateTime<Utc>,
    _dir: tempfile::TempDir,
    /// The PostgreSQL database the app runs on, if not SQLite (dropped last).
    _postgres: Option<PgDatabase>,
}

/// The fixture directory, a campaign opened by hand, and the scheduler driven by the test.
pub async fn open_campaign(adjust: impl FnOnce(&mut attest::config::CampaignDefinition)) -> Open {
    open_campaign_on(None, adjust).await
}

/// The same on a fresh PostgreSQL database.
pub async fn open_campaign_on_postgres(
    adjust: impl FnOnce(&mut attest::config::CampaignDefinition),
) -> Open {
    open_campaign_on(Some(postgres::database()), adjust).await
}

async fn open_campaign_on(
    postgres: Option<PgDatabase>,
    adjust: impl FnOnce(&mut attest::config::CampaignDefinition),
) -> Open {
    let dir = common::temp_dir();
    let ldif = dir.path().join("directory.ldif");
    std::fs::copy(common::fixture(), &ldif).unwrap();
    let url = match &postgres {
        Some(database) => database.url.clone(),
        None => common::sqlite_url(dir.path()),
    };
    let mut config: Config = common::config(&url, common::ldif_source(&ldif), None, dir.path());
    let definition = config.campaigns.get_mut(DEFINITION).unwrap();
    // Only the campaign the test opens: no quarterly one besides.
    definition.schedule = "manual".into();
    adjust(definition);
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let started = app.start_campaign().await;
    app.worker.drain_once().await.unwrap();
    Open {
        campaign: started.campaign.id.clone(),
        opened: started.campaign.opened_at.and_utc(),
        due: started.campaign.due_at.and_utc(),
        app,
        ldif,
        _dir: dir,
        _postgres: postgres,
    }
}

pub fn auth() -> AuthContext {
    AuthContext {
        method: "test".into(),
        link_jti_sha256: None,
        session_tag: None,
        user_agent: None,
        ip: None,
        sso_subject_tag: None,
    }
}

/// `email`'s pending items as (item id, person login, routing).
pub async fn pending_of(o: &Open, email: &str) -> Vec<(String, String, String)> {
    let reviewer = o.app.reviewer_id(&o.campaign, email).await;
    o.app
        .blocking(move |db, _, _| {
            items_of_reviewer(&mut db.conn().unwrap(), &reviewer)
                .unwrap()
                .into_iter()
                .filter(|i| i.state == "pending")
                .map(|i| (i.id, i.identity_login, i.routing))
                .collect()
        })
        .await
}

/// `email` decides every item they have; returns how many.
pub async fn decide_all_of(o: &Open, email: &str, outcome: DecisionOutcome) -> usize {
    let reviewer = o.app.reviewer_id(&o.campaign, email).await;
    let campaign = o.campaign.clone();
    o.app
        .blocking(move |db, clock, _| {
            let mut conn = db.conn().unwrap();
            let items = items_of_reviewer(&mut conn, &reviewer).unwrap();
            for item in &items {
                let request = DecisionRequest {
                    campaign_id: campaign.clone(),
                    reviewer_id: reviewer.clone(),
                    item_id: item.id.clone(),
                    outcome,
                    comment: None,
                    approved_until: None,
                };
                let now = attest::clock::Clock::now(clock);
                record_decision(&mut conn, now, &request, &auth()).unwrap();
            }
            items.len()
        })
        .await
}

/// (kind, recipient, dedupe key) of the campaign's mail of `kind`.
pub async fn mail_of_kind(o: &Open, kind: &'static str) -> Vec<(String, String)> {
    let campaign = o.campaign.clone();
    let mut rows: Vec<(String, String)> = o
        .app
        .blocking(move |db, _, _| {
            messages_of_campaign(&mut db.conn().unwrap(), &campaign)
                .unwrap()
                .into_iter()
                .filter(|m| m.kind == kind)
                .map(|m| (m.recipient, m.dedupe_key))
                .collect()
        })
        .await;
    rows.sort();
    rows
}

pub fn recipients(rows: &[(String, String)]) -> Vec<&str> {
    rows.iter().map(|(to, _)| to.as_str()).collect()
}

pub async fn events_of(o: &Open, kind: EventKind) -> Vec<serde_json::Value> {
    o.app
        .blocking(move |db, _, _| {
            attest::ledger::events::of_kind(&mut db.conn().unwrap(), kind)
                .unwrap()
                .into_iter()
                .map(|e| serde_json::from_str(&e.payload).unwrap())
                .collect()
        })
        .await
}

/// An admin moves `from`'s undecided items to `to` (a login or email) with `reason`.
pub async fn reassign_by_admin(
    o: &Open,
    from: &str,
    to: &'static str,
    reason: &'static str,
) -> attest::error::Result<attest::campaigns::reassign::Reassigned> {
    let (campaign, from) = (
        o.campaign.clone(),
        o.app.reviewer_id(&o.campaign, from).await,
    );
    o.app
        .blocking(move |db, clock, _| {
            let delegation = attest::campaigns::delegation::Delegation {
                campaign_id: &campaign,
                from_reviewer_id: &from,
                to,
                reason,
                by: attest::campaigns::delegation::DelegatedBy::Admin("cli"),
            };
            let now = attest::clock::Clock::now(clock);
            attest::campaigns::delegation::delegate(&mut db.conn().unwrap(), now, &delegation)
        })
        .await
}
