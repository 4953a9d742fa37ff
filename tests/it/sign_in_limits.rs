//! Starting a sign-in at the identity provider, against the real npm `oidc-provider`: an
//! address gets `auth.sign_ins_per_minute` starts and then 429 with `Retry-After` until the
//! injected clock has moved on; the provider's metadata is discovered once and used for ten
//! minutes, so sign-ins keep starting while the provider's discovery cannot be reached, and
//! once it is stale the provider is asked again (and its absence shows).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::Duration;

use crate::common;
use crate::staff_console::start;

async fn login(base_url: &str) -> (u16, Option<String>, Option<String>) {
    let response = common::http_client()
        .get(format!("{base_url}/auth/login"))
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };
    (
        response.status().as_u16(),
        header("location"),
        header("retry-after"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_starts_are_limited_per_address_and_the_provider_is_asked_once() {
    let mut c = start(|config| config.auth.sign_ins_per_minute = 3).await;
    let base = c.app.base_url.clone();
    let issuer = c.provider.issuer.clone();
    let (status, location, _) = login(&base).await;
    assert_eq!(status, 303);
    assert!(location.unwrap().starts_with(&issuer), "to the provider");

    // The provider goes away: its metadata, discovered once, still starts sign-ins.
    c.provider.stop();
    for _ in 0..2 {
        let (status, location, _) = login(&base).await;
        assert_eq!(status, 303);
        assert!(location.unwrap().starts_with(&issuer));
    }
    // The fourth start within the minute is refused, with when to come back.
    let (status, location, retry_after) = login(&base).await;
    assert_eq!((status, location), (429, None));
    assert_eq!(
        retry_after.as_deref(),
        Some("20"),
        "one more start each 20 s"
    );
    let attempts = c.app.count("staff_sign_ins").await;
    assert_eq!(attempts, 3, "a refused start stores no attempt");

    let opened = attest::clock::Clock::now(c.app.clock.as_ref());
    c.app.clock.set(opened + Duration::seconds(20));
    assert_eq!(login(&base).await.0, 303);

    // Ten minutes on, the metadata is asked for again: the provider is not there.
    c.app.clock.set(opened + Duration::minutes(11));
    let (status, location, _) = login(&base).await;
    assert_eq!((status, location), (502, None));
    c.app.stop().await;
}
