//! LDIF file source (the demo's directory): streams a standard LDIF content file line by line,
//! picks people and groups with the configured filters and base DNs, maps them with the same
//! rules as the LDAP source and hands each to the [`RecordSink`] as its record completes, in
//! file order. It understands only the simple filter shapes `(attr=value)`, `(attr=*)` and
//! `(&...)` of those, and refuses anything else rather than guessing. It must never load the
//! whole file into memory, never follow `attr:< URL` values (no file or network access beyond
//! the configured path), and never drop an entry silently: errors name the file and line.

use std::fs::File;
use std::io::{BufRead, BufReader};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::config::LdifSourceConfig;
use crate::error::Error;
use crate::sources::account::AccountRules;
use crate::sources::entry::{
    Entry, binary_text, group_attributes, map_group, map_person, people_attributes,
};
use crate::sources::filter::Filter;
use crate::sources::{FetchReport, RecordSink, SearchRecord, SourceRecord, dn_under, normalize_dn};

const SOURCE: &str = "ldif";

/// Reads the LDIF file into `sink`: people and groups in file order. Blocking.
pub fn fetch(config: &LdifSourceConfig, sink: &mut dyn RecordSink) -> Result<FetchReport, Error> {
    let (people_q, groups_q) = (&config.people, &config.groups);
    let rules = AccountRules::new(people_q)?;
    let mut people = Selection::new("people", &people_q.filter, &people_q.base_dns)?;
    let mut groups = Selection::new("groups", &groups_q.filter, &groups_q.base_dns)?;
    let path = config.path.display().to_string();
    let file = File::open(&config.path)
        .map_err(|e| Error::source(SOURCE, format!("cannot open {path}: {e}")))?;
    let at = |line: usize, msg: String| Error::source(SOURCE, format!("{path}:{line}: {msg}"));

    let mut reader = LdifReader::new(BufReader::new(file));
    while let Some((line, entry)) = reader.next_entry().map_err(|(line, msg)| at(line, msg))? {
        let dn = normalize_dn(&entry.dn);
        if people.takes(&dn, &entry) {
            let id = external_id(&entry, &people_q.id_attribute);
            let person = map_person(&entry, people_q, &rules, id).map_err(|msg| at(line, msg))?;
            sink.accept(SourceRecord::Person(person))?;
        }
        if groups.takes(&dn, &entry) {
            let id = external_id(&entry, &groups_q.id_attribute);
            sink.accept(SourceRecord::Group(map_group(&entry, groups_q, id)))?;
        }
    }
    Ok(FetchReport {
        server: path,
        bind_identity: None,
        page_size: None,
        searches: vec![
            people.record(
                &people_q.base_dns,
                &people_q.filter,
                people_attributes(people_q, &rules),
            ),
            groups.record(
                &groups_q.base_dns,
                &groups_q.filter,
                group_attributes(groups_q),
            ),
        ],
        raw_sha256: hex::encode(reader.hasher.finalize()),
        problems: Vec::new(),
    })
}

/// Which entries one side (people or groups) takes, and how many it took.
struct Selection {
    filter: Filter,
    bases: Vec<String>,
    taken: u64,
}

impl Selection {
    fn new(what: &str, filter: &str, base_dns: &[String]) -> Result<Selection, Error> {
        let filter = Filter::parse_config(&format!("{what}.filter"), filter)?;
        let bases = base_dns.iter().map(|b| normalize_dn(b)).collect();
        Ok(Selection {
            filter,
            bases,
            taken: 0,
        })
    }

    /// Whether the entry (`dn` normalised) is in scope and matches; counts it if so.
    fn takes(&mut self, dn: &str, entry: &Entry) -> bool {
        let taken = in_scope(dn, &self.bases) && self.filter.matches(entry);
        self.taken += u64::from(taken);
        taken
    }

    fn record(&self, base_dns: &[String], filter: &str, attributes: Vec<String>) -> SearchRecord {
        SearchRecord {
            base: if base_dns.is_empty() {
                "(whole file)".into()
            } else {
                base_dns.join("; ")
            },
            scope: "sub".into(),
            filter: filter.to_string(),
            attributes,
            entries: self.taken,
            pages: 1,
            referrals_skipped: Vec::new(),
        }
    }
}

