//! The settings that govern reviews (campaign definitions, which sources exist and what they
//! mark privileged, evidence settings, the database kind), without any secret or address, and
//! their fingerprint. An instance records both when it starts (`config.loaded`), so that the
//! evidence shows which rules were in force and when they changed. What goes in is an
//! allowlist: a field added to a definition later stays out until it is listed here, and the
//! people a definition names (named and fallback reviewers, group owners) go in as digests,
//! (pseudonyms), so that the log spells out no address while a change of reviewer still
//! changes the fingerprint.

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
    let campaigns: serde_json::Map<String, Value> = config
        .campaigns
        .iter()
        .map(|(name, definition)| (name.clone(), governing_definition(definition)))
        .collect();
    json!({
        "campaigns": campaigns,
        "sources": sources,
        "evidence": {
            "origin": config.evidence.origin,
            "retention_years": config.evidence.retention_years,
            "checkpoint_minutes": config.evidence.checkpoint_minutes,
        },
        "database": database,
    })
}

/// A definition's fields that govern reviews and name nobody, recorded as configured.
const RULE_FIELDS: &[&str] = &[
    "title",
    "source",
    "groups",
    "privileged_only",
    "include_service_accounts",
    "include_disabled",
    "only_new_access",
    "new_since",
    "reviewer_chain",
    "stages",
    "stage_outcome",
    "duration_days",
    "schedule",
    "timezone",
    "first_period",
    "sync_before",
    "reminders",
    "escalate_after_days",
    "no_response",
    "max_auto_revoke_share",
    "close_at_due",
    "reason_required_for",
];
/// A definition's lists of people (emails or logins), recorded as digests.
const PEOPLE_FIELDS: &[&str] = &["named_reviewers", "fallback_reviewers"];
/// A definition's map of group to owner (a person), recorded with the owners as digests.
const OWNERS_FIELD: &str = "group_owners";

fn governing_definition(definition: &crate::config::CampaignDefinition) -> Value {
    let Ok(Value::Object(fields)) = serde_json::to_value(definition) else {
        return Value::Null;
    };
    let person = |value: &Value| match value.as_str() {
        Some(text) => Value::String(person_digest(text)),
        None => Value::Null,
    };
    fields
        .into_iter()
        .filter_map(|(key, value)| {
            let value = if RULE_FIELDS.contains(&key.as_str()) {
                value
            } else if PEOPLE_FIELDS.contains(&key.as_str()) {
                Value::Array(value.as_array()?.iter().map(person).collect())
            } else if key == OWNERS_FIELD {
                let owners = value.as_object()?;
                Value::Object(owners.iter().map(|(g, o)| (g.clone(), person(o))).collect())
            } else {
                return None;
            };
            Some((key, value))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// How the settings name a person: a SHA-256 digest of the entry as configured (trimmed and
/// lower-cased). A pseudonym, not a secret: whoever holds the configuration matches it, and
/// someone who guesses the address can too; the log just does not spell it out.
fn person_digest(entry: &str) -> String {
    let digest = Sha256::digest(entry.trim().to_lowercase().as_bytes());
    format!("sha256:{}", hex::encode(&digest[..16]))
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

    #[test]
    fn people_go_in_as_digests_and_every_field_is_accounted_for() {
        let mut config = Config::default();
        let mut definition =
            crate::config::CampaignDefinition::for_source("corp", vec!["CISO@example.com".into()]);
        definition.named_reviewers = vec!["auditor-pal".into()];
        definition
            .group_owners
            .insert("db-admins".into(), "dba-lead@example.com".into());
        config
            .campaigns
            .insert("privileged".into(), definition.clone());
        let settings = governing_settings(&config);
        let text = settings.to_string();
        for person in ["ciso@", "CISO@", "auditor-pal", "dba-lead"] {
            assert!(!text.contains(person), "{person} in {text}");
        }
        let recorded = &settings["campaigns"]["privileged"];
        assert_eq!(
            recorded["fallback_reviewers"][0],
            person_digest("ciso@example.com")
        );
        assert!(
            recorded["group_owners"]["db-admins"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:"))
        );
        assert_eq!(recorded["duration_days"], 14);
        // Every field a definition has is either recorded or a person's: none is dropped
        // unnoticed, and a new one fails here until it is placed.
        let Value::Object(fields) = serde_json::to_value(&definition).unwrap() else {
            panic!("a definition is an object");
        };
        for key in fields.keys() {
            assert!(
                RULE_FIELDS.contains(&key.as_str())
                    || PEOPLE_FIELDS.contains(&key.as_str())
                    || key == OWNERS_FIELD,
                "{key} is neither a rule nor a person"
            );
            assert!(recorded.get(key).is_some(), "{key} not recorded");
        }
        // Another fallback changes the fingerprint.
        let before = fingerprint(&settings);
        config
            .campaigns
            .get_mut("privileged")
            .unwrap()
            .fallback_reviewers = vec!["someone-else@example.com".into()];
        assert_ne!(before, fingerprint(&governing_settings(&config)));
    }
}
