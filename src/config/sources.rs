//! Source configuration: one table per directory under `[sources.NAME]`, of a `kind` (ldap,
//! ldif, csv, oidc), with what to read and how. Only the shape and defaults live here; the
//! checks are in `validate.rs`.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::RemediationConfig;

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

    /// How the source's revocations are carried out, when configured.
    pub fn remediation(&self) -> Option<&RemediationConfig> {
        match self {
            SourceConfig::Ldap(c) => c.remediation.as_ref(),
            SourceConfig::Ldif(c) => c.remediation.as_ref(),
            SourceConfig::Csv(c) => c.remediation.as_ref(),
            SourceConfig::Oidc(c) => c.remediation.as_ref(),
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
    /// How revocations of this source's accesses are carried out (`[sources.NAME.remediation]`);
    /// without it each revocation is a manual task for IT.
    #[serde(default)]
    pub remediation: Option<RemediationConfig>,
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
    /// How revocations of this source's accesses are carried out (`[sources.NAME.remediation]`);
    /// without it each revocation is a manual task for IT.
    #[serde(default)]
    pub remediation: Option<RemediationConfig>,
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
    /// How revocations of this source's accesses are carried out (`[sources.NAME.remediation]`);
    /// without it each revocation is a manual task for IT.
    #[serde(default)]
    pub remediation: Option<RemediationConfig>,
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
    /// The person's job title, shown to reviewers. Empty to ignore.
    pub title_attribute: String,
    /// Where the person's department is read from, the first present wins (Active
    /// Directory's `department`, inetOrgPerson's `departmentNumber`). Empty to ignore.
    pub department_attributes: Vec<String>,
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
            title_attribute: "title".into(),
            department_attributes: vec!["department".into(), "departmentNumber".into()],
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
    /// Attributes naming the group's owner by DN, the first one present wins (`owner` of
    /// groupOfNames, Active Directory's `managedBy`); the owner can review the group's
    /// members. Empty to ignore.
    pub owner_attributes: Vec<String>,
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
            owner_attributes: vec!["owner".into(), "managedBy".into()],
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
    /// How revocations of this source's accesses are carried out (`[sources.NAME.remediation]`);
    /// without it each revocation is a manual task for IT.
    #[serde(default)]
    pub remediation: Option<RemediationConfig>,
}
