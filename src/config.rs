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

mod validate;

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

/// One directory to pull people and groups from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    Ldap(LdapSourceConfig),
    Ldif(LdifSourceConfig),
    Csv(CsvSourceConfig),
    Oidc(OidcSourceConfig),
}

impl SourceConfig {
    pub fn privileged_groups(&self) -> &[String] {
        match self {
            SourceConfig::Ldap(c) => &c.privileged_groups,
            SourceConfig::Ldif(c) => &c.privileged_groups,
            SourceConfig::Csv(c) => &c.privileged_groups,
            SourceConfig::Oidc(c) => &c.privileged_groups,
        }
    }

    /// The `kind` as written in the configuration.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceConfig::Ldap(_) => "ldap",
            SourceConfig::Ldif(_) => "ldif",
            SourceConfig::Csv(_) => "csv",
            SourceConfig::Oidc(_) => "oidc",
        }
    }
}

/// An OpenID Connect provider's directory: a client-credentials token from the discovered
/// token endpoint, then users and groups over SCIM 2.0.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSourceConfig {
    /// The provider's issuer URL (discovery at `/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing)]
    pub client_secret: Option<SecretString>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes asked for with the token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Resource indicator (RFC 8707) naming the SCIM API, when the provider wants one.
    #[serde(default)]
    pub resource: Option<String>,
    /// PEM file of the CA(s) behind the provider's and the SCIM server's certificates.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Allow `http://` URLs (the client secret and tokens would cross the network in clear).
    #[serde(default)]
    pub allow_insecure_http: bool,
    #[serde(default = "default_ldap_timeout")]
    pub timeout_seconds: u64,
    pub scim: ScimConfig,
    /// Group names or ids whose membership counts as privileged access.
    #[serde(default)]
    pub privileged_groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// Base URL of the SCIM 2.0 API (`.../scim/v2`): `/Users` and `/Groups` are under it.
    pub url: String,
    /// Resources asked for per page.
    #[serde(default = "default_scim_page_size")]
    pub page_size: u32,
    /// Check each group's members against `/Users?filter=groups.value eq "<id>"`, and read
    /// them from there when the group resource lists fewer (servers may cap big groups).
    #[serde(default = "default_true")]
    pub verify_group_members: bool,
}

fn default_scim_page_size() -> u32 {
    100
}

fn default_true() -> bool {
    true
}

