//! The review page over HTTP as a browser without JavaScript uses it: a decision made on a
//! stale page is not saved over someone else's and the page shows what changed; the reasons a
//! definition requires are enforced for single and bulk decisions; each access shows its
//! context (title, department, description, last sign-in and the hints that help decide);
//! a closed review says so; a queue too large for one page opens by group, page by page.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use attest::campaigns::{CloseRules, close_campaign};
use attest::config::{CsvSourceConfig, ReasonRequired, SourceConfig};
use chrono::Duration;

use crate::common::{self, FALLBACK, TestApp, form_values};
use crate::decision_actions::{items_of, open_page};
use crate::open_review::{Open, open_campaign};

/// (item id, the `seen` value its form carries), in page order.
fn forms(html: &str) -> Vec<(String, String)> {
    form_values(html, "item")
        .into_iter()
        .zip(form_values(html, "seen"))
        .collect()
}

/// The `<li>` of item `id` on the page.
fn item_html<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"item-{id}\""))
        .unwrap_or_else(|| panic!("item {id} is not on the page"));
    let rest = &html[start..];
    // Up to the next item or the end of the person's list (hints and history nest lists).
    let end = [rest[1..].find("<li id=\"item-"), rest.find("</section>")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

async fn decisions(o: &Open) -> i64 {
    o.app.count("decisions").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_made_on_a_stale_page_is_not_saved_over_the_newer_one() {
    let o = open_campaign(|_| {}).await;
    let mut first = open_page(&o, "bob@example.com").await;
    let mut second = open_page(&o, "bob@example.com").await;
    let (item, seen) = forms(&first.html)[0].clone();
    assert_eq!(seen, "", "nothing decided yet");

    let revoke = [
        ("item", item.as_str()),
        ("outcome", "revoke"),
        ("comment", "left the team"),
        ("seen", seen.as_str()),
    ];
    assert_eq!(first.post_and_follow("decide", &revoke).await, 303);
    // The same post again (a retry after a lost answer) is the same decision, not a stale one.
    assert_eq!(first.post_and_follow("decide", &revoke).await, 303);
    assert!(first.html.contains("revoke requested."), "saved");
    assert_eq!(decisions(&o).await, 1);

    // The second browser still shows the item undecided: its approval is not saved.
    let stale = [
        ("item", item.as_str()),
        ("outcome", "approve"),
        ("seen", seen.as_str()),
    ];
    assert_eq!(second.post_and_follow("decide", &stale).await, 303);
    let shown = item_html(&second.html, &item);
    assert!(
        shown.contains("Not saved: while your page was open, this access was decided"),
        "{shown}"
    );
    assert!(
        shown.contains("<details class=\"history\" open>")
            && shown.contains("Revoke requested by Bob Baker")
            && shown.contains("left the team"),
        "what changed is shown: {shown}"
    );
    assert_eq!(decisions(&o).await, 1);
    let now = items_of(&o, "bob@example.com").await;
    assert_eq!(
        now.iter().find(|i| i.id == item).unwrap().state,
        "revoked",
        "the newer decision stands"
    );

    // Deciding again on what the page now shows is saved.
    second.reload().await;
    let (_, now_seen) = forms(&second.html)
        .into_iter()
        .find(|(id, _)| *id == item)
        .unwrap();
    assert!(!now_seen.is_empty());
    let again = [
        ("item", item.as_str()),
        ("outcome", "approve"),
        ("seen", now_seen.as_str()),
    ];
    assert_eq!(second.post_and_follow("decide", &again).await, 303);
    assert!(second.html.contains(", approved."), "saved");
    assert_eq!(decisions(&o).await, 2);
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reasons_a_definition_requires_are_enforced() {
    let o =
        open_campaign(|d| d.reason_required_for = vec![ReasonRequired::PrivilegedApprove]).await;
    let mut page = open_page(&o, FALLBACK).await;
    let items = items_of(&o, FALLBACK).await;
    let privileged = items.iter().find(|i| i.privileged).unwrap();
    let ordinary: Vec<_> = items.iter().filter(|i| !i.privileged).collect();
    assert!(!ordinary.is_empty());
    assert!(
        page.html.contains("required to approve privileged access"),
        "the bulk form says when a reason is needed"
    );

    let approve = [("item", privileged.id.as_str()), ("outcome", "approve")];
    assert_eq!(page.post_and_follow("decide", &approve).await, 303);
    assert!(
        item_html(&page.html, &privileged.id)
            .contains("Not saved: say why this access is still needed."),
        "refused at the item"
    );
    assert_eq!(decisions(&o).await, 0);

    // Approving them all at once without a reason is refused too: one is privileged.
    let bulk = [("scope", "remaining"), ("outcome", "approve")];
    assert_eq!(page.post_and_follow("decide-all", &bulk).await, 303);
    assert!(
        page.html
            .contains("Not saved: say why these accesses are still needed.")
    );
    assert!(page.html.contains("<details class=\"several\" open>"));
    assert_eq!(decisions(&o).await, 0);

    // This definition needs no reason to revoke, nor to approve ordinary access.
    let revoke = [("item", ordinary[0].id.as_str()), ("outcome", "revoke")];
    assert_eq!(page.post_and_follow("decide", &revoke).await, 303);
    assert!(page.html.contains("revoke requested."));
    if let Some(second) = ordinary.get(1) {
        let approve = [("item", second.id.as_str()), ("outcome", "approve")];
        assert_eq!(page.post_and_follow("decide", &approve).await, 303);
        assert!(page.html.contains(", approved."));
    }
    let with_reason = [
        ("item", privileged.id.as_str()),
        ("outcome", "approve"),
        ("comment", "on call this quarter"),
    ];
    assert_eq!(page.post_and_follow("decide", &with_reason).await, 303);
    assert!(page.html.contains(", approved."));
    assert_eq!(decisions(&o).await, 2 + i64::from(ordinary.len() > 1));
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_access_shows_what_helps_decide() {
    let mut o = open_campaign(|_| {}).await;
    let mut first_page = open_page(&o, "bob@example.com").await;
    assert!(first_page.html.contains("Decide for each access below"));
    let first_campaign = o.campaign.clone();
    o.app
        .blocking(move |db, clock, _| {
            close_campaign(
                &mut db.conn().unwrap(),
                attest::clock::Clock::now(clock),
                &first_campaign,
                &CloseRules::default(),
                "test",
            )
            .unwrap();
        })
        .await;
    // The closed review says so and offers no decision.
    first_page.reload().await;
    assert!(!first_page.html.contains("Decide for each access below"));
    assert!(
        first_page
            .html
            .contains("This review closed on 2026-11-02: here is what was decided.")
    );
    assert!(form_values(&first_page.html, "item").is_empty());

    // Dave last signed in on 1 June; frank joins vpn-users after the first review.
    let ldif = std::fs::read_to_string(&o.ldif)
        .unwrap()
        .replace("uid: dave\n", "uid: dave\nauthTimestamp: 20260601120000Z\n")
        .replace(
            "description: Remote access VPN\n",
            "description: Remote access VPN\nmember: uid=frank,ou=people,dc=example,dc=com\n",
        );
    std::fs::write(&o.ldif, ldif).unwrap();
    o.app.clock.set(o.opened + Duration::days(1));
    o.app.sync().await.unwrap();
    o.campaign = o.app.start_campaign().await.campaign.id;
    let page = open_page(&o, "bob@example.com").await;
    let items = items_of(&o, "bob@example.com").await;
    let find = |login: &str, group: &str| {
        items
            .iter()
            .find(|i| i.identity_login == login && i.entitlement_name == group)
            .unwrap()
            .id
            .clone()
    };

    let daves_vpn = item_html(&page.html, &find("dave", "vpn-users"));
    assert!(daves_vpn.contains("Remote access VPN"), "{daves_vpn}");
    assert!(daves_vpn.contains("no sign-in for 154 days"), "{daves_vpn}");
    assert!(!daves_vpn.contains("granted since the last review"));
    assert!(
        page.html.contains(
            "Site Reliability Engineer, engineering · reports to you · last sign-in 2026-06-01"
        ),
        "{}",
        page.html
    );
    let franks_vpn = item_html(&page.html, &find("frank", "vpn-users"));
    assert!(
        franks_vpn.contains("granted since the last review"),
        "{franks_vpn}"
    );
    assert!(
        !franks_vpn.contains("no sign-in"),
        "frank's sign-ins are not known"
    );
    assert!(
        !item_html(&page.html, &find("frank", "engineering"))
            .contains("granted since the last review")
    );
    o.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_queue_opens_by_group_page_by_page() {
    let dir = common::temp_dir();
    let csv = dir.path().join("access.csv");
    let mut rows = String::from("person_id,login,name,email,manager,entitlement,privileged\n");
    rows.push_str("boss,boss,Big Boss,boss@example.com,,,\n");
    for n in 0..320 {
        let group = if n < 250 { "app-one" } else { "app-two" };
        rows.push_str(&format!(
            "p{n},user{n},User {n:03},user{n}@example.com,boss,{group},false\n"
        ));
        if n < 10 {
            rows.push_str(&format!(
                "p{n},user{n},User {n:03},user{n}@example.com,boss,db-admins,true\n"
            ));
        }
    }
    std::fs::write(&csv, rows).unwrap();
    let source = SourceConfig::Csv(CsvSourceConfig {
        path: csv,
        privileged_groups: Vec::new(),
        remediation: None,
    });
    let config = common::config(&common::sqlite_url(dir.path()), source, None, dir.path());
    let app = TestApp::spawn_without_background_workers(config).await;
    app.sync().await.unwrap();
    let campaign = app.start_campaign().await.campaign.id;
    let reviewer = app.reviewer_id(&campaign, "boss@example.com").await;
    let url = app
        .mint_link(&campaign, &reviewer, Duration::days(20))
        .await;
    let client = common::http_client();
    let get = |url: String| {
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };

    let overview = get(url.clone()).await;
    assert!(overview.contains("Your accesses by group"), "{overview}");
    assert!(overview.contains("You review 330 accesses."));
    assert!(form_values(&overview, "item").is_empty(), "no item listed");
    let db_admins = overview.find(">db-admins</a>").unwrap();
    assert!(
        db_admins < overview.find(">app-one</a>").unwrap(),
        "privileged groups first"
    );
    let group_link = |name: &str| {
        let end = overview.find(&format!("\">{name}</a>")).unwrap();
        let start = overview[..end].rfind("href=\"").unwrap() + "href=\"".len();
        overview[start..end].replace("&amp;", "&")
    };
    let app_one = group_link("app-one");
    let origin = url.split("/r/").next().unwrap().to_string();

    let first = get(format!("{origin}{app_one}")).await;
    assert_eq!(form_values(&first, "item").len(), 200);
    assert!(first.contains("app-one: 1–200 of 250"), "{first}");
    let next = {
        let at = first.find("\">Next</a>").unwrap();
        let start = first[..at].rfind("href=\"").unwrap() + "href=\"".len();
        first[start..at].replace("&amp;", "&")
    };
    let second = get(format!("{origin}{next}")).await;
    assert_eq!(form_values(&second, "item").len(), 50);
    assert!(second.contains("app-one: 201–250 of 250"));
    assert!(second.contains(">Previous</a>") && !second.contains(">Next</a>"));

    // A mail link to an item of a large queue opens its group at the page that holds it.
    let on_page_two = form_values(&second, "item")[10].clone();
    let linked = get(format!("{url}?item={on_page_two}&intent=approve")).await;
    assert!(linked.contains(&format!("id=\"item-{on_page_two}\"")));
    assert!(linked.contains("app-one: 201–250 of 250"));
    assert!(linked.contains("Confirm: <strong>approve</strong> this access?"));

    // Their digest summarises: counts per group, the privileged ones listed.
    assert_eq!(app.worker.drain_once().await.unwrap(), 1);
    let (_, digest) = common::mails_on_disk(&dir.path().join("mail"))
        .into_iter()
        .find(|(to, _)| to.contains("boss@example.com"))
        .unwrap();
    let digest = digest.replace("\r\n", "\n");
    assert!(digest.contains("There are 330 of them"), "{digest}");
    assert!(digest.contains("That is too many to list here. By group:\n* db-admins [PRIVILEGED]: 10\n* app-one: 250\n* app-two: 70\n"), "{digest}");
    assert_eq!(
        digest.matches("Approve: ").count(),
        10,
        "only the privileged ones listed"
    );

    // Undecided only, within a group.
    let pending_only = get(format!("{origin}{}&show=pending", group_link("db-admins"))).await;
    assert_eq!(form_values(&pending_only, "item").len(), 10);
    app.stop().await;
}
