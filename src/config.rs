//! Typed configuration: built-in defaults, then a TOML file, then `ATTEST__SECTION__KEY`
//! environment variables. Secrets may come from `*_file` keys so they never sit in the TOML.
//! Unknown keys are refused, and [`Config::validate`] reports every semantic problem with
//! the key it concerns. This module only reads and checks configuration; it opens no
//! connections and touches no files beyond reading secret files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::error::{ConfigProblem, Error};

mod auth;
mod campaigns;
mod evidence;
pub mod governing;
mod remediation;
mod sources;
mod validate;
mod validate_auth;
mod validate_campaigns;
mod validate_remediation;

pub use auth::{AuthConfig, ReviewConfig, StaffOidcConfig};
pub use campaigns::{
    CampaignDefinition, ChainStep, FirstPeriod, NoResponse, ReasonRequired, SchedulerConfig,
    StageDefinition, StageOutcome,
};
pub use evidence::EvidenceConfig;
pub use remediation::{RemediationConfig, RemediationMode, RemediationWhen};
pub use sources::{
    CsvSourceConfig, GroupQuery, LdapSourceConfig, LdifSourceConfig, OidcSourceConfig, PeopleQuery,
    ReferralPolicy, ScimConfig, SourceConfig,
};

/// The whole configuration of one attest instance.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub links: LinksConfig,
    pub mail: MailConfig,
    pub demo: DemoConfig,
    pub scheduler: SchedulerConfig,
    pub evidence: EvidenceConfig,
    pub auth: AuthConfig,
    pub review: ReviewConfig,
    pub sources: BTreeMap<String, SourceConfig>,
    pub campaigns: BTreeMap<String, CampaignDefinition>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on; port 0 picks a free port.
    pub bind: String,
    /// Absolute URL under which reviewers reach this server; used to build links in mail.
    pub public_url: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }
}

#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://...`.
    pub url: String,
    pub pool_size: u32,
    /// How long SQLite waits for a lock before giving up.
    pub busy_timeout_ms: u32,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url_password(&self.url))
            .field("pool_size", &self.pool_size)
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://var/attest.db".into(),
            pool_size: 8,
            busy_timeout_ms: 5_000,
        }
    }
}

/// Hides the password of a `scheme://user:password@host` URL for logs and errors.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `attest=debug,actix_web=info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Human,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// `iss` claim of review-link tokens.
    pub issuer: String,
    /// Key id placed in the token header; tokens naming another kid are refused.
    pub key_id: String,
    /// HMAC key for review links (at least 32 bytes). Prefer `signing_key_file`.
    #[serde(skip_serializing)]
    pub signing_key: Option<SecretString>,
    pub signing_key_file: Option<PathBuf>,
    /// Create `signing_key_file` with a random key when it does not exist yet.
    pub generate_missing_key: bool,
    /// Retired keys, by key id, whose links are still accepted (key rotation): new links are
    /// signed only with `key_id`.
    pub previous_key_files: BTreeMap<String, PathBuf>,
    /// Links stay valid this many days after the campaign's due date.
    pub grace_days: u32,
    /// When a newer digest for the same reviewer and campaign is sent, revoke the links in
    /// the reviewer's earlier mails (by default they keep working: people open older mails).
    pub revoke_superseded: bool,
}

