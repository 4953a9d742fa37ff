//! What a reviewer can do beyond one decision, through the review page as they would: approve
//! until a date (which expires into a revocation, driven by the injected clock, even after the
//! campaign closed), decide all undecided accesses of one person or all that remain with one
//! comment, and pass their undecided accesses to someone else with a reason; an admin can move
//! them too. And "don't know" never sends an access back to someone who passed it on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::ReviewItem;
use attest::campaigns::model::items_of_reviewer;
use attest::decisions::{DecisionOutcome, DecisionRequest, record_decision};
use attest::ledger::EventKind;
use chrono::{Duration, NaiveDate};

use crate::common::{self, FALLBACK};
use crate::open_review::{
    Open, auth, events_of, mail_of_kind, open_campaign, open_campaign_on_postgres,
    reassign_by_admin, recipients,
};

/// Every item of `email`'s, sorted by person then group.
pub(crate) async fn items_of(o: &Open, email: &str) -> Vec<ReviewItem> {
    let reviewer = o.app.reviewer_id(&o.campaign, email).await;
    let mut items = o
        .app
        .blocking(move |db, _, _| items_of_reviewer(&mut db.conn().unwrap(), &reviewer).unwrap())
        .await;
    items.sort_by(|a, b| {
        (&a.identity_login, &a.entitlement_name).cmp(&(&b.identity_login, &b.entitlement_name))
    });
    items
}

/// A reviewer's page opened through their link: the client with its session, the page's
/// CSRF token and the link.
pub(crate) struct Page {
    pub(crate) client: reqwest::Client,
    pub(crate) url: String,
    pub(crate) csrf: String,
    pub(crate) html: String,
}

pub(crate) async fn open_page(o: &Open, email: &str) -> Page {
    let reviewer = o.app.reviewer_id(&o.campaign, email).await;
    let url = o
        .app
        .mint_link(&o.campaign, &reviewer, Duration::days(20))
        .await;
    let client = common::http_client();
    let html = client.get(&url).send().await.unwrap().text().await.unwrap();
    let csrf = common::form_values(&html, "csrf")[0].clone();
    Page {
        client,
        url,
        csrf,
        html,
    }
}

impl Page {
    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> u16 {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        common::post_form(&self.client, format!("{}/{path}", self.url), &all).await
    }

    /// Posts and follows the redirect back to the page, as a browser does.
    pub(crate) async fn post_and_follow(&mut self, path: &str, fields: &[(&str, &str)]) -> u16 {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        let response = self
            .client
            .post(format!("{}/{path}", self.url))
            .form(&all)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .to_string();
        let back = response.url().join(&location).unwrap();
        self.html = self
            .client
            .get(back)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        status
    }