/// An application's access list as a CSV file, one row per (person, entitlement); see
/// `sources::csv_file` for the columns.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSourceConfig {
    pub path: PathBuf,
    /// Entitlement names whose access counts as privileged (besides the `privileged` column).
    #[serde(default)]
    pub privileged_groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSourceConfig {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    pub bind_dn: String,
    #[serde(default, skip_serializing)]
    pub bind_password: Option<SecretString>,
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    #[serde(default)]
    pub starttls: bool,
    /// PEM file of the CA(s) that signed the server certificate, for `ldaps://` or StartTLS
    /// against a private CA; the system's trusted roots are used when absent.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Allow a password bind over unencrypted `ldap://` (only on a trusted local link).
    #[serde(default)]
    pub allow_cleartext_bind: bool,
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    /// Ask for group members in windows of this many values (`member;range=0-1499`, then the
    /// next ranges). Active Directory answers large groups in ranges anyway and attest fetches
    /// every range; set this to make a server that does not (Samba) page them too.
    #[serde(default)]
    pub member_range_size: Option<u32>,
    /// What to do when a search returns a referral to another server: `fail` the sync
    /// (default), or `skip` it (each skipped referral is listed with the sync run). attest does
    /// not chase referrals: add the other server as a source of its own.
    #[serde(default)]
    pub referrals: ReferralPolicy,
    #[serde(default = "default_ldap_timeout")]
    pub timeout_seconds: u64,
    #[serde(default)]
    pub people: PeopleQuery,
    #[serde(default)]
    pub groups: GroupQuery,
    /// Group DNs or names whose membership counts as privileged access.
    #[serde(default)]
    pub privileged_groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReferralPolicy {
    #[default]
    Fail,
    Skip,
}

fn default_page_size() -> i32 {
    500
}

fn default_ldap_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeopleQuery {
    /// Base DNs searched for people (subtree).
    pub base_dns: Vec<String>,
    pub filter: String,
    pub id_attribute: String,
    pub login_attribute: String,
    pub name_attribute: String,
    pub email_attribute: String,
    pub manager_attribute: String,
    /// Attribute whose presence with a true-ish value marks the account disabled (optional).
    /// Always recognised besides: Active Directory `userAccountControl` (bit 2), 389-ds
    /// `nsAccountLock`, OpenLDAP ppolicy `pwdAccountLockedTime`.
    pub disabled_attribute: Option<String>,
    /// The groups a person's entry names (`memberOf`): memberships the directory may state
    /// only there. Empty to ignore.
    pub member_of_attribute: String,
    /// The person's primary posix group (`gidNumber`), matched to a group's `gidNumber`.
    /// Empty to ignore.
    pub gid_number_attribute: String,
    /// Where the last logon is read from, first present wins: Active Directory FILETIME
    /// numbers (`lastLogonTimestamp`) or LDAP generalized time (`authTimestamp`).
    pub last_logon_attributes: Vec<String>,
    /// Entries under these DNs are service accounts, not people.
    pub service_account_bases: Vec<String>,
    /// Entries matching this filter are service accounts (evaluated by attest: (a=b), (a=*)
    /// and (&...), (|...), (!...) of those).
    pub service_account_filter: Option<String>,
}

impl Default for PeopleQuery {
    fn default() -> Self {
        PeopleQuery {
            base_dns: Vec::new(),
            filter: "(objectClass=inetOrgPerson)".into(),
            id_attribute: "entryUUID".into(),
            login_attribute: "uid".into(),
            name_attribute: "cn".into(),
            email_attribute: "mail".into(),
            manager_attribute: "manager".into(),
            disabled_attribute: None,
            member_of_attribute: "memberOf".into(),
            gid_number_attribute: "gidNumber".into(),
            last_logon_attributes: vec!["lastLogonTimestamp".into(), "authTimestamp".into()],
            service_account_bases: Vec::new(),
            service_account_filter: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupQuery {
    pub base_dns: Vec<String>,
    pub filter: String,
    pub id_attribute: String,
    pub name_attribute: String,
    /// Attributes whose values are member DNs (people or nested groups).
    pub member_attributes: Vec<String>,
    /// Attribute whose values are member logins (posixGroup `memberUid`); empty to ignore.
    pub member_uid_attribute: String,
    /// The group's posix `gidNumber`: people whose primary group it is are members.
    pub gid_number_attribute: String,
    pub description_attribute: String,
}

impl Default for GroupQuery {
    fn default() -> Self {
        GroupQuery {
            base_dns: Vec::new(),
            filter: "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)\
                     (objectClass=posixGroup)(objectClass=group))"
                .into(),
            id_attribute: "entryUUID".into(),
            name_attribute: "cn".into(),
            member_attributes: vec!["member".into(), "uniqueMember".into()],
            member_uid_attribute: "memberUid".into(),
            gid_number_attribute: "gidNumber".into(),
            description_attribute: "description".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LdifSourceConfig {
    pub path: PathBuf,
    #[serde(default)]
    pub people: PeopleQuery,
    #[serde(default)]
    pub groups: GroupQuery,
    #[serde(default)]
    pub privileged_groups: Vec<String>,
}

/// What a campaign reviews, who reviews it and for how long.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignDefinition {
    /// Human title shown in mail and pages; defaults to the definition's key.
    #[serde(default)]
    pub title: Option<String>,
    /// Name of the source (key under `[sources]`) whose current snapshot is reviewed.
    pub source: String,
    /// Group DNs or names to review; empty means every group of the source.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only review groups marked privileged.
    #[serde(default)]
    pub privileged_only: bool,
    /// Reviewers (email or login) used, in order, when a member has no usable manager.
    pub fallback_reviewers: Vec<String>,
    #[serde(default = "default_duration_days")]
    pub duration_days: u32,
}

fn default_duration_days() -> u32 {
    14
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
