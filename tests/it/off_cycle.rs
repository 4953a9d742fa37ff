//! Off-cycle follow-up reviews (`only_new_access`): between two full reviews, a small review
//! of the accesses that appeared since the latest review (joiners and movers found by later
//! syncs), so that the whole audit period is covered; what one follow-up reviewed the next
//! does not review again. Driven by the injected clock on the fixture directory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::StartedCampaign;
use attest::config::CampaignDefinition;
use chrono::Duration;

use crate::common::{self, DEFINITION, SOURCE, TestApp};

const FOLLOW_UP: &str = "new-access";

async fn start(app: &TestApp, definition: &'static str) -> StartedCampaign {
    app.blocking(move |db, clock, config| {
        attest::campaigns::start_campaign(db, clock, config, definition, true, "test").unwrap()
    })
    .await
}

/// (person, group) of every item of a campaign, sorted.
async fn reviewed(app: &TestApp, campaign_id: &str) -> Vec<(String, String)> {
    let campaign_id = campaign_id.to_string();
    app.blocking(move |db, _, _| {
        use attest::db::schema::review_items as ri;
        use diesel::prelude::*;
        ri::table
            .filter(ri::campaign_id.eq(campaign_id))
            .select((ri::identity_login, ri::entitlement_name))
            .order((ri::identity_login.asc(), ri::entitlement_name.asc()))
            .load(&mut *db.conn().unwrap())
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_review_covers_only_what_appeared_since_the_latest_review_on_sqlite() {
    let dir = common::temp_dir();
    let url = common::sqlite_url(dir.path());
    follow_up_reviews_cover_only_new_access(&url, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follow_up_review_covers_only_what_appeared_since_the_latest_review_on_postgres() {
    let dir = common::temp_dir();
    let database = crate::support::postgres::database();
    follow_up_reviews_cover_only_new_access(&database.url, dir.path()).await;
}

async fn follow_up_reviews_cover_only_new_access(database_url: &str, dir: &std::path::Path) {
    let ldif = dir.join("directory.ldif");
    std::fs::copy(common::fixture(), &ldif).unwrap();
    let mut config = common::config(database_url, common::ldif_source(&ldif), None, dir);
    config.campaigns.insert(
        FOLLOW_UP.into(),
        CampaignDefinition {
            only_new_access: true,
            new_since: Some(DEFINITION.into()),
            schedule: "manual".into(),
            ..CampaignDefinition::for_source(SOURCE, vec![common::FALLBACK.into()])
        },
    );
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let full = start(&app, DEFINITION).await;
    assert!(full.items > 10);

    // A week later erin joins finance and a new person, zoe, joins vpn-users.
    app.clock.advance(Duration::days(7));
    let text = std::fs::read_to_string(&ldif).unwrap();
    let changed = text
        .replacen(
            "member: uid=judy,ou=people,dc=example,dc=com\n",
            "member: uid=judy,ou=people,dc=example,dc=com\n\
             member: uid=erin,ou=people,dc=example,dc=com\n",
            1,
        )
        .replacen(
            "member: uid=mallory,ou=people,dc=example,dc=com\n",
            "member: uid=mallory,ou=people,dc=example,dc=com\n\
             member: uid=zoe,ou=people,dc=example,dc=com\n",
            1,
        );
    assert_eq!(changed.len(), text.len() + 45 + 44, "the fixture changed");
    let zoe = "\ndn: uid=zoe,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\n\
               uid: zoe\ncn: Zoe New\nsn: New\nmail: zoe@example.com\n\
               manager: uid=carol,ou=people,dc=example,dc=com\n";
    std::fs::write(&ldif, format!("{changed}{zoe}")).unwrap();
    app.sync().await.unwrap();

    let first = start(&app, FOLLOW_UP).await;
    assert_eq!(
        reviewed(&app, &first.campaign.id).await,
        [
            ("erin".to_string(), "finance".to_string()),
            ("zoe".to_string(), "vpn-users".to_string())
        ]
    );
    let scope: serde_json::Value = serde_json::from_str(&first.campaign.scope).unwrap();
    assert_eq!(scope["only_new_access"], true);
    assert_eq!(scope["new_since"]["campaign"], full.campaign.id.as_str());
    assert_eq!(scope["new_since"]["definition"], DEFINITION);

    // A week later nothing changed: the next follow-up opens empty (a record that it ran)
    // and does not review erin's and zoe's access again.
    app.clock.advance(Duration::days(7));
    app.sync().await.unwrap();
    let second = start(&app, FOLLOW_UP).await;
    assert_eq!(second.items, 0);
    let scope: serde_json::Value = serde_json::from_str(&second.campaign.scope).unwrap();
    assert_eq!(scope["new_since"]["campaign"], first.campaign.id.as_str());
    app.stop().await;
}
