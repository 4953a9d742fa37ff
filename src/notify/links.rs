//! Review-link tokens: HS256 JWTs with a fixed key id, required `exp`/`iss`/`aud`/`sub`, one
//! audience per purpose, bound to one reviewer and one campaign. Each issued token is recorded
//! (by the hash of its `jti`) so that it can be revoked; tokens are never logged or stored.
//! Expiry is checked against the injected clock, not the system time.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{LinksConfig, resolve_secret};
use crate::db::DbConnection;
use crate::db::schema::{link_tokens, reviewers};
use crate::db::time::{from_db, to_db};
use crate::error::{ConfigProblem, Error, Result};
use crate::ledger::{EventKind, append};

/// The audience of review links; a token minted for any other purpose is refused here.
pub const REVIEW_AUDIENCE: &str = "attest:review";
const ALGORITHM: Algorithm = Algorithm::HS256;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReviewClaims {
    pub iss: String,
    pub aud: String,
    /// Reviewer id.
    pub sub: String,
    /// Campaign id.
    pub cmp: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

impl ReviewClaims {
    pub fn jti_hash(&self) -> String {
        sha256_hex(self.jti.as_bytes())
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Signs review links with the current key and verifies them against a fixed map of key ids
/// (the current key and any retired keys kept for rotation).
pub struct LinkSigner {
    issuer: String,
    key_id: String,
    secret: SecretString,
    previous: BTreeMap<String, SecretString>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner")
            .field("issuer", &self.issuer)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl LinkSigner {
    /// Loads the key from config, creating the key file with a random key when allowed.
    pub fn from_config(config: &LinksConfig) -> Result<LinkSigner> {
        if config.signing_key.is_none()
            && let Some(path) = &config.signing_key_file
            && !path.exists()
            && config.generate_missing_key
        {
            generate_key_file(path)?;
        }
        // An inline key wins over the (defaulted) key file.
        let key_file = match config.signing_key {
            Some(_) => None,
            None => config.signing_key_file.as_deref(),
        };
        let secret = resolve_secret("links.signing_key", config.signing_key.as_ref(), key_file)
            .map_err(|p| Error::Config(vec![p]))?
            .ok_or_else(|| {
                Error::Config(vec![ConfigProblem::new(
                    "links.signing_key_file",
                    "no signing key configured",
                )])
            })?;
        if secret.expose_secret().len() < 32 {
            return Err(Error::Config(vec![ConfigProblem::new(
                "links.signing_key",
                "must be at least 32 characters",
            )]));
        }
        let mut previous = BTreeMap::new();
        for (kid, path) in &config.previous_key_files {
            let key = format!("links.previous_key_files.{kid}");
            let old = resolve_secret(&key, None, Some(path))
                .map_err(|p| Error::Config(vec![p]))?
                .filter(|k| k.expose_secret().len() >= 32 && *kid != config.key_id)
                .ok_or_else(|| {
                    Error::Config(vec![ConfigProblem::new(
                        &key,
                        "needs a key of at least 32 characters and its own key id",
                    )])
                })?;
            previous.insert(kid.clone(), old);
        }
        Ok(LinkSigner {
            issuer: config.issuer.clone(),
            key_id: config.key_id.clone(),
            secret,
            previous,
        })
    }

    /// A key derived from the link key for another purpose (e.g. CSRF tokens).
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"attest-derived-key\0");
        hasher.update(purpose.as_bytes());
        hasher.update([0u8]);
        hasher.update(self.secret.expose_secret().as_bytes());
        hasher.finalize().into()
    }

    pub fn sign(&self, claims: &ReviewClaims) -> Result<String> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(
            &header,
            claims,
            &EncodingKey::from_secret(self.secret.expose_secret().as_bytes()),
        )
        .map_err(|e| Error::Internal(format!("cannot sign link: {e}")))
    }

    /// Checks signature, algorithm, key id, issuer, audience, required claims and expiry (by
    /// `now`). Every failure is the same generic [`Error::Unauthorized`]; the reason is logged.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<ReviewClaims> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| reject("header", &failure_kind(&e)))?;
        if header.alg != ALGORITHM {
            return Err(reject("algorithm", &"not HS256"));
        }
        let key = match header.kid.as_deref() {
            Some(kid) if kid == self.key_id => &self.secret,
            Some(kid) => self
                .previous
                .get(kid)
                .ok_or_else(|| reject("key id", &"unknown"))?,
            None => return Err(reject("key id", &"missing")),
        };
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[REVIEW_AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is judged below against the injected clock.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<ReviewClaims>(
            token,
            &DecodingKey::from_secret(key.expose_secret().as_bytes()),
            &validation,
        )
        .map_err(|e| reject("signature or claims", &failure_kind(&e)))?;
        if data.claims.exp <= now.timestamp() {
            return Err(reject("expiry", &"expired"));
        }
        Ok(data.claims)
    }
}

/// What was wrong with a token, in words that never quote it: the library's own messages can
/// carry decoded header or claim values.
fn failure_kind(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidToken => "not a JWT",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "wrong algorithm",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        ErrorKind::InvalidClaimFormat(_) => "a claim has the wrong format",
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidSubject => "wrong subject",
        ErrorKind::ImmatureSignature => "not valid yet",
        ErrorKind::Base64(_) => "not base64url",
        ErrorKind::Json(_) => "not the expected JSON",
        ErrorKind::Utf8(_) => "not UTF-8",
        _ => "unusable",
    }
}

