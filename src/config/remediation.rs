//! `[sources.NAME.remediation]`: how attest carries out the revocations of a source's
//! accesses: an LDAP write with a write-capable account, a signed webhook to the company's own
//! automation, or a task for IT closed by hand with a ticket reference. Only the shape and
//! defaults live here; the checks are in `validate_remediation.rs`.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// How a source's revocations are carried out.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RemediationMode {
    /// Remove the membership in the directory (LDAP sources only).
    Ldap,
    /// POST a signed task to `url`.
    Webhook,
    /// A task for IT, closed with `attest remediation done TASK --ticket REF`.
    #[default]
    Manual,
}

impl RemediationMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RemediationMode::Ldap => "ldap",
            RemediationMode::Webhook => "webhook",
            RemediationMode::Manual => "manual",
        }
    }
}

/// When a revocation is carried out.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RemediationWhen {
    /// Once the campaign closes (a reviewer may change their mind until then).
    #[default]
    Close,
    /// As soon as the reviewer revokes.
    Immediately,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemediationConfig {
    pub mode: RemediationMode,
    pub when: RemediationWhen,
    /// Write nothing: plan each task and list what it would do.
    pub dry_run: bool,
    /// Groups (names or DNs, any case) attest never writes to; their tasks are blocked.
    pub protected_groups: Vec<String>,
    /// The write-capable account for `mode = "ldap"` (the source's own bind is read-only).
    pub bind_dn: String,
    #[serde(skip_serializing)]
    pub bind_password: Option<SecretString>,
    pub bind_password_file: Option<PathBuf>,
    /// The webhook's URL for `mode = "webhook"`.
    pub url: String,
    /// The HMAC-SHA256 key that signs each webhook body.
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    pub secret_file: Option<PathBuf>,
    /// PEM CA file for an `https://` webhook with a private CA.
    pub tls_ca_file: Option<PathBuf>,
    /// Allow an `http://` webhook (a trusted local link only).
    pub allow_insecure_http: bool,
    pub timeout_seconds: u64,
    /// Where `mode = "manual"` tasks are mailed (one digest per campaign); none when empty.
    pub mail_to: String,
    /// Attempts at a failing task before it waits for `attest remediation retry`.
    pub max_attempts: u32,
    /// Seconds before the first retry; each later one waits twice as long.
    pub retry_base_seconds: u64,
    /// A removed access that comes back within this many days raises a re-granted alert.
    pub regrant_window_days: u32,
}

impl Default for RemediationConfig {
    fn default() -> Self {
        RemediationConfig {
            mode: RemediationMode::Manual,
            when: RemediationWhen::Close,
            dry_run: false,
            protected_groups: Vec::new(),
            bind_dn: String::new(),
            bind_password: None,
            bind_password_file: None,
            url: String::new(),
            secret: None,
            secret_file: None,
            tls_ca_file: None,
            allow_insecure_http: false,
            timeout_seconds: 30,
            mail_to: String::new(),
            max_attempts: 5,
            retry_base_seconds: 60,
            regrant_window_days: 30,
        }
    }
}
