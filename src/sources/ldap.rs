//! LDAP source: binds to `ldap://` or `ldaps://` with the synchronous ldap3 client (callers run
//! it on a blocking thread), runs one paged subtree search per configured base DN for people,
//! then for groups, and hands each entry to the [`RecordSink`] as it arrives. Entry mapping
//! lives in `entry.rs` (shared with the LDIF source). It must never hold a whole result
//! set in memory, never return a partial population as success (any non-zero result code,
//! continuation reference or entry without its id or login fails the whole fetch), never write
//! to the directory or the database, and never put the bind password in a log line or error.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use ldap3::asn1::{StructureTag, parse_tag};
use ldap3::controls::{Control, PagedResults};
use ldap3::{LdapConn, LdapConnSettings, LdapError, LdapResult, Scope, parse_refs};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::{LdapSourceConfig, resolve_secret};
use crate::error::{ConfigProblem, Error};
use crate::sources::{FetchReport, RecordSink, SearchRecord, SourceRecord};

use crate::sources::entry::{
    Entry, group_attributes, map_group, map_person, people_attributes, required_id, value_text,
};

const SOURCE: &str = "ldap";
const PAGED_RESULTS_OID: &str = "1.2.840.113556.1.4.319";

/// Reads every person, then every group, from the directory into `sink`. Blocking.
pub fn fetch(config: &LdapSourceConfig, sink: &mut dyn RecordSink) -> Result<FetchReport, Error> {
    let mut problems = Vec::new();
    if config.page_size <= 0 {
        problems.push(ConfigProblem::new("page_size", "must be a positive number"));
    }
    if config.people.base_dns.is_empty() {
        problems.push(ConfigProblem::new(
            "people.base_dns",
            "name at least one base DN",
        ));
    }
    if config.groups.base_dns.is_empty() {
        problems.push(ConfigProblem::new(
            "groups.base_dns",
            "name at least one base DN",
        ));
    }
    let password = match resolve_secret(
        "bind_password",
        config.bind_password.as_ref(),
        config.bind_password_file.as_deref(),
    ) {
        Ok(password) => password,
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    let password = password.as_ref().map(|p| p.expose_secret()).unwrap_or("");
    if !config.bind_dn.is_empty() && password.is_empty() {
        problems.push(ConfigProblem::new(
            "bind_password",
            "bind_dn is set but no password is: an empty password would be an unauthenticated bind",
        ));
    }
    let encrypted = config.url.starts_with("ldaps://") || config.starttls;
    if !encrypted && !password.is_empty() && !config.allow_cleartext_bind {
        problems.push(ConfigProblem::new(
            "starttls",
            "the bind password would cross the network unencrypted: set starttls = true or use \
             ldaps:// (allow_cleartext_bind = true accepts the risk)",
        ));
    }
    if !problems.is_empty() {
        return Err(Error::Config(problems));
    }

    let timeout = Duration::from_secs(config.timeout_seconds.max(1));
    let settings = connection_settings(config, timeout)?;
    let mut conn = LdapConn::with_settings(settings, &config.url)
        .map_err(|e| Error::source(SOURCE, format!("cannot connect to {}: {e}", config.url)))?;
    let outcome = bind(&mut conn, &config.bind_dn, password, timeout)
        .and_then(|()| run_searches(&mut conn, config, timeout, sink));
    // Best effort: the outcome is decided; a failed unbind only means the server went first.
    let _ = conn.unbind();
    outcome
}

/// Connection settings: timeout, StartTLS, and a rustls configuration that trusts
/// `tls_ca_file` when one is given (certificates are always verified).
fn connection_settings(
    config: &LdapSourceConfig,
    timeout: Duration,
) -> Result<LdapConnSettings, Error> {
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(timeout)
        .set_starttls(config.starttls);
    if let Some(ca_file) = &config.tls_ca_file {
        let ca_problem =
            |message: String| Error::Config(vec![ConfigProblem::new("tls_ca_file", message)]);
        let mut roots = rustls::RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| ca_problem(format!("cannot read {}: {e}", ca_file.display())))?;
        for certificate in certificates {
            let certificate = certificate
                .map_err(|e| ca_problem(format!("{} is not PEM: {e}", ca_file.display())))?;
            roots
                .add(certificate)
                .map_err(|e| ca_problem(format!("{}: {e}", ca_file.display())))?;
        }
        if roots.is_empty() {
            return Err(ca_problem(format!(
                "{} holds no certificate",
                ca_file.display()
            )));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        settings = settings.set_config(Arc::new(tls));
    }
    Ok(settings)
}

fn bind(conn: &mut LdapConn, dn: &str, password: &str, timeout: Duration) -> Result<(), Error> {
    let who = if dn.is_empty() { "(anonymous)" } else { dn };
    let result = conn
        .with_timeout(timeout)
        .simple_bind(dn, password)
        .map_err(|e| Error::source(SOURCE, format!("bind as {who} failed: {e}")))?;
    match result.success() {
        Ok(_) => Ok(()),
        Err(LdapError::LdapResult { result }) => Err(Error::source(
            SOURCE,
            format!("bind as {who} failed: {}", describe_result(&result)),
        )),
        Err(e) => Err(Error::source(SOURCE, format!("bind as {who} failed: {e}"))),
    }
}

fn run_searches(
    conn: &mut LdapConn,
    config: &LdapSourceConfig,
    timeout: Duration,
    sink: &mut dyn RecordSink,
) -> Result<FetchReport, Error> {
    let mut hasher = Sha256::new();
    let mut searches = Vec::new();
    let people = &config.people;
    let attributes = people_attributes(people);
    for base in &people.base_dns {
        let spec = SearchSpec::new(
            "people",
            base,
            &people.filter,
            &attributes,
            config.page_size,
            timeout,
        );
        searches.push(spec.run(conn, &mut hasher, &mut |entry| {
            let id = required_id(&entry, &people.id_attribute, "people.id_attribute");
            let person = id.and_then(|id| map_person(&entry, people, id));
            let person = person.map_err(|msg| spec.entry_error(&msg))?;
            sink.accept(SourceRecord::Person(person))
        })?);
    }
    let groups = &config.groups;
    let attributes = group_attributes(groups);
    for base in &groups.base_dns {
        let spec = SearchSpec::new(
            "groups",
            base,
            &groups.filter,
            &attributes,
            config.page_size,
            timeout,
        );
        searches.push(spec.run(conn, &mut hasher, &mut |entry| {
            let id = required_id(&entry, &groups.id_attribute, "groups.id_attribute")
                .map_err(|msg| spec.entry_error(&msg))?;
            sink.accept(SourceRecord::Group(map_group(&entry, groups, id)))
        })?);
    }
    Ok(FetchReport {
        server: config.url.clone(),
        bind_identity: Some(if config.bind_dn.is_empty() {
            "(anonymous)".to_string()
        } else {
            config.bind_dn.clone()
        }),
        page_size: Some(i64::from(config.page_size)),
        searches,
        raw_sha256: hex::encode(hasher.finalize()),
    })
}

/// One paged subtree search and what it needs to report itself.
struct SearchSpec<'a> {
    what: &'static str,
    base: &'a str,
    filter: &'a str,
    attributes: &'a [String],
    page_size: i32,
    timeout: Duration,
}