fn reject(stage: &str, reason: &dyn std::fmt::Display) -> Error {
    tracing::warn!(stage, reason = %reason, "review link rejected");
    Error::Unauthorized
}

fn generate_key_file(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        Error::Io(format!(
            "cannot create link signing key {}: {e}",
            path.display()
        ))
    })?;
    std::io::Write::write_all(&mut file, hex::encode(bytes).as_bytes())?;
    tracing::info!(path = %path.display(), "generated a new link signing key");
    Ok(())
}

/// A freshly minted review link: the token goes into one mail and nowhere else; the hash of
/// its id is what the database, the evidence log and later revocations refer to.
pub struct IssuedLink {
    pub token: String,
    pub jti_sha256: String,
}

impl std::fmt::Debug for IssuedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedLink")
            .field("jti_sha256", &self.jti_sha256)
            .finish_non_exhaustive()
    }
}

/// Mints a review link for `reviewer_id` in `campaign_id`, records it, and logs the event.
pub fn issue_review_link(
    conn: &mut DbConnection,
    signer: &LinkSigner,
    now: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    campaign_id: &str,
    reviewer_id: &str,
    actor: &str,
) -> Result<IssuedLink> {
    lock_reviewer(conn, reviewer_id, false)?;
    let mut jti = [0u8; 16];
    rand::rng().fill_bytes(&mut jti);
    let claims = ReviewClaims {
        iss: signer.issuer.clone(),
        aud: REVIEW_AUDIENCE.to_string(),
        sub: reviewer_id.to_string(),
        cmp: campaign_id.to_string(),
        jti: hex::encode(jti),
        iat: now.timestamp(),
        exp: expires_at.timestamp(),
    };
    let token = signer.sign(&claims)?;
    let jti_hash = claims.jti_hash();
    diesel::insert_into(link_tokens::table)
        .values((
            link_tokens::jti_hash.eq(&jti_hash),
            link_tokens::purpose.eq("review"),
            link_tokens::reviewer_id.eq(reviewer_id),
            link_tokens::campaign_id.eq(campaign_id),
            link_tokens::issued_at.eq(to_db(now)),
            link_tokens::expires_at.eq(to_db(expires_at)),
        ))
        .execute(conn)?;
    append(
        conn,
        now,
        EventKind::LinkIssued,
        actor,
        Some(campaign_id),
        &json!({
            "campaign": campaign_id,
            "reviewer": reviewer_id,
            "jti_sha256": jti_hash,
            "expires_at": expires_at.to_rfc3339(),
        }),
    )?;
    Ok(IssuedLink {
        token,
        jti_sha256: jti_hash,
    })
}

