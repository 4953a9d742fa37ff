//! Staff sign-in at the organisation's OpenID Connect provider: the authorization code flow
//! with PKCE, state and nonce (`openidconnect`). A sign-in attempt is stored (hashed by the
//! random id its browser cookie holds) until its callback uses it once. The role comes from
//! the configured groups claim of the verified ID token; `acr` and `amr` are kept, and
//! `auth.require_mfa` refuses sign-ins without a second factor. Staff are keyed by (issuer,
//! subject). The HTTP steps and the database steps are separate functions, so that no
//! database connection waits on the provider.

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::reqwest;
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope,
};
use serde_json::{Value, json};

use crate::auth::Role;
use crate::auth::sessions::{StaffAuth, secret_hash};
use crate::auth::staff_users::{NewStaff, create_or_find};
use crate::config::StaffOidcConfig;
use crate::db::schema::{sessions, staff_sign_ins, staff_users};
use crate::db::time::{from_db, to_db};
use crate::db::{DbConnection, write_tx};
use crate::error::{Error, Result};
use crate::ledger::{EventKind, append};
use crate::sources::oidc::{
    DiscoveredClient, client_secret_and_issuer, error_chain, provider_http_client,
};

/// How long a sign-in may take at the provider.
const ATTEMPT_MINUTES: i64 = 10;
/// `amr` values (RFC 8176) of something held or something one is: with another method,
/// a second factor.
const POSSESSION_OR_INHERENCE: &[&str] = &[
    "otp", "hwk", "swk", "sms", "tel", "sc", "fpt", "face", "iris", "retina", "vbm",
];

/// Whether `amr` shows more than one factor: `mfa`, or two methods of which one is held or
/// inherent (a password with a one-time code; not a code alone).
pub fn has_second_factor(amr: &[String]) -> bool {
    amr.iter().any(|m| m == "mfa")
        || (amr.len() >= 2
            && amr
                .iter()
                .any(|m| POSSESSION_OR_INHERENCE.contains(&m.as_str())))
}

/// The provider, discovered, with the client attest is registered as.
pub struct Provider {
    client: DiscoveredClient,
    http: reqwest::blocking::Client,
}

/// An authorization request about to be sent: where the browser goes, and what the callback
/// must find again.
pub struct AuthorizationRequest {
    pub url: String,
    state: String,
    nonce: String,
    pkce_verifier: String,
}

/// What a stored attempt holds for its callback.
pub struct Attempt {
    nonce: String,
    pkce_verifier: String,
    /// A reviewer's sign-in (`review.require_sso`): whose review it was started from.
    pub reviewer_id: Option<String>,
}

/// Who the provider says signed in, from a verified ID token.
#[derive(Debug, Clone)]
pub struct ProvedIdentity {
    pub subject: String,
    pub email: Option<String>,
    /// The provider's word that the address belongs to the account (`email_verified`).
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub auth: StaffAuth,
}

/// A staff member admitted: who, with which role, and how they authenticated.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub staff_user_id: String,
    pub role: Role,
    pub auth: StaffAuth,
}

fn provider_error(message: String) -> Error {
    Error::Source {
        source_name: "auth.oidc".into(),
        message,
    }
}

/// Discovers the provider (blocking HTTP) and sets the client up for `redirect_uri`.
pub fn discover(config: &StaffOidcConfig, redirect_uri: &str) -> Result<Provider> {
    let http = provider_http_client(
        config.timeout_seconds,
        config.tls_ca_file.as_deref(),
        "auth.oidc.tls_ca_file",
    )?;
    let (secret, issuer) = client_secret_and_issuer(
        "auth.oidc.",
        config.client_secret.as_ref(),
        config.client_secret_file.as_deref(),
        &config.issuer,
    )?;
    let metadata = CoreProviderMetadata::discover(&issuer, &http).map_err(|e| {
        provider_error(format!(
            "cannot discover the OpenID Connect provider {}: {}",
            config.issuer,
            error_chain(&e)
        ))
    })?;
    // The client secret and the code go to the token endpoint: it must be as protected as
    // the issuer.
    let insecure = metadata
        .token_endpoint()
        .is_some_and(|url| url.url().scheme() != "https");
    if insecure && !config.allow_insecure_http {
        return Err(provider_error(format!(
            "the provider's token endpoint is not https; the client secret is not sent there \
             (allow_insecure_http = true accepts it) [{}]",
            config.issuer
        )));
    }
    let redirect = RedirectUrl::new(redirect_uri.to_string())
        .map_err(|e| Error::Internal(format!("redirect URI: {e}")))?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(config.client_id.clone()),
        Some(ClientSecret::new(
            secrecy::ExposeSecret::expose_secret(&secret).to_string(),
        )),
    )
    .set_redirect_uri(redirect);
    Ok(Provider { client, http })
}