impl<'a> SearchSpec<'a> {
    fn new(
        what: &'static str,
        base: &'a str,
        filter: &'a str,
        attributes: &'a [String],
        page_size: i32,
        timeout: Duration,
    ) -> Self {
        SearchSpec {
            what,
            base,
            filter,
            attributes,
            page_size,
            timeout,
        }
    }

    fn failed(&self, detail: impl std::fmt::Display) -> Error {
        Error::source(
            SOURCE,
            format!(
                "{} search under `{}` failed: {detail}; the population would be partial, \
                 so the sync is aborted",
                self.what, self.base
            ),
        )
    }

    fn entry_error(&self, msg: &str) -> Error {
        Error::source(
            SOURCE,
            format!(
                "{msg} ({} search under `{}`); the sync is aborted",
                self.what, self.base
            ),
        )
    }

    /// Pages through the search with a manual cookie loop, feeding every entry to the hash and
    /// to `on_entry` as it arrives; any non-success result fails the search.
    fn run(
        &self,
        conn: &mut LdapConn,
        hasher: &mut Sha256,
        on_entry: &mut dyn FnMut(Entry) -> Result<(), Error>,
    ) -> Result<SearchRecord, Error> {
        let (mut entries, mut pages, mut cookie) = (0u64, 0u64, Vec::new());
        loop {
            let control = PagedResults {
                size: self.page_size,
                cookie,
            };
            conn.with_controls(control).with_timeout(self.timeout);
            let mut stream = conn
                .streaming_search(self.base, Scope::Subtree, self.filter, self.attributes)
                .map_err(|e| self.failed(e))?;
            while let Some(item) = stream.next().map_err(|e| self.failed(e))? {
                if item.is_intermediate() {
                    continue;
                }
                if item.is_ref() {
                    let urls = parse_refs(item.0).join(", ");
                    return Err(self.failed(format!("the server returned a referral to {urls}")));
                }
                let raw = parse_entry(item.0)
                    .ok_or_else(|| self.failed("the server sent a malformed entry"))?;
                hash_entry(hasher, &raw);
                entries += 1;
                on_entry(raw.into_entry())?;
            }
            let result = stream.result();
            pages += 1;
            let result = match result.success() {
                Ok(result) => result,
                Err(LdapError::LdapResult { result }) => {
                    return Err(self.failed(describe_result(&result)));
                }
                Err(e) => return Err(self.failed(e)),
            };
            match next_cookie(&result.ctrls) {
                Some(next) if !next.is_empty() => cookie = next,
                _ => break,
            }
        }
        Ok(SearchRecord {
            base: self.base.to_string(),
            scope: "sub".into(),
            filter: self.filter.to_string(),
            attributes: self.attributes.to_vec(),
            entries,
            pages,
        })
    }
}

