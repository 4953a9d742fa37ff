//! `mode = "webhook"`: POSTs each task as JSON to the company's own automation (a ticketing
//! system, an IdP workflow). The receiver checks the signature: `X-Attest-Signature:
//! sha256=HEX`, the HMAC-SHA256 under the configured secret of `TIMESTAMP.BODY`, where
//! TIMESTAMP is the `X-Attest-Timestamp` header (Unix seconds; a receiver refuses old ones
//! to stop replays). `Idempotency-Key` is `TASK:GENERATION`: a delivery retried after a
//! failure names the same key; one an admin asked for again (`retry`) a new one. Any 2xx is success; anything else is retried with backoff. Redirects are not
//! followed.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::config::{RemediationConfig, resolve_secret};
use crate::error::{ConfigProblem, Error};
use crate::remediation::ActionError;
use crate::sources::oidc::provider_http_client;

pub const SIGNATURE_HEADER: &str = "X-Attest-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Attest-Timestamp";

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts a key of any length.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct WebhookSender {
    http: openidconnect::reqwest::blocking::Client,
    url: String,
    secret: SecretString,
}

impl WebhookSender {
    pub fn new(remediation: &RemediationConfig) -> Result<WebhookSender, Error> {
        let secret = resolve_secret(
            "remediation.secret",
            remediation.secret.as_ref(),
            remediation.secret_file.as_deref(),
        )
        .map_err(|p| Error::Config(vec![p]))?
        .ok_or_else(|| {
            Error::Config(vec![ConfigProblem::new(
                "remediation.secret_file",
                "no key to sign webhook tasks with",
            )])
        })?;
        let http = provider_http_client(
            remediation.timeout_seconds,
            remediation.tls_ca_file.as_deref(),
            "remediation.tls_ca_file",
        )?;
        Ok(WebhookSender {
            http,
            url: remediation.url.clone(),
            secret,
        })
    }

    /// Delivers one task under `idempotency_key`, signed at `timestamp`; the action to
    /// record on success. No answer is `Unavailable`; an answer other than 2xx, `Refused`.
    pub fn deliver(
        &self,
        idempotency_key: &str,
        body: &Value,
        timestamp: i64,
    ) -> Result<Value, ActionError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| ActionError::Refused(format!("cannot encode the task: {e}")))?;
        let signed = signature(self.secret.expose_secret().as_bytes(), timestamp, &bytes);
        let response = self
            .http
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signed)
            .header("Idempotency-Key", idempotency_key)
            .body(bytes)
            .send()
            .map_err(|e| {
                // The URL may carry a token in its query: it is left out.
                let e = e.without_url();
                ActionError::Unavailable(format!("cannot deliver to the webhook: {e}"))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(json!({ "kind": "webhook", "status": status.as_u16() }))
        } else {
            Err(ActionError::Refused(format!(
                "the webhook answered {status}"
            )))
        }
    }
}