    pub(crate) async fn reload(&mut self) {
        self.html = self
            .client
            .get(&self.url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    }

    /// The bulk form's option whose label contains `label`.
    fn bulk_option(&self, label: &str) -> String {
        self.html
            .split("<option value=\"")
            .skip(1)
            .find(|option| option.split('<').next().unwrap().contains(label))
            .map(|option| option.split('"').next().unwrap().to_string())
            .unwrap_or_else(|| panic!("no bulk option for {label}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_until_a_date_expires_into_a_revocation_after_close() {
    let o = open_campaign(|_| {}).await;
    let page = open_page(&o, "bob@example.com").await;
    let item = items_of(&o, "bob@example.com").await[0].id.clone();
    let ends: NaiveDate = (o.due + Duration::days(10)).date_naive();
    let ends_text = ends.to_string();

    // No date, a date in the past, a date too far: refused, nothing recorded.
    let past = (o.opened - Duration::days(1)).date_naive().to_string();
    let far = (o.opened + Duration::days(400)).date_naive().to_string();
    for until in ["", past.as_str(), far.as_str(), "next week"] {
        let fields = [
            ("item", item.as_str()),
            ("outcome", "approve_until"),
            ("until", until),
        ];
        assert_eq!(page.post("decide", &fields).await, 400, "until {until:?}");
    }
    assert!(events_of(&o, EventKind::DecisionRecorded).await.is_empty());

    let fields = [
        ("item", item.as_str()),
        ("outcome", "approve_until"),
        ("until", ends_text.as_str()),
        ("comment", "contractor until the migration ends"),
    ];
    assert_eq!(page.post("decide", &fields).await, 303);
    let decided = items_of(&o, "bob@example.com").await[0].clone();
    assert_eq!(decided.state, "approved");
    let ends_at = ends.and_hms_opt(0, 0, 0).unwrap();
    assert_eq!(decided.approved_until, Some(ends_at));
    let recorded = events_of(&o, EventKind::DecisionRecorded).await;
    assert_eq!(recorded[0]["outcome"], "approve");
    assert_eq!(
        recorded[0]["approved_until"],
        format!("{ends_text}T00:00:00Z")
    );
    let mut page = page;
    page.reload().await;
    assert!(page.html.contains(&format!("Approved until {ends_text}")));
    // Two more approvals that must outlive it: one until a later day, one for good.
    let later = (ends + Duration::days(20)).to_string();
    let (second, third) = {
        let items = items_of(&o, "bob@example.com").await;
        (items[1].id.clone(), items[2].id.clone())
    };
    let fields = [
        ("item", second.as_str()),
        ("outcome", "approve_until"),
        ("until", later.as_str()),
    ];
    assert_eq!(page.post("decide", &fields).await, 303);
    let fields = [("item", third.as_str()), ("outcome", "approve")];
    assert_eq!(page.post("decide", &fields).await, 303);

    // The campaign closes at its due date; the approval still holds.
    o.app.tick_at(o.due).await;
    assert_eq!(items_of(&o, "bob@example.com").await[0].state, "approved");
    o.app
        .tick_at(ends_at.and_utc() - Duration::minutes(1))
        .await;
    assert_eq!(items_of(&o, "bob@example.com").await[0].state, "approved");

    // At the date it becomes a revocation, once.
    o.app.tick_at(ends_at.and_utc()).await;
    o.app.tick_at(ends_at.and_utc() + Duration::hours(1)).await;
    let expired = items_of(&o, "bob@example.com").await[0].clone();
    assert_eq!(expired.state, "revoked");
    assert_eq!(expired.expired_at, Some(ends_at));
    let events = events_of(&o, EventKind::ApprovalsExpired).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["items"], serde_json::json!([item]));
    // The later and the open-ended approvals hold; the undecided items kept their close.
    let others = items_of(&o, "bob@example.com").await;
    assert_eq!(
        (others[1].state.as_str(), others[2].state.as_str()),
        ("approved", "approved")
    );
    assert!(others[3..].iter().all(|i| i.state == "no_response"));
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_decisions_cover_the_undecided_accesses_in_scope_on_sqlite() {
    bulk_decisions_cover_the_undecided_accesses_in_scope(open_campaign(|_| {}).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_decisions_cover_the_undecided_accesses_in_scope_on_postgres() {
    bulk_decisions_cover_the_undecided_accesses_in_scope(open_campaign_on_postgres(|_| {}).await)
        .await;
}

/// All undecided accesses of one person, then of one group until a date, then all that
/// remain, each with one comment; what was decided one by one stays as it was.
async fn bulk_decisions_cover_the_undecided_accesses_in_scope(o: Open) {
    let mut page = open_page(&o, "bob@example.com").await;
    let before = items_of(&o, "bob@example.com").await;
    let dave: Vec<&ReviewItem> = before
        .iter()
        .filter(|i| i.identity_login == "dave")
        .collect();
    assert!(dave.len() >= 2, "{before:?}");

    // One of dave's is revoked one by one first: the bulk action leaves it as it is.
    let fields = [
        ("item", dave[0].id.as_str()),
        ("outcome", "revoke"),
        ("comment", "left the platform team"),
    ];
    assert_eq!(page.post("decide", &fields).await, 303);
    page.reload().await;
    let everything_of_dave = page.bulk_option("(dave)");

    // Without the page's CSRF token: refused, nothing decided.
    let forged = common::post_form(
        &page.client,
        format!("{}/decide-all", page.url),
        &[
            ("scope", everything_of_dave.as_str()),
            ("outcome", "approve"),
        ],
    )
    .await;
    assert_eq!(forged, 403);

    let fields = [
        ("scope", everything_of_dave.as_str()),
        ("outcome", "approve"),
        ("comment", "still on the platform team"),
    ];
    assert_eq!(page.post_and_follow("decide-all", &fields).await, 303);
    let saved = match dave.len() - 1 {
        1 => "Saved 1 access.".to_string(),
        n => format!("Saved {n} accesses."),
    };
    assert!(page.html.contains(&saved), "{saved}");
    let after = items_of(&o, "bob@example.com").await;
    for item in &after {
        let expected = match (item.identity_login.as_str(), item.id == dave[0].id) {
            ("dave", true) => "revoked",
            ("dave", false) => "approved",
            _ => "pending",
        };
        assert_eq!(item.state, expected, "{item:?}");
    }
    let bulk = events_of(&o, EventKind::DecisionsRecorded).await;
    assert_eq!(bulk.len(), 1);
    assert_eq!(bulk[0]["comment"], "still on the platform team");
    assert_eq!(bulk[0]["outcome"], "approve");
    assert_eq!(bulk[0]["auth"]["method"], "email_link");
    assert_eq!(
        bulk[0]["decisions"].as_array().unwrap().len(),
        dave.len() - 1
    );

    // Everyone still undecided in engineering, approved until a date.
    let ends = (o.opened + Duration::days(60)).date_naive().to_string();
    let in_engineering = page.bulk_option("Everyone in engineering");
    let fields = [
        ("scope", in_engineering.as_str()),
        ("outcome", "approve_until"),
        ("until", ends.as_str()),
    ];
    assert_eq!(page.post("decide-all", &fields).await, 303);
    let engineering: Vec<ReviewItem> = items_of(&o, "bob@example.com")
        .await
        .into_iter()
        .filter(|i| i.entitlement_name == "engineering" && i.identity_login != "dave")
        .collect();
    assert!(!engineering.is_empty());
    for item in &engineering {
        assert_eq!(item.state, "approved");
        assert_eq!(item.approved_until.unwrap().date().to_string(), ends);
    }

    // All that remain, revoked; then nothing is left and a second post decides nothing.
    let remaining = before
        .iter()
        .filter(|i| i.identity_login != "dave" && i.entitlement_name != "engineering")
        .count();
    // A revocation needs a reason (the default `reason_required_for`): without one the page
    // says so and nothing is decided.
    let without_reason = [("scope", "remaining"), ("outcome", "revoke")];
    assert_eq!(
        page.post_and_follow("decide-all", &without_reason).await,
        303
    );
    assert!(
        page.html
            .contains("Not saved: say why these accesses should be revoked."),
        "{}",
        page.html
    );
    let unchanged = items_of(&o, "bob@example.com").await;
    assert_eq!(
        unchanged.iter().filter(|i| i.state == "pending").count(),
        remaining
    );
    let fields = [
        ("scope", "remaining"),
        ("outcome", "revoke"),
        ("comment", "not needed any more"),
    ];
    assert_eq!(page.post("decide-all", &fields).await, 303);
    let done = items_of(&o, "bob@example.com").await;
    assert_eq!(
        done.iter().filter(|i| i.state == "revoked").count(),
        remaining + 1
    );
    assert_eq!(page.post("decide-all", &fields).await, 303);
    let bulk = events_of(&o, EventKind::DecisionsRecorded).await;
    assert_eq!(bulk.len(), 3, "the empty last post wrote nothing");
    // Every item still has one decision row per decision made.
    let decisions: i64 = o
        .app
        .blocking(|db, _, _| {
            use attest::db::schema::decisions;
            use diesel::prelude::*;
            decisions::table
                .count()
                .get_result(&mut *db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(decisions as usize, before.len());
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_passes_their_undecided_accesses_on_with_a_reason_on_sqlite() {
    a_reviewer_passes_their_undecided_accesses_on_with_a_reason(open_campaign(|_| {}).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_passes_their_undecided_accesses_on_with_a_reason_on_postgres() {
    let o = open_campaign_on_postgres(|_| {}).await;
    a_reviewer_passes_their_undecided_accesses_on_with_a_reason(o).await;
}

/// bob passes his undecided accesses to dave (who cannot take his own), then an admin moves
/// the rest to carol; after close nothing moves.
async fn a_reviewer_passes_their_undecided_accesses_on_with_a_reason(o: Open) {
    let mut page = open_page(&o, "bob@example.com").await;
    let before = items_of(&o, "bob@example.com").await;
    let daves = before.iter().filter(|i| i.identity_login == "dave").count();

    // A reason is required; an unknown person is refused; nothing moves.
    assert_eq!(
        page.post("delegate", &[("to", "carol"), ("reason", " ")])
            .await,
        400
    );
    let fields = [("to", "nobody-here"), ("reason", "on leave")];
    assert_eq!(page.post("delegate", &fields).await, 400);
    assert!(events_of(&o, EventKind::ItemsReassigned).await.is_empty());

    // To dave: dave's own accesses cannot go to him and stay with bob.
    let fields = [
        ("to", "dave@example.com"),
        ("reason", "dave knows these systems"),
    ];
    assert_eq!(page.post_and_follow("delegate", &fields).await, 303);
    let moved_here = before.len() - daves;
    assert!(
        page.html.contains(&format!(
            "{moved_here} accesses passed on. Thank you. {daves} accesses stayed with you"
        )),
        "{}",
        page.html
    );
    let kept = items_of(&o, "bob@example.com").await;
    assert_eq!(kept.len(), daves);
    assert!(kept.iter().all(|i| i.identity_login == "dave"));
    let with_dave = items_of(&o, "dave@example.com").await;
    assert_eq!(with_dave.len(), before.len() - daves);
    assert!(with_dave.iter().all(|i| i.routing == "delegated"));
    let moved = events_of(&o, EventKind::ItemsReassigned).await;
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["reason"], "delegated");
    assert_eq!(moved[0]["note"], "dave knows these systems");
    o.app.worker.drain_once().await.unwrap();
    assert_eq!(
        recipients(&mail_of_kind(&o, "escalation").await),
        ["dave@example.com"]
    );

    // An admin moves the rest to carol; a closed campaign's items no longer move.
    let moved = reassign_by_admin(&o, "bob@example.com", "carol", "bob is on parental leave")
        .await
        .unwrap();
    assert_eq!((moved.items, moved.stuck), (daves, 0));
    let with_carol = items_of(&o, "carol@example.com").await;
    assert_eq!(
        with_carol
            .iter()
            .filter(|i| i.routing == "reassigned_by_admin")
            .count(),
        daves
    );
    let events = events_of(&o, EventKind::ItemsReassigned).await;
    assert_eq!(events[1]["note"], "bob is on parental leave");
    o.app.tick_at(o.due).await;
    let refused = reassign_by_admin(&o, "carol@example.com", "alice", "late").await;
    assert!(refused.unwrap_err().to_string().contains("closed"));
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dont_know_never_sends_an_access_back_to_someone_who_passed_it_on() {
    // dave (whose manager is bob) is the first fallback: without the rule, bob -> alice ->
    // dave -> bob would go round; with it, dave's "don't know" goes on to the next fallback.
    let o = open_campaign(|d| {
        d.fallback_reviewers = vec!["dave@example.com".into(), FALLBACK.into()];
    })
    .await;
    let erin = items_of(&o, "bob@example.com")
        .await
        .into_iter()
        .find(|i| i.identity_login == "erin")
        .unwrap()
        .id;
    let mut outcomes = Vec::new();
    for who in [
        "bob@example.com",
        "alice@example.com",
        "dave@example.com",
        FALLBACK,
    ] {
        let reviewer = o.app.reviewer_id(&o.campaign, who).await;
        let (campaign, item) = (o.campaign.clone(), erin.clone());
        let outcome = o
            .app
            .blocking(move |db, clock, _| {
                let request = DecisionRequest {
                    campaign_id: campaign,
                    reviewer_id: reviewer,
                    item_id: item,
                    outcome: DecisionOutcome::DontKnow,
                    comment: None,
                    approved_until: None,
                };
                let now = attest::clock::Clock::now(clock);
                record_decision(&mut db.conn().unwrap(), now, &request, &auth())
                    .map_err(|e| e.to_string())
            })
            .await;
        outcomes.push(outcome.is_ok());
        if let Err(refusal) = outcome {
            assert!(refusal.contains("nobody else"), "{refusal}");
        }
    }
    assert_eq!(outcomes, [true, true, true, false]);
    let holder: Vec<_> = items_of(&o, FALLBACK)
        .await
        .into_iter()
        .filter(|i| i.id == erin)
        .collect();
    assert_eq!(
        holder.len(),
        1,
        "the access stays with the last fallback, undecided"
    );
    assert_eq!(holder[0].state, "pending");
    let moves = events_of(&o, EventKind::ItemsReassigned).await;
    assert_eq!(moves.len(), 3);
    let bob = o.app.reviewer_id(&o.campaign, "bob@example.com").await;
    assert!(
        moves.iter().all(|m| m["to_reviewer"] != bob.as_str()),
        "{moves:?}"
    );
    crate::evidence_pack::export_verifies(&o).await;
    o.app.stop().await;
}