/// The cookie of the Paged Results response control, parsed without panicking on bad input.
fn next_cookie(ctrls: &[Control]) -> Option<Vec<u8>> {
    let raw = ctrls
        .iter()
        .map(|c| &c.1)
        .find(|c| c.ctype == PAGED_RESULTS_OID)?;
    let (_, tag) = parse_tag(raw.val.as_deref()?).ok()?;
    tag.expect_constructed()?
        .into_iter()
        .nth(1)?
        .expect_primitive()
}

/// An entry as the server sent it: the DN and every value as raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RawEntry {
    dn: String,
    attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    fn into_entry(self) -> Entry {
        let attrs = self
            .attrs
            .into_iter()
            .map(|(name, values)| (name, values.into_iter().map(value_text).collect()));
        Entry {
            dn: self.dn,
            attrs: attrs.collect(),
        }
    }
}

/// Reads a SearchResultEntry (application tag 4) without ldap3's panicking `construct`.
fn parse_entry(tag: StructureTag) -> Option<RawEntry> {
    let mut parts = tag.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut attrs = Vec::new();
    for partial in parts.next()?.expect_constructed()? {
        let mut partial = partial.expect_constructed()?.into_iter();
        let name = String::from_utf8(partial.next()?.expect_primitive()?).ok()?;
        let values = partial.next()?.expect_constructed()?.into_iter();
        let values = values
            .map(StructureTag::expect_primitive)
            .collect::<Option<Vec<_>>>()?;
        attrs.push((name, values));
    }
    Some(RawEntry { dn, attrs })
}

/// Feeds one entry into the population hash. Canonical form: `D<len>:<dn>`, then per
/// attribute, sorted by lower-cased name, `A<len>:<lower-cased name>` and its values sorted
/// bytewise as `V<len>:<bytes>`, then `E\n`; lengths are decimal byte counts.
fn hash_entry(hasher: &mut Sha256, entry: &RawEntry) {
    let field = |hasher: &mut Sha256, kind: &str, bytes: &[u8]| {
        hasher.update(format!("{kind}{}:", bytes.len()).as_bytes());
        hasher.update(bytes);
    };
    field(hasher, "D", entry.dn.as_bytes());
    let mut attrs: Vec<(String, Vec<&[u8]>)> = entry
        .attrs
        .iter()
        .map(|(name, values)| {
            let mut values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            values.sort();
            (name.to_ascii_lowercase(), values)
        })
        .collect();
    attrs.sort();
    for (name, values) in attrs {
        field(hasher, "A", name.as_bytes());
        for value in values {
            field(hasher, "V", value);
        }
    }
    hasher.update(b"E\n");
}

/// `<meaning> (<code>)`, then the server's diagnostic text and referral URLs if any.
fn describe_result(result: &LdapResult) -> String {
    let mut out = format!("{} ({})", result_code_meaning(result.rc), result.rc);
    if !result.text.is_empty() {
        let _ = write!(out, ": {}", result.text);
    }
    if !result.refs.is_empty() {
        let _ = write!(out, " (referred to {})", result.refs.join(", "));
    }
    out
}

