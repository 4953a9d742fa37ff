//! The settings that govern reviews (campaign definitions, which sources exist and what they
//! mark privileged, evidence settings, the database kind), without any secret or address, and
//! their fingerprint. An instance records both when it starts (`config.loaded`), so that the
//! evidence shows which rules were in force and when they changed.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::config::{Config, SourceConfig};

/// What governs reviews, as JSON; no secret, password, URL or file path is in it.
pub fn governing_settings(config: &Config) -> Value {
    let sources: serde_json::Map<String, Value> = config
        .sources
        .iter()
        .map(|(name, source)| {
            let kind = match source {
                SourceConfig::Ldap(_) => "ldap",
                SourceConfig::Ldif(_) => "ldif",
                SourceConfig::Csv(_) => "csv",
                SourceConfig::Oidc(_) => "oidc",
            };
            (
                name.clone(),
                json!({ "kind": kind, "privileged_groups": source.privileged_groups() }),
            )
        })
        .collect();
    let database = if config.database.url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    json!({
        "campaigns": config.campaigns,
        "sources": sources,
        "evidence": {
            "origin": config.evidence.origin,
            "retention_years": config.evidence.retention_years,
            "checkpoint_minutes": config.evidence.checkpoint_minutes,
        },
        "database": database,
    })
}

/// SHA-256 (hex) of the settings' JSON.
pub fn fingerprint(settings: &Value) -> String {
    hex::encode(Sha256::digest(settings.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_setting_changes_the_fingerprint_and_secrets_stay_out() {
        let mut config = Config::default();
        config.database.url = "postgres://attest:hunter2@db/attest".into();
        let before = fingerprint(&governing_settings(&config));
        assert_eq!(before, fingerprint(&governing_settings(&config)));
        config.evidence.retention_years = 8;
        let retention_changed = fingerprint(&governing_settings(&config));
        assert_ne!(before, retention_changed);
        config.campaigns.insert(
            "privileged".into(),
            crate::config::CampaignDefinition::for_source("corp", vec!["ciso@example.com".into()]),
        );
        assert_ne!(retention_changed, fingerprint(&governing_settings(&config)));
        let text = governing_settings(&config).to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("db/attest"),
            "{text}"
        );
    }
}