/// The configured id attribute's value, else a stable id derived from the normalised DN.
fn external_id(entry: &Entry, attribute: &str) -> String {
    match entry.first(attribute) {
        Some(id) => id.to_string(),
        None => derived_id(&entry.dn),
    }
}

fn derived_id(dn: &str) -> String {
    let digest = hex::encode(Sha256::digest(normalize_dn(dn).as_bytes()));
    format!("dn-sha256:{}", &digest[..32])
}

/// True when no bases are configured, or the (normalised) DN equals or lies under one.
fn in_scope(dn: &str, bases: &[String]) -> bool {
    bases.is_empty() || bases.iter().any(|b| dn_under(dn, b))
}

/// Streams LDIF records, hashing every byte it reads.
struct LdifReader<R> {
    reader: R,
    hasher: Sha256,
    line_no: usize,
    /// The logical line being assembled from folded physical lines, with its first line number.
    current: Option<(usize, Vec<u8>)>,
    in_comment: bool,
    started: bool,
}

type LineError = (usize, String);

impl<R: BufRead> LdifReader<R> {
    fn new(reader: R) -> Self {
        LdifReader {
            reader,
            hasher: Sha256::new(),
            line_no: 0,
            current: None,
            in_comment: false,
            started: false,
        }
    }

    fn read_line(&mut self) -> Result<Option<Vec<u8>>, LineError> {
        let mut buf = Vec::new();
        let read = self.reader.read_until(b'\n', &mut buf);
        let read = read.map_err(|e| (self.line_no + 1, format!("cannot read: {e}")))?;
        if read == 0 {
            return Ok(None);
        }
        self.hasher.update(&buf);
        self.line_no += 1;
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        if self.line_no == 1 && buf.starts_with(b"\xef\xbb\xbf") {
            buf.drain(..3);
        }
        Ok(Some(buf))
    }

    /// The next record with the line number of its `dn:` line, or `None` at the end of file.
    fn next_entry(&mut self) -> Result<Option<(usize, Entry)>, LineError> {
        let mut record: Option<(usize, Entry)> = None;
        loop {
            let physical = self.read_line()?;
            if let Some(rest) = physical.as_ref().and_then(|l| l.strip_prefix(b" ")) {
                match self.current.as_mut() {
                    Some((_, logical)) => logical.extend_from_slice(rest),
                    None if self.in_comment => {}
                    None => {
                        return Err((
                            self.line_no,
                            "continuation line with nothing to continue".into(),
                        ));
                    }
                }
                continue;
            }
            if let Some((line, logical)) = self.current.take() {
                self.apply(line, &logical, &mut record)?;
            }
            match physical {
                None => return Ok(record),
                Some(l) if l.is_empty() => {
                    self.in_comment = false;
                    if record.is_some() {
                        return Ok(record);
                    }
                }
                Some(l) if l.starts_with(b"#") => self.in_comment = true,
                Some(l) => {
                    self.in_comment = false;
                    self.current = Some((self.line_no, l));
                }
            }
        }
    }

