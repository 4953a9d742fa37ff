//! Sources pull people and groups out of an external directory and hand them, one record at
//! a time, to a [`RecordSink`] (the snapshot import in `directory/`). A source knows how to talk
//! to its directory and how to map its entries; it never touches the database, and it never
//! keeps the whole directory in memory.

mod entry;
pub mod ldap;
pub mod ldif;

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
    /// DN of the person's manager, as the directory states it.
    pub manager_dn: Option<String>,
    pub disabled: bool,
}

/// One group and the DNs of its direct members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub external_id: String,
    pub dn: String,
    pub name: String,
    pub description: Option<String>,
    pub member_dns: Vec<String>,
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
}

/// How a sync reached its directory: filled before the first record, completed as it goes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FetchReport {
    /// Server URL or file path.
    pub server: String,
    pub searches: Vec<SearchRecord>,
    /// SHA-256 over the raw entries as received, in order (hex).
    pub raw_sha256: String,
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
    }
}

/// The server (URL or file) a source reads from, for sync-run records made before fetching.
pub fn server_of(config: &SourceConfig) -> String {
    match config {
        SourceConfig::Ldap(c) => c.url.clone(),
        SourceConfig::Ldif(c) => c.path.display().to_string(),
    }
}

/// Lower-cases a DN and removes blanks around separators so that the same DN written two
/// ways compares equal. Escaped characters are kept as written.
pub fn normalize_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    // Bytes up to here were written escaped and must not be trimmed.
    let mut protected = 0;
    let mut escaped = false;
    let mut after_separator = false;
    for ch in dn.trim().chars() {
        if escaped {
            out.extend(ch.to_lowercase());
            protected = out.len();
            escaped = false;
            after_separator = false;
            continue;
        }
        match ch {
            '\\' => {
                escaped = true;
                after_separator = false;
                out.push(ch);
            }
            ',' | '=' | '+' => {
                while out.len() > protected && out.ends_with(' ') {
                    out.pop();
                }
                out.push(ch);
                after_separator = true;
            }
            ' ' if after_separator => {}
            _ => {
                after_separator = false;
                out.extend(ch.to_lowercase());
            }
        }
    }
    out
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
}