/// The RFC 4511 meaning of an LDAP result code, in words.
pub(crate) fn result_code_meaning(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operations error",
        2 => "protocol error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        7 => "authentication method not supported",
        8 => "stronger authentication required",
        10 => "referral",
        11 => "administrative limit exceeded",
        12 => "unavailable critical extension",
        13 => "confidentiality required",
        16 => "no such attribute",
        17 => "undefined attribute type",
        18 => "inappropriate matching",
        21 => "invalid attribute syntax",
        32 => "no such object",
        34 => "invalid DN syntax",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        54 => "loop detected",
        80 => "other",
        _ => "unexpected result code",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{GroupQuery, PeopleQuery};
    use ldap3::asn1::{PL, TagClass};

    fn octets(bytes: &[u8]) -> StructureTag {
        let payload = PL::P(bytes.to_vec());
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload,
        }
    }

    fn seq(id: u64, class: TagClass, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(inner),
        }
    }

    fn wire_entry(dn: &str, attrs: &[(&str, &[&[u8]])]) -> StructureTag {
        let attrs = attrs.iter().map(|(name, values)| {
            let values = values.iter().map(|v| octets(v)).collect();
            let inner = vec![
                octets(name.as_bytes()),
                seq(17, TagClass::Universal, values),
            ];
            seq(16, TagClass::Universal, inner)
        });
        let attrs = seq(16, TagClass::Universal, attrs.collect());
        seq(4, TagClass::Application, vec![octets(dn.as_bytes()), attrs])
    }

    #[test]
    fn wire_entry_parses_and_binary_values_become_base64() {
        let tag = wire_entry(
            "uid=ann,dc=x",
            &[("uid", &[b"ann"]), ("photo", &[b"\xff\x00"])],
        );
        let e = parse_entry(tag).unwrap().into_entry();
        assert_eq!(e.dn, "uid=ann,dc=x");
        assert_eq!(e.first("UID"), Some("ann"));
        assert_eq!(e.first("photo"), Some("base64:/wA="));
        assert!(parse_entry(octets(b"junk")).is_none());
    }

    #[test]
    fn hash_is_canonical_over_attribute_and_value_order() {
        let a = RawEntry {
            dn: "uid=a".into(),
            attrs: vec![
                ("uid".into(), vec![b"a".to_vec()]),
                ("cn".into(), vec![b"y".to_vec(), b"x".to_vec()]),
            ],
        };
        let b = RawEntry {
            dn: "uid=a".into(),
            attrs: vec![
                ("CN".into(), vec![b"x".to_vec(), b"y".to_vec()]),
                ("uid".into(), vec![b"a".to_vec()]),
            ],
        };
        let digest = |e: &RawEntry| {
            let mut h = Sha256::new();
            hash_entry(&mut h, e);
            hex::encode(h.finalize())
        };
        assert_eq!(digest(&a), digest(&b));
        let expected = hex::encode(Sha256::digest(b"D5:uid=aA2:cnV1:xV1:yA3:uidV1:aE\n"));
        assert_eq!(digest(&a), expected);
    }

    #[test]
    fn result_codes_are_named() {
        let result = LdapResult {
            rc: 4,
            matched: String::new(),
            text: "limit reached".into(),
            refs: vec![],
            ctrls: vec![],
        };
        assert_eq!(
            describe_result(&result),
            "size limit exceeded (4): limit reached"
        );
        assert_eq!(result_code_meaning(49), "invalid credentials");
        let spec = SearchSpec {
            what: "people",
            base: "dc=x",
            filter: "(uid=*)",
            attributes: &[],
            page_size: 5,
            timeout: Duration::from_secs(1),
        };
        let msg = spec.failed(describe_result(&result)).to_string();
        assert!(msg.contains("(4)") && msg.contains("partial"), "{msg}");
    }

    #[test]
    fn missing_password_with_bind_dn_is_a_config_error() {
        let config = LdapSourceConfig {
            url: "ldap://127.0.0.1:1".into(),
            bind_dn: "cn=admin,dc=x".into(),
            bind_password: None,
            bind_password_file: None,
            starttls: false,
            tls_ca_file: None,
            allow_cleartext_bind: false,
            page_size: 10,
            timeout_seconds: 1,
            people: PeopleQuery {
                base_dns: vec!["dc=x".into()],
                ..Default::default()
            },
            groups: GroupQuery {
                base_dns: vec!["dc=x".into()],
                ..Default::default()
            },
            privileged_groups: vec![],
        };
        struct Never;
        impl RecordSink for Never {
            fn accept(&mut self, _: SourceRecord) -> Result<(), Error> {
                unreachable!()
            }
        }
        let err = fetch(&config, &mut Never).unwrap_err().to_string();
        assert!(err.contains("bind_password"), "{err}");
    }
}