    /// Applies one complete logical line (`attr: value`, `attr:: base64`) to the record.
    fn apply(
        &mut self,
        line: usize,
        logical: &[u8],
        record: &mut Option<(usize, Entry)>,
    ) -> Result<(), LineError> {
        let err = |msg: String| (line, msg);
        let text = std::str::from_utf8(logical).map_err(|_| {
            err("line is not valid UTF-8; write binary values as base64 with `attr:: `".into())
        })?;
        let (name, rest) = text
            .split_once(':')
            .ok_or_else(|| err(format!("expected `attribute: value`, found `{text}`")))?;
        let name = name.trim();
        if name.is_empty() || name.contains(' ') {
            return Err(err(format!("invalid attribute name `{name}`")));
        }
        let value = if let Some(encoded) = rest.strip_prefix(':') {
            let encoded: String = encoded.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = BASE64
                .decode(encoded.as_bytes())
                .map_err(|e| err(format!("invalid base64 value of `{name}`: {e}")))?;
            binary_text(name, bytes)
        } else if rest.starts_with('<') {
            return Err(err(format!(
                "`{name}:<` URL values are not supported; put the value inline or as `{name}:: base64`"
            )));
        } else {
            rest.trim_start_matches(' ').to_string()
        };
        let first_line = !self.started;
        self.started = true;
        match record {
            None if first_line && name.eq_ignore_ascii_case("version") => match value.trim() {
                "1" => Ok(()),
                other => Err(err(format!(
                    "unsupported LDIF version `{other}` (only 1 is)"
                ))),
            },
            None if name.eq_ignore_ascii_case("dn") => {
                let entry = Entry {
                    dn: value,
                    ..Entry::default()
                };
                *record = Some((line, entry));
                Ok(())
            }
            None => Err(err(format!(
                "a record must start with `dn:`, found `{name}:`"
            ))),
            Some(_) if name.eq_ignore_ascii_case("dn") => Err(err(
                "second `dn:` in one record; separate records with a blank line".into(),
            )),
            Some(_) if name.eq_ignore_ascii_case("changetype") => {
                if value.trim().eq_ignore_ascii_case("add") {
                    Ok(())
                } else {
                    Err(err(format!(
                        "`changetype: {value}` records are not supported; the file must hold plain entries"
                    )))
                }
            }
            Some((_, entry)) => {
                entry.push(name, value);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::{GroupQuery, PeopleQuery};
    use crate::sources::{GroupRecord, PersonRecord};

    /// Records in arrival order, split by kind.
    #[derive(Default)]
    struct Collect {
        order: String,
        people: Vec<PersonRecord>,
        groups: Vec<GroupRecord>,
    }

    impl RecordSink for Collect {
        fn accept(&mut self, record: SourceRecord) -> Result<(), Error> {
            match record {
                SourceRecord::Person(p) => (self.order.push('p'), self.people.push(p)),
                SourceRecord::Group(g) => (self.order.push('g'), self.groups.push(g)),
            };
            Ok(())
        }
    }

    fn config(file: &tempfile::NamedTempFile) -> LdifSourceConfig {
        LdifSourceConfig {
            path: file.path().to_path_buf(),
            people: PeopleQuery::default(),
            groups: GroupQuery::default(),
            privileged_groups: Vec::new(),
            remediation: None,
        }
    }

    fn write(text: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text).unwrap();
        file
    }

    fn fail(text: &[u8]) -> String {
        run(text, |_| {}).err().unwrap().to_string()
    }

    fn run(
        text: &[u8],
        adjust: impl FnOnce(&mut LdifSourceConfig),
    ) -> Result<(Collect, FetchReport), Error> {
        let file = write(text);
        let mut config = config(&file);
        adjust(&mut config);
        let mut sink = Collect::default();
        let report = fetch(&config, &mut sink)?;
        Ok((sink, report))
    }

    const SAMPLE: &str = "\
version: 1
# people and groups of example.com

dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: uid=ann,ou=people,dc=ex
 ample,dc=com
objectClass: inetOrgPerson
entryUUID: 11111111-1111-1111-1111-111111111111
uid: ann
cn: Ann
  Lee
mail: ann@example.com
mail: ann.lee@example.com
manager: uid=bob,ou=people,dc=example,dc=com

dn: cn=admins,ou=groups,dc=example,dc=com
objectClass: groupOfNames
cn: admins
description:: /wA=
member: uid=ann,ou=people,dc=example,dc=com
member: uid=bob,ou=people,dc=example,dc=com

dn: uid=bob,ou=people,dc=example,dc=com
objectclass: INETORGPERSON
uid: bob
cn:: Qm9iIEvDtmxsZXI=
";

    #[test]
    fn folding_base64_order_and_report() {
        let (sink, report) = run(SAMPLE.as_bytes(), |_| {}).unwrap();
        assert_eq!(
            sink.order, "pgp",
            "file order, people and groups interleaved"
        );
        let ann = &sink.people[0];
        assert_eq!(ann.dn, "uid=ann,ou=people,dc=example,dc=com");
        assert_eq!(
            (ann.display_name.as_str(), ann.email.as_deref()),
            ("Ann Lee", Some("ann@example.com"))
        );
        assert_eq!(ann.external_id, "11111111-1111-1111-1111-111111111111");
        assert_eq!(sink.people[1].display_name, "Bob Köller");
        assert_eq!(sink.groups[0].member_dns.len(), 2);
        // Non-UTF-8 base64 values stay base64; a missing id is derived from the DN.
        assert_eq!(sink.groups[0].description.as_deref(), Some("base64:/wA="));
        let bob_id = &sink.people[1].external_id;
        assert_eq!(
            *bob_id,
            derived_id("UID=Bob, OU=People, DC=Example, DC=Com")
        );
        assert!(
            bob_id.starts_with("dn-sha256:") && bob_id.len() == 10 + 32,
            "{bob_id}"
        );
        let digest = hex::encode(Sha256::digest(SAMPLE.as_bytes()));
        assert_eq!(report.raw_sha256, digest);
        assert_eq!(report.searches[0].base, "(whole file)");
        assert_eq!(
            (report.searches[0].entries, report.searches[1].entries),
            (2, 1)
        );
    }

    #[test]
    fn missing_login_fails_with_file_and_line() {
        let err =
            fail(b"dn: ou=x,dc=x\nou: x\n\n# c\ndn: cn=nologin,dc=x\nobjectClass: inetOrgPerson\n");
        assert!(
            err.contains(":5: entry `cn=nologin,dc=x` has no login"),
            "{err}"
        );
        assert!(err.contains("`uid`"), "{err}");
    }

    #[test]
    fn base_dns_scope_entries() {
        let (sink, report) = run(SAMPLE.as_bytes(), |c| {
            c.people.base_dns = vec!["OU=People, DC=Example,DC=com".into()];
            c.groups.base_dns = vec![
                "ou=none,dc=example,dc=com".into(),
                "ou=groups,dc=example,dc=com".into(),
            ];
            c.people.filter = "(&(objectClass=inetOrgPerson)(uid=ANN))".into();
        })
        .unwrap();
        assert_eq!((sink.people.len(), sink.groups.len()), (1, 1));
        assert_eq!(
            report.searches[1].base,
            "ou=none,dc=example,dc=com; ou=groups,dc=example,dc=com"
        );
        let bases = ["ou=people,dc=x".to_string()];
        assert!(in_scope("ou=people,dc=x", &bases) && in_scope("uid=a,ou=people,dc=x", &bases));
        assert!(!in_scope("uid=a,xou=people,dc=x", &bases));
    }

    #[test]
    fn unsupported_filters_are_config_errors() {
        let err = run(SAMPLE.as_bytes(), |c| {
            c.groups.filter = "(|(cn=a*)(cn=b))".into()
        });
        let err = err.err().unwrap();
        assert!(
            matches!(&err, Error::Config(p) if p[0].key == "groups.filter"),
            "{err}"
        );
        let err = err.to_string();
        assert!(
            err.contains("only (attr=value), (attr=*) and (&...), (|...), (!...)"),
            "{err}"
        );
    }

    #[test]
    fn url_values_and_bad_records_are_refused_with_line() {
        let err = fail(b"dn: uid=a,dc=x\njpegPhoto:< file:///etc/passwd\n");
        assert!(err.contains(":2: `jpegPhoto:<`"), "{err}");
        let err = fail(b"uid: a\n");
        assert!(err.contains(":1: a record must start with `dn:`"), "{err}");
        let err = fail(b"dn: a=b\nchangetype: modify\n");
        assert!(err.contains(":2: `changetype: modify`"), "{err}");
        let err = fail(b"dn: uid=a\ncn: \xff\n");
        assert!(err.contains(":2: line is not valid UTF-8"), "{err}");
        let err = fail(b"version: 2\n");
        assert!(err.contains(":1: unsupported LDIF version"), "{err}");
    }

    #[test]
    fn crlf_comments_folded_comments_and_no_trailing_newline() {
        let text = b"# comment\r\n  folded comment\r\ndn: uid=a,dc=x\r\nobjectClass: inetOrgPerson\r\nuid: a";
        let (sink, _) = run(text, |_| {}).unwrap();
        assert_eq!(sink.people[0].login, "a");
    }
}