impl Provider {
    /// A new authorization request with its PKCE challenge, state and nonce.
    pub fn authorization_request(&self, scopes: &[String]) -> AuthorizationRequest {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        AuthorizationRequest {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        }
    }

    /// Exchanges the callback's code (blocking HTTP) and verifies the ID token.
    pub fn exchange(
        &self,
        attempt: &Attempt,
        code: &str,
        groups_claim: &str,
    ) -> Result<ProvedIdentity> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| provider_error(format!("the provider has no token endpoint: {e}")))?
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier.clone()))
            .request(&self.http)
            .map_err(|e| provider_error(format!("the code was refused: {}", error_chain(&e))))?;
        let id_token = openidconnect::TokenResponse::id_token(&response)
            .ok_or_else(|| provider_error("the provider sent no ID token".into()))?;
        let claims = id_token
            .claims(
                &self.client.id_token_verifier(),
                &Nonce::new(attempt.nonce.clone()),
            )
            .map_err(|e| provider_error(format!("the ID token is not valid: {e}")))?;
        // The token is verified: its payload can be read for the groups claim, which
        // the standard claims do not cover.
        let payload: Value = id_token
            .to_string()
            .split('.')
            .nth(1)
            .and_then(|part| {
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, part).ok()
            })
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let groups = match &payload[groups_claim] {
            Value::Array(values) => values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Value::String(one) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(ProvedIdentity {
            subject: claims.subject().as_str().to_string(),
            email: claims.email().map(|e| e.as_str().to_lowercase()),
            email_verified: claims.email_verified() == Some(true),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_string()),
            groups,
            auth: StaffAuth {
                issuer: claims.issuer().as_str().to_string(),
                acr: claims.auth_context_ref().map(|a| a.as_str().to_string()),
                amr: claims
                    .auth_method_refs()
                    .map(|methods| methods.iter().map(|m| m.as_str().to_string()).collect())
                    .unwrap_or_default(),
            },
        })
    }
}

/// Stores an attempt under the hash of `attempt_secret` (the browser's cookie), and drops
/// attempts that were never completed.
pub fn store_attempt(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    attempt_secret: &str,
    request: &AuthorizationRequest,
    reviewer_id: Option<&str>,
) -> Result<()> {
    diesel::delete(staff_sign_ins::table.filter(staff_sign_ins::expires_at.lt(to_db(now))))
        .execute(conn)?;
    diesel::insert_into(staff_sign_ins::table)
        .values((
            staff_sign_ins::attempt_hash.eq(secret_hash(attempt_secret)),
            staff_sign_ins::state.eq(&request.state),
            staff_sign_ins::nonce.eq(&request.nonce),
            staff_sign_ins::pkce_verifier.eq(&request.pkce_verifier),
            staff_sign_ins::created_at.eq(to_db(now)),
            staff_sign_ins::expires_at.eq(to_db(now + Duration::minutes(ATTEMPT_MINUTES))),
            staff_sign_ins::reviewer_id.eq(reviewer_id),
        ))
        .execute(conn)?;
    Ok(())
}

/// An attempt as stored: state, nonce, PKCE verifier, expiry, reviewer.
type StoredAttempt = (String, String, String, NaiveDateTime, Option<String>);

/// Takes (and removes) the attempt of `attempt_secret` if it is current and the callback's
/// `state` is its state; anything else is refused alike.
pub fn take_attempt(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    attempt_secret: &str,
    state: &str,
) -> Result<Attempt> {
    let hash = secret_hash(attempt_secret);
    write_tx(conn, |conn| {
        let found: Option<StoredAttempt> = staff_sign_ins::table
            .find(&hash)
            .select((
                staff_sign_ins::state,
                staff_sign_ins::nonce,
                staff_sign_ins::pkce_verifier,
                staff_sign_ins::expires_at,
                staff_sign_ins::reviewer_id,
            ))
            .first(conn)
            .optional()?;
        // Whoever deletes the row uses the attempt; a concurrent callback deletes nothing.
        let deleted = diesel::delete(staff_sign_ins::table.find(&hash)).execute(conn)?;
        match found {
            Some((stored_state, nonce, pkce_verifier, expires_at, reviewer_id))
                // Compared as hashes: no early exit on the secret's bytes.
                if deleted == 1
                    && now < from_db(expires_at)
                    && secret_hash(&stored_state) == secret_hash(state) =>
            {
                Ok(Attempt {
                    nonce,
                    pkce_verifier,
                    reviewer_id,
                })
            }
            _ => Err(Error::Unauthorized),
        }
    })
}

/// The role the groups give, admin first.
pub fn role_of(config: &StaffOidcConfig, groups: &[String]) -> Option<Role> {
    let member = |wanted: &[String]| {
        groups
            .iter()
            .any(|g| wanted.iter().any(|w| w.eq_ignore_ascii_case(g)))
    };
    if member(&config.admin_groups) {
        Some(Role::Admin)
    } else if member(&config.auditor_groups) {
        Some(Role::Auditor)
    } else {
        None
    }
}