impl Default for LinksConfig {
    fn default() -> Self {
        LinksConfig {
            issuer: "attest".into(),
            key_id: "k1".into(),
            signing_key: None,
            signing_key_file: Some(PathBuf::from("var/link-signing.key")),
            generate_missing_key: true,
            previous_key_files: BTreeMap::new(),
            grace_days: 7,
            revoke_superseded: false,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MailTransport {
    Smtp,
    File,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub transport: MailTransport,
    /// `From:` header, e.g. `attest <attest@example.com>`.
    pub from: String,
    pub smtp: SmtpConfig,
    /// Folder the file transport writes one `.eml` per message into.
    pub file_dir: PathBuf,
    /// Folder with email templates overriding the built-in ones.
    pub templates_dir: PathBuf,
    pub poll_interval_ms: u64,
    pub batch_size: u32,
    pub max_attempts: u32,
    /// How long a claimed message is reserved for one worker before another may retry it.
    pub lease_seconds: u32,
    pub retry_base_seconds: u32,
    /// At most this many messages a minute from each instance (0: as fast as the server
    /// takes them), for mail servers that throttle.
    pub rate_per_minute: u32,
    /// Messages one instance sends at the same time. Each SMTP message waits about 40 ms for
    /// the server's delayed acknowledgement (lettre writes the end-of-data mark apart), so one
    /// connection sends about 25 a second; several in flight hide that wait.
    pub concurrency: u32,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            transport: MailTransport::Smtp,
            from: "attest <attest@localhost>".into(),
            smtp: SmtpConfig::default(),
            file_dir: PathBuf::from("var/mail"),
            templates_dir: PathBuf::from("email-templates"),
            poll_interval_ms: 2_000,
            batch_size: 50,
            max_attempts: 8,
            lease_seconds: 300,
            retry_base_seconds: 30,
            rate_per_minute: 0,
            concurrency: 16,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Starttls,
    Tls,
    None,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    #[serde(skip_serializing)]
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    pub timeout_seconds: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".into(),
            port: 587,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            password_file: None,
            timeout_seconds: 30,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    /// Serves `/demo/mail`, a page listing the messages the file mailer wrote.
    pub enabled: bool,
}

/// Secrets resolved from their inline value or `*_file` key.
pub fn resolve_secret(
    key: &str,
    inline: Option<&SecretString>,
    file: Option<&Path>,
) -> Result<Option<SecretString>, ConfigProblem> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(ConfigProblem::new(
            key,
            format!("set either `{key}` or `{key}_file`, not both"),
        )),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(SecretString::from(
                text.trim_end_matches(['\n', '\r']),
            ))),
            Err(e) => Err(ConfigProblem::new(
                &format!("{key}_file"),
                format!("cannot read {}: {e}", path.display()),
            )),
        },
        (None, None) => Ok(None),
    }
}

impl Config {
    /// Loads defaults, then `file` (when given and present), then the environment.
    /// `file_required` makes a missing file an error (an explicit `--config`).
    pub fn load(file: Option<&Path>, file_required: bool) -> Result<Config, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if path.exists() {
                figment = figment.merge(Toml::file_exact(path));
            } else if file_required {
                return Err(Error::Config(vec![ConfigProblem::new(
                    "--config",
                    format!("configuration file {} does not exist", path.display()),
                )]));
            }
        }
        Self::extract(figment.merge(Env::prefixed("ATTEST__").split("__")))
    }

    /// Loads defaults, then the given TOML text (the embedded demo's), then `overrides` (a file
    /// that must exist, when given), then the environment.
    pub fn from_toml_str(text: &str, overrides: Option<&Path>) -> Result<Config, Error> {
        let mut figment =
            Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(text));
        if let Some(path) = overrides {
            if !path.exists() {
                return Err(Error::Config(vec![ConfigProblem::new(
                    "--config",
                    format!("configuration file {} does not exist", path.display()),
                )]));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        Self::extract(figment.merge(Env::prefixed("ATTEST__").split("__")))
    }

    fn extract(figment: Figment) -> Result<Config, Error> {
        figment.extract::<Config>().map_err(|err| {
            Error::Config(
                err.into_iter()
                    .map(|e| {
                        let key = if e.path.is_empty() {
                            "(top level)".to_string()
                        } else {
                            e.path.join(".")
                        };
                        ConfigProblem::new(&key, e.kind.to_string())
                    })
                    .collect(),
            )
        })
    }

    pub fn source(&self, name: &str) -> Result<&SourceConfig, Error> {
        self.sources
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("source `{name}` is not configured")))
    }

    pub fn campaign_definition(&self, name: &str) -> Result<&CampaignDefinition, Error> {
        self.campaigns.get(name).ok_or_else(|| {
            Error::NotFound(format!("campaign definition `{name}` is not configured"))
        })
    }
}
