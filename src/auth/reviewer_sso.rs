//! Reviewer sign-in (`review.require_sso`): besides holding the link from their mail, a
//! reviewer signs in at the organisation's provider as the person the review is addressed
//! to. The proof is a cookie the server sealed (HMAC-SHA256 under a key of its own): the
//! reviewer it is for, until when, whether the sign-in had a second factor, and a tag of the
//! provider's subject. It needs no database on each post, names no person, and cannot be
//! moved to another reviewer's link. Each sign-in, admitted or refused, is an event.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::sessions::StaffAuth;
use crate::auth::staff_sign_in::{ProvedIdentity, has_second_factor};
use crate::campaigns::model::Reviewer;
use crate::db::DbConnection;
use crate::error::Result;
use crate::ledger::{EventKind, append};

/// The cookie holding the sealed proof (scoped to the review pages).
pub const REVIEWER_COOKIE: &str = "attest_reviewer";
const VERSION: &str = "v1";

/// What a reviewer's sign-in proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewerProof {
    pub reviewer_id: String,
    pub expires_at: i64,
    /// The sign-in had a second factor.
    pub mfa: bool,
    /// SHA-256 (first 16 hex digits) of issuer and subject: which account signed in,
    /// without naming it.
    pub subject_tag: String,
}

impl ReviewerProof {
    /// How the maker of a decision under this proof was authenticated.
    pub fn method(&self) -> &'static str {
        if self.mfa {
            "email_link+sso+mfa"
        } else {
            "email_link+sso"
        }
    }
}

fn mac(key: &[u8; 32], text: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"attest reviewer sign-in\0");
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub fn subject_tag(auth: &StaffAuth, subject: &str) -> String {
    let digest = Sha256::digest(format!("{}\0{subject}", auth.issuer).as_bytes());
    hex::encode(&digest[..8])
}

/// The cookie value for `proof`.
pub fn seal(key: &[u8; 32], proof: &ReviewerProof) -> String {
    let text = format!(
        "{VERSION}.{}.{}.{}.{}",
        proof.reviewer_id,
        proof.expires_at,
        u8::from(proof.mfa),
        proof.subject_tag
    );
    format!("{text}.{}", mac(key, &text))
}

/// The proof a cookie holds, if this server sealed it and it has not expired.
pub fn open(key: &[u8; 32], value: &str, now: DateTime<Utc>) -> Option<ReviewerProof> {
    let (text, sealed) = value.rsplit_once('.')?;
    // Compared as hashes: no early exit on the MAC's bytes.
    if Sha256::digest(mac(key, text).as_bytes()) != Sha256::digest(sealed.as_bytes()) {
        return None;
    }
    let mut parts = text.split('.');
    if parts.next()? != VERSION {
        return None;
    }
    let proof = ReviewerProof {
        reviewer_id: parts.next()?.to_string(),
        expires_at: parts.next()?.parse().ok()?,
        mfa: parts.next()? == "1",
        subject_tag: parts.next()?.to_string(),
    };
    (parts.next().is_none() && now.timestamp() < proof.expires_at).then_some(proof)
}

/// Admits `identity` as `reviewer` when the provider proved the reviewer's own address, and
/// records the sign-in either way; returns the proof to seal, or `None` when refused (the
/// refusal's event is written: commit it).
pub fn admit_reviewer(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    reviewer: &Reviewer,
    identity: &ProvedIdentity,
    valid_hours: u32,
) -> Result<Option<ReviewerProof>> {
    let tag = subject_tag(&identity.auth, &identity.subject);
    // Only an address the provider vouches for names the person: at a provider where users
    // set their own address, an unverified one proves nothing.
    let same_person = identity.email_verified
        && identity.email.as_deref().is_some_and(|email| {
            !email.is_empty() && email.eq_ignore_ascii_case(reviewer.email.trim())
        });
    if !same_person {
        append(
            conn,
            now,
            EventKind::ReviewerSignInRefused,
            &format!("reviewer:{}", reviewer.id),
            Some(&reviewer.campaign_id),
            &json!({
                "reviewer": reviewer.id,
                "issuer": identity.auth.issuer,
                "subject_tag": tag,
                "why": if identity.email_verified {
                    "the account signed in is not the reviewer this review is addressed to"
                } else {
                    "the provider did not vouch for the account's email address (email_verified)"
                },
            }),
        )?;
        return Ok(None);
    }
    let mfa = has_second_factor(&identity.auth.amr);
    append(
        conn,
        now,
        EventKind::ReviewerSignedIn,
        &format!("reviewer:{}", reviewer.id),
        Some(&reviewer.campaign_id),
        &json!({
            "reviewer": reviewer.id,
            "issuer": identity.auth.issuer,
            "subject_tag": tag,
            "acr": identity.auth.acr,
            "amr": identity.auth.amr,
            "mfa": mfa,
        }),
    )?;
    Ok(Some(ReviewerProof {
        reviewer_id: reviewer.id.clone(),
        expires_at: now.timestamp() + i64::from(valid_hours) * 3600,
        mfa,
        subject_tag: tag,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proof() -> ReviewerProof {
        ReviewerProof {
            reviewer_id: "0197a3c2-0000-7000-8000-000000000001".into(),
            expires_at: 2_000_000_000,
            mfa: true,
            subject_tag: "0123456789abcdef".into(),
        }
    }

    #[test]
    fn a_sealed_proof_opens_only_with_its_key_unchanged_and_in_time() {
        let key = [7u8; 32];
        let now = DateTime::<Utc>::from_timestamp(1_900_000_000, 0).unwrap_or_default();
        let sealed = seal(&key, &proof());
        assert_eq!(open(&key, &sealed, now), Some(proof()));
        assert_eq!(open(&[8u8; 32], &sealed, now), None, "another key");
        let other_reviewer = sealed.replacen("0001.", "0002.", 1);
        assert_eq!(
            open(&key, &other_reviewer, now),
            None,
            "moved to another reviewer"
        );
        let without_mfa = sealed.replacen(".1.", ".0.", 1);
        assert_eq!(open(&key, &without_mfa, now), None, "edited");
        let later = DateTime::<Utc>::from_timestamp(2_000_000_000, 0).unwrap_or_default();
        assert_eq!(open(&key, &sealed, later), None, "expired");
        assert_eq!(open(&key, "v1.x", now), None);
    }
}
