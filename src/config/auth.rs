//! `[auth]`: how staff (admins and auditors) sign in to the console. With `[auth.oidc]`
//! they sign in at the organisation's OpenID Connect provider, their role coming from a
//! groups claim; sessions end after `session_idle_minutes` without use and
//! `session_absolute_hours` after sign-in. `[review]`: whether reviewers, besides holding
//! their link, must sign in at the same provider before deciding. Checks are in
//! `validate_auth.rs`.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub session_idle_minutes: u32,
    pub session_absolute_hours: u32,
    /// Refuse staff sign-ins whose `amr` names no second factor.
    pub require_mfa: bool,
    /// Sign-ins one address may start at the identity provider per minute (staff, and
    /// reviewers with `review.require_sso`); more get 429 until the minute has passed.
    pub sign_ins_per_minute: u32,
    pub oidc: Option<StaffOidcConfig>,
}

/// `[review]`: how reviewers prove who they are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// A reviewer must also sign in at the `[auth.oidc]` provider, as the person the review
    /// is addressed to, before deciding (the link alone shows the page).
    pub require_sso: bool,
    /// Hours a reviewer's sign-in counts for decisions in this browser.
    pub sso_hours: u32,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            require_sso: false,
            sso_hours: 8,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            require_mfa: false,
            sign_ins_per_minute: 20,
            oidc: None,
        }
    }
}

/// The provider staff sign in at (authorization code flow with PKCE, state and nonce).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StaffOidcConfig {
    /// The provider's issuer URL (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for; `openid` is always asked.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID-token claim that lists the user's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Members of any of these groups sign in as admins...
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// ...and of these as auditors (admin wins when both match).
    #[serde(default)]
    pub auditor_groups: Vec<String>,
    /// PEM file of the CA(s) behind the provider's certificate.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Allow an `http://` issuer (codes and tokens would cross the network in clear).
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_timeout() -> u64 {
    15
}
