//! Sources pull people and groups out of an external directory and hand them, one record at
//! a time, to a [`RecordSink`] (the snapshot import in `directory/`). A source knows how to talk
//! to its directory and how to map its entries; it never touches the database, and it never
//! keeps the whole directory in memory.

mod account;
pub mod csv_file;
mod entry;
mod filter;
pub mod ldap;
pub mod ldif;
pub(crate) mod oidc;
pub mod scim;

use serde::Serialize;

use crate::config::SourceConfig;
use crate::error::Error;

/// One person as the directory describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRecord {
    /// Stable id that survives renames (entryUUID, objectGUID, SCIM id).
    pub external_id: String,
    pub dn: String,
    pub login: String,
    pub display_name: String,
    pub email: Option<String>,
    /// Job title and department, shown to reviewers as context.
    pub title: Option<String>,
    pub department: Option<String>,
    /// DN of the person's manager, as the directory states it.
    pub manager_dn: Option<String>,
    pub disabled: bool,
    /// A service account (by base or filter), not a person.
    pub service_account: bool,
    /// Group DNs the entry names itself (`memberOf`).
    pub member_of: Vec<String>,
    /// Primary posix group (`gidNumber`).
    pub gid_number: Option<String>,
    pub last_logon: Option<chrono::DateTime<chrono::Utc>>,
}

/// One group and its direct members as the directory names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub external_id: String,
    pub dn: String,
    pub name: String,
    pub description: Option<String>,
    /// Members by DN (`member`, `uniqueMember`): people or nested groups.
    pub member_dns: Vec<String>,
    /// Members by login (`memberUid`).
    pub member_logins: Vec<String>,
    /// Posix `gidNumber`: people whose primary group this is are members too.
    pub gid_number: Option<String>,
    /// The source itself marks the group privileged (a CSV column); `privileged_groups` in
    /// the configuration marks more.
    pub privileged: bool,
    /// The group's owner by DN (`owner`, `managedBy`): its reviewer when a campaign's
    /// reviewer chain names the owner.
    pub owner_dn: Option<String>,
}

/// What a source produced, in the order the directory returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRecord {
    Person(PersonRecord),
    Group(GroupRecord),
}

/// Receives records as they stream in; the import batches them into the database.
pub trait RecordSink {
    fn accept(&mut self, record: SourceRecord) -> Result<(), Error>;
}

/// One search (or file read) a sync performed, recorded for auditors as the population's
/// provenance: where it came from, with which query, and how many entries it returned.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SearchRecord {
    pub base: String,
    pub scope: String,
    pub filter: String,
    pub attributes: Vec<String>,
    pub entries: u64,
    pub pages: u64,
    /// Referrals to other servers that were skipped (by configuration), by URL.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrals_skipped: Vec<String>,
}

/// Something the source could not read in full and says so, to be listed with the sync run.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct SourceProblem {
    pub kind: &'static str,
    pub subject: String,
    pub detail: String,
}

/// How a sync reached its directory: filled before the first record, completed as it goes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FetchReport {
    /// Server URL or file path.
    pub server: String,
    /// Who the source authenticated as (a bind DN, a client id), if anyone.
    pub bind_identity: Option<String>,
    /// Entries asked for per page, where the source pages.
    pub page_size: Option<i64>,
    pub searches: Vec<SearchRecord>,
    /// SHA-256 over the raw entries as received, in order (hex).
    pub raw_sha256: String,
    /// What the source skipped or could not complete (never dropped silently).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<SourceProblem>,
}

impl FetchReport {
    pub fn entries(&self) -> u64 {
        self.searches.iter().map(|s| s.entries).sum()
    }

    pub fn pages(&self) -> u64 {
        self.searches.iter().map(|s| s.pages).sum()
    }
}

/// Reads every person and group from the configured directory into `sink`.
/// Blocking: call it from a blocking thread, never on the async executor.
pub fn fetch(config: &SourceConfig, sink: &mut dyn RecordSink) -> Result<FetchReport, Error> {
    match config {
        SourceConfig::Ldap(ldap_config) => ldap::fetch(ldap_config, sink),
        SourceConfig::Ldif(ldif_config) => ldif::fetch(ldif_config, sink),
        SourceConfig::Csv(csv_config) => csv_file::fetch(csv_config, sink),
        SourceConfig::Oidc(oidc_config) => scim::fetch(oidc_config, sink),
    }
}

/// The server (URL or file) a source reads from, for sync-run records made before fetching.
pub fn server_of(config: &SourceConfig) -> String {
    match config {
        SourceConfig::Ldap(c) => c.url.clone(),
        SourceConfig::Ldif(c) => c.path.display().to_string(),
        SourceConfig::Csv(c) => c.path.display().to_string(),
        SourceConfig::Oidc(c) => c.scim.url.clone(),
    }
}

