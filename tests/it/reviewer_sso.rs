//! `review.require_sso` against the real npm `oidc-provider`: the link alone shows the review
//! but a decision waits for the reviewer's sign-in; signing in as another person is refused
//! and recorded, and so is an account whose address the provider does not vouch for; signed
//! in as themselves (with a second factor) the reviewer decides, and the
//! decision records how (`email_link+sso+mfa` and a tag of the account, never its name); the
//! proof of one reviewer does not open another reviewer's decisions.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Duration;

use crate::common::{self, form_values};
use crate::staff_console::{Console, events, follow, start, submit_login};

async fn review_link(c: &Console, email: &str) -> String {
    let campaign = c
        .app
        .blocking(|db, _, _| {
            attest::campaigns::list_campaigns(&mut db.conn().unwrap()).unwrap()[0]
                .campaign
                .id
                .clone()
        })
        .await;
    let reviewer = c.app.reviewer_id(&campaign, email).await;
    c.app
        .mint_link(&campaign, &reviewer, Duration::days(14))
        .await
}

/// Posts a decision on the first undecided item of the page at `url`; returns the status
/// and where it sent the browser.
async fn decide_first(client: &reqwest::Client, url: &str) -> (u16, String) {
    let page = client.get(url).send().await.unwrap().text().await.unwrap();
    let csrf = form_values(&page, "csrf")[0].clone();
    let item = form_values(&page, "item")[0].clone();
    let response = client
        .post(format!("{url}/decide"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("item", item.as_str()),
            ("outcome", "approve"),
            ("comment", ""),
        ])
        .send()
        .await
        .unwrap();
    let location = response
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_string())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

/// Signs in from the review at `url` as `login`; returns where it ended (URL, status, body).
async fn sign_in_from(client: &reqwest::Client, url: &str, login: &str) -> (String, u16, String) {
    let (at, status, page) = follow(client, format!("{url}/sign-in")).await;
    assert_eq!(status, 200, "{at}: {page}");
    assert!(page.contains("Sign in to the test provider"), "{page}");
    submit_login(client, &at, &page, login, &format!("{login}-password")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reviewer_signs_in_as_themselves_before_deciding() {
    let c = start(|config| config.review.require_sso = true).await;
    let bob_url = review_link(&c, "bob@example.com").await;

    // The link shows the page, asks for a sign-in, and a decision waits for it.
    let client = common::http_client();
    let page = client
        .get(&bob_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Sign in to decide"), "{page}");
    // Refused back to the page itself (the page's form-action policy would block a form's
    // redirect to the provider), which asks for the sign-in.
    let (status, location) = decide_first(&client, &bob_url).await;
    let path = reqwest::Url::parse(&bob_url).unwrap().path().to_string();
    assert_eq!(
        (status, location.as_str()),
        (303, format!("{path}?problem=sign_in#sign-in").as_str())
    );
    let refused = client
        .get(format!("{bob_url}?problem=sign_in"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(refused.contains("Not saved: sign in first."), "{refused}");
    assert_eq!(c.app.count("decisions").await, 0);

    // Carol signs in on Bob's review: refused, recorded, and still no decision.
    let carol = common::http_client();
    let (_, status, page) = sign_in_from(&carol, &bob_url, "carol").await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("another account"), "{page}");
    assert_eq!(events(&c, "reviewer.sign_in_refused").await.len(), 1);
    assert_eq!(decide_first(&carol, &bob_url).await.0, 303);
    assert_eq!(c.app.count("decisions").await, 0);

    // Someone whose provider account claims Bob's address without vouching for it.
    let mallory = common::http_client();
    let (_, status, _) = sign_in_from(&mallory, &bob_url, "mallory").await;
    assert_eq!(status, 403);
    let refusals = events(&c, "reviewer.sign_in_refused").await;
    assert_eq!(refusals.len(), 2);
    assert!(
        refusals[1]["why"]
            .as_str()
            .unwrap()
            .contains("email_verified")
    );

    // Bob signs in (password and one-time code) and comes back to his review.
    let (at, status, page) = sign_in_from(&client, &bob_url, "bob").await;
    assert_eq!((at.as_str(), status), (bob_url.as_str(), 200), "{page}");
    assert!(!page.contains("Sign in to decide"), "{page}");
    let signed_in = events(&c, "reviewer.signed_in").await;
    assert_eq!(signed_in.len(), 1);
    assert_eq!(signed_in[0]["mfa"], true);
    assert!(
        !signed_in[0].to_string().contains("bob@example.com"),
        "no address in the log"
    );
    let (status, _) = decide_first(&client, &bob_url).await;
    assert_eq!(status, 303);
    let (method, context): (String, String) = c
        .app
        .blocking(|db, _, _| {
            use attest::db::schema::decisions;
            use diesel::prelude::*;
            decisions::table
                .select((decisions::auth_method, decisions::auth_context))
                .first(&mut db.conn().unwrap())
                .unwrap()
        })
        .await;
    assert_eq!(method, "email_link+sso+mfa");
    let context: serde_json::Value = serde_json::from_str(&context).unwrap();
    assert_eq!(
        context["sso_subject_tag"], signed_in[0]["subject_tag"],
        "the decision names the account that signed in"
    );

    // Bob's sign-in does not open Carol's review in his browser.
    let carol_url = review_link(&c, "carol@example.com").await;
    let (status, location) = decide_first(&client, &carol_url).await;
    assert_eq!((status, location.contains("problem=sign_in")), (303, true));
    assert_eq!(c.app.count("decisions").await, 1);
    c.app.stop().await;
}