/// Admits a proved identity as staff (created or updated, keyed by issuer and subject) or
/// refuses it: no staff group, no second factor when one is required, or disabled. Either
/// way the outcome is an event.
pub fn admit(
    conn: &mut DbConnection,
    now: DateTime<Utc>,
    config: &StaffOidcConfig,
    require_mfa: bool,
    identity: &ProvedIdentity,
) -> Result<Admitted> {
    let role = role_of(config, &identity.groups);
    let has_second_factor = has_second_factor(&identity.auth.amr);
    let refusal = match role {
        None => Some((
            "not_staff",
            "your account is in none of the groups that may use the console",
        )),
        Some(_) if require_mfa && !has_second_factor => Some((
            "second_factor_required",
            "sign in with a second factor (the provider reported none)",
        )),
        Some(_) => None,
    };
    write_tx(conn, |conn| {
        let existing: Option<(String, Option<NaiveDateTime>)> = staff_users::table
            .filter(staff_users::issuer.eq(&identity.auth.issuer))
            .filter(staff_users::subject.eq(&identity.subject))
            .select((staff_users::id, staff_users::disabled_at))
            .first(conn)
            .optional()?;
        let refusal = match (&existing, refusal) {
            (_, Some(refusal)) => Some(refusal),
            (Some((_, Some(_))), None) => Some(("disabled", "your staff account is disabled")),
            _ => None,
        };
        if let Some((reason, message)) = refusal {
            // Whatever the provider no longer grants ends the sessions granted before.
            if let Some((id, _)) = &existing {
                diesel::update(
                    sessions::table
                        .filter(sessions::staff_user_id.eq(id))
                        .filter(sessions::revoked_at.is_null()),
                )
                .set(sessions::revoked_at.eq(Some(to_db(now))))
                .execute(conn)?;
            }
            append(
                conn,
                now,
                EventKind::StaffSignInRefused,
                "auth:oidc",
                existing.as_ref().map(|(id, _)| id.as_str()),
                &json!({
                    "staff_user": existing.as_ref().map(|(id, _)| id),
                    "issuer": identity.auth.issuer,
                    "reason": reason,
                    "acr": identity.auth.acr,
                    "amr": identity.auth.amr,
                }),
            )?;
            return Ok(Err(Error::Forbidden(message.into())));
        }
        let Some(role) = role else {
            return Ok(Err(Error::Forbidden("not staff".into())));
        };
        let email = identity.email.clone().unwrap_or_default();
        let name = identity
            .name
            .clone()
            .or_else(|| identity.email.clone())
            .unwrap_or_else(|| identity.subject.clone());
        let staff_user_id = match existing {
            Some((id, _)) => {
                diesel::update(staff_users::table.find(&id))
                    .set((
                        staff_users::email.eq(&email),
                        staff_users::display_name.eq(&name),
                        staff_users::role.eq(role.as_str()),
                    ))
                    .execute(conn)?;
                id
            }
            None => {
                let staff = NewStaff {
                    issuer: &identity.auth.issuer,
                    subject: &identity.subject,
                    email: &email,
                    display_name: &name,
                    role,
                };
                create_or_find(conn, now, &staff)?
            }
        };
        Ok(Ok(Admitted {
            staff_user_id,
            role,
            auth: identity.auth.clone(),
        }))
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> StaffOidcConfig {
        serde_json::from_value(json!({
            "issuer": "https://idp.example.com",
            "client_id": "attest",
            "admin_groups": ["Attest-Admins"],
            "auditor_groups": ["auditors"],
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_second_factor_needs_more_than_one_method() {
        let amr = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(has_second_factor(&amr(&["mfa"])));
        assert!(has_second_factor(&amr(&["pwd", "otp"])));
        assert!(has_second_factor(&amr(&["pwd", "hwk"])));
        assert!(!has_second_factor(&amr(&["pwd"])));
        assert!(
            !has_second_factor(&amr(&["sms"])),
            "a code alone is one factor"
        );
        assert!(
            !has_second_factor(&amr(&["pwd", "kba"])),
            "two things known"
        );
        assert!(!has_second_factor(&[]));
    }

    #[test]
    fn roles_come_from_the_groups_and_admin_wins() {
        let c = config();
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(role_of(&c, &groups(&["attest-admins"])), Some(Role::Admin));
        assert_eq!(
            role_of(&c, &groups(&["auditors", "attest-admins"])),
            Some(Role::Admin)
        );
        assert_eq!(role_of(&c, &groups(&["auditors"])), Some(Role::Auditor));
        assert_eq!(role_of(&c, &groups(&["staff"])), None);
    }
}