/// Checks that a verified token is still on record and not revoked.
pub fn ensure_link_active(
    conn: &mut DbConnection,
    claims: &ReviewClaims,
    now: DateTime<Utc>,
) -> Result<()> {
    ensure_link_still_valid(conn, &claims.jti_hash(), &claims.sub, &claims.cmp, now)
}

/// Checks that the link `jti_sha256` is on record for this reviewer and campaign, unrevoked
/// and unexpired. Inside a write transaction on PostgreSQL the row is share-locked, so that a
/// revocation committing meanwhile either waits for the caller or is seen by it.
pub fn ensure_link_still_valid(
    conn: &mut DbConnection,
    jti_sha256: &str,
    reviewer_id: &str,
    campaign_id: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    type LinkRow = (
        String,
        String,
        chrono::NaiveDateTime,
        Option<chrono::NaiveDateTime>,
    );
    let query = link_tokens::table.find(jti_sha256).select((
        link_tokens::reviewer_id,
        link_tokens::campaign_id,
        link_tokens::expires_at,
        link_tokens::revoked_at,
    ));
    let row: Option<LinkRow> = match conn {
        DbConnection::Postgres(pg) => query.for_share().first(pg).optional()?,
        DbConnection::Sqlite(sqlite) => query.first(sqlite).optional()?,
    };
    match row {
        Some((reviewer, campaign, expires_at, None))
            if reviewer == reviewer_id && campaign == campaign_id && from_db(expires_at) > now =>
        {
            Ok(())
        }
        Some(_) => Err(reject("record", &"revoked, expired or rebound")),
        None => Err(reject("record", &"unknown token id")),
    }
}

/// PostgreSQL: locks a reviewer's row for the rest of the transaction, so that minting,
/// delivering or using a link (`exclusive = false`) and revoking links (`exclusive = true`)
/// happen one after the other, each taking this lock before any link row. The exclusive lock
/// is `FOR NO KEY UPDATE`, which leaves the key-share locks of foreign-key checks (a decision
/// or a link inserted for this reviewer) alone. SQLite's write transactions are serialised
/// already.
pub fn lock_reviewer(conn: &mut DbConnection, reviewer_id: &str, exclusive: bool) -> Result<()> {
    if let DbConnection::Postgres(pg) = conn {
        let row = reviewers::table.find(reviewer_id).select(reviewers::id);
        if exclusive {
            row.for_no_key_update().first::<String>(pg).optional()?;
        } else {
            row.for_share().first::<String>(pg).optional()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kid: &str, key: &str) -> LinksConfig {
        LinksConfig {
            key_id: kid.into(),
            signing_key: Some(SecretString::from(key)),
            signing_key_file: None,
            ..LinksConfig::default()
        }
    }

    fn claims(now: DateTime<Utc>) -> ReviewClaims {
        ReviewClaims {
            iss: "attest".into(),
            aud: REVIEW_AUDIENCE.into(),
            sub: "reviewer".into(),
            cmp: "campaign".into(),
            jti: "jti".into(),
            iat: now.timestamp(),
            exp: now.timestamp() + 60,
        }
    }

    #[test]
    fn links_signed_with_a_retired_key_verify_only_while_it_is_listed() {
        let now = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::days(20_000);
        let old_key = "old-key-0123456789-0123456789-0123456789";
        let old = LinkSigner::from_config(&config("k0", old_key)).unwrap();
        let token = old.sign(&claims(now)).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let old_file = dir.path().join("k0.key");
        std::fs::write(&old_file, old_key).unwrap();
        let mut rotated = config("k1", "new-key-0123456789-0123456789-0123456789");
        assert!(
            LinkSigner::from_config(&rotated)
                .unwrap()
                .verify(&token, now)
                .is_err()
        );
        rotated.previous_key_files.insert("k0".into(), old_file);
        let signer = LinkSigner::from_config(&rotated).unwrap();
        assert_eq!(signer.verify(&token, now).unwrap().sub, "reviewer");
        let fresh = signer.sign(&claims(now)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
            Some("k1")
        );
    }
}