/// A DN standing for an id of a source without DNs (CSV, SCIM), so that people, managers
/// and members match as DNs do.
pub(crate) fn synthetic_dn(kind: &str, id: &str) -> String {
    let mut dn = format!("{kind}=");
    for ch in id.chars() {
        if matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | '#') {
            dn.push('\\');
        }
        dn.push(ch);
    }
    dn
}

/// Whether the normalised `dn` equals or lies under the normalised `base` (an empty base holds
/// everything).
pub fn dn_under(dn: &str, base: &str) -> bool {
    base.is_empty()
        || dn == base
        || dn
            .strip_suffix(base)
            .is_some_and(|rest| rest.ends_with(','))
}

/// The canonical form of a DN, so that the same DN written two ways compares equal: lower
/// case, no blanks around separators, and escapes decoded and written one way (`\2C` and `\,`
/// both become `\,`; `\C3\BC` becomes `ü`). Only characters that must stay escaped in a DN
/// value are escaped.
pub fn normalize_dn(dn: &str) -> String {
    // A value that was not text (kept as `base64:...`) is no DN: kept exactly, to be reported.
    if dn.starts_with("base64:") {
        return dn.to_string();
    }
    // Most DNs are plain: no escapes, no blanks, lower case already.
    let plain = dn
        .bytes()
        .all(|b| b.is_ascii() && !b.is_ascii_uppercase() && b != b' ' && b != b'\\');
    if plain {
        return dn.to_string();
    }
    // Each character with whether it was escaped (and so is part of a value, never syntax).
    let chars: Vec<char> = dn.trim().chars().collect();
    let mut tokens: Vec<(char, bool)> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '\\' {
            tokens.push((chars[i], false));
            i += 1;
            continue;
        }
        // A run of hex escapes is one UTF-8 sequence (`\C3\BC`).
        let mut bytes = Vec::new();
        while chars.get(i) == Some(&'\\') {
            let Some(byte) = hex_pair(&chars, i + 1) else {
                break;
            };
            bytes.push(byte);
            i += 3;
        }
        if bytes.is_empty() {
            // `\,` and the like: the next character, literally.
            tokens.extend(chars.get(i + 1).map(|c| (*c, true)));
            i += 2;
        } else {
            tokens.extend(String::from_utf8_lossy(&bytes).chars().map(|c| (c, true)));
        }
    }

    let mut kept: Vec<(char, bool)> = Vec::with_capacity(tokens.len());
    let mut after_separator = false;
    for (ch, escaped) in tokens {
        if !escaped && matches!(ch, ',' | '=' | '+') {
            while kept.last().is_some_and(|(c, e)| *c == ' ' && !e) {
                kept.pop();
            }
            kept.push((ch, false));
            after_separator = true;
        } else if !escaped && ch == ' ' && after_separator {
            continue;
        } else {
            kept.push((ch, escaped));
            after_separator = false;
        }
    }
    while kept.last().is_some_and(|(c, e)| *c == ' ' && !e) {
        kept.pop();
    }

    let mut out = String::with_capacity(kept.len());
    for (ch, escaped) in kept {
        if escaped
            && matches!(
                ch,
                ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' | ' ' | '#'
            )
        {
            out.push('\\');
            out.push(ch);
        } else {
            out.extend(ch.to_lowercase());
        }
    }
    out
}

/// The byte written as two hex digits at `at`, if that is what is there.
fn hex_pair(chars: &[char], at: usize) -> Option<u8> {
    let (high, low) = (chars.get(at)?, chars.get(at + 1)?);
    let high = high.to_digit(16)?;
    let low = low.to_digit(16)?;
    u8::try_from(high * 16 + low).ok()
}

#[cfg(test)]
mod tests {
    use super::normalize_dn;

    #[test]
    fn dn_written_two_ways_normalizes_equal() {
        assert_eq!(
            normalize_dn("CN=Ann Lee , OU=People,dc=Example, dc=com"),
            normalize_dn("cn=ann lee,ou=people,dc=example,dc=com")
        );
    }

    #[test]
    fn escaped_comma_is_kept() {
        assert_eq!(normalize_dn("cn=Lee\\, Ann,dc=x"), "cn=lee\\, ann,dc=x");
    }

    #[test]
    fn hex_and_character_escapes_normalize_equal() {
        assert_eq!(normalize_dn("cn=Lee\\2C Ann,dc=x"), "cn=lee\\, ann,dc=x");
        assert_eq!(normalize_dn("cn=J\\C3\\BCrgen,dc=x"), "cn=jürgen,dc=x");
        assert_eq!(normalize_dn("cn=J\\c3\\bcrgen"), normalize_dn("CN=Jürgen"));
        // An escaped blank at the end of a value stays; a hex escape of a plain letter does not.
        assert_eq!(normalize_dn("cn=a\\ ,dc=x"), "cn=a\\ ,dc=x");
        assert_eq!(normalize_dn("cn=\\41bc"), "cn=abc");
        assert_eq!(normalize_dn("cn=a\\2B\\5Cb"), "cn=a\\+\\\\b");
    }
}
