//! Review-page sessions and CSRF tokens without server state: the first GET of a review link
//! sets a random session cookie; each form carries HMAC(key, cookie, link id). A POST is
//! accepted only when the cookie is present and the form token matches it, so a cross-site
//! form, a prefetcher or a cookie-less client cannot decide anything. Opening a link writes
//! nothing to the database.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

pub const SESSION_COOKIE: &str = "attest_review";

type HmacSha256 = Hmac<Sha256>;

/// A fresh random session id for the cookie.
pub fn new_session_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Accepts only ids this module could have produced (43 URL-safe base64 characters).
pub fn is_well_formed(session_id: &str) -> bool {
    session_id.len() == 43
        && session_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn mac(key: &[u8; 32], session_id: &str, jti_hash: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; a 32-byte key cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(b"review-csrf\0");
    mac.update(session_id.as_bytes());
    mac.update(b"\0");
    mac.update(jti_hash.as_bytes());
    mac
}

pub fn token_for(key: &[u8; 32], session_id: &str, jti_hash: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(key, session_id, jti_hash).finalize().into_bytes())
}

/// Constant-time check of a submitted token against the session.
pub fn verify(key: &[u8; 32], session_id: &str, jti_hash: &str, submitted: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(submitted) else {
        return false;
    };
    mac(key, session_id, jti_hash).verify_slice(&bytes).is_ok()
}

/// A short tag identifying the session in evidence without revealing the cookie.
pub fn session_tag(session_id: &str) -> String {
    crate::notify::links::sha256_hex(session_id.as_bytes())[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_bound_to_session_and_link() {
        let key = [7u8; 32];
        let session = new_session_id();
        assert!(is_well_formed(&session));
        let token = token_for(&key, &session, "jti");
        assert!(verify(&key, &session, "jti", &token));
        assert!(!verify(&key, &new_session_id(), "jti", &token));
        assert!(!verify(&key, &session, "other", &token));
        assert!(!verify(&key, &session, "jti", "garbage"));
    }
}
