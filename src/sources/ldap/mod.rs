//! LDAP source: binds to `ldap://` or `ldaps://` with the synchronous ldap3 client (callers run
//! it on a blocking thread), runs one paged subtree search per configured base DN for people,
//! then for groups, and hands each entry to the [`RecordSink`] as it arrives. Entry mapping
//! lives in `entry.rs` (shared with the LDIF source); paging, referrals and ranged attributes
//! in `search.rs`; the wire format of entries in `wire.rs`. It must never hold a whole result
//! set in memory, never return a partial population as success (any non-zero result code,
//! continuation reference, incomplete range or entry without its id or login fails the whole
//! fetch), never write to the directory or the database, and never put the bind password in a
//! log line or error.

mod search;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapError};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::config::{LdapSourceConfig, resolve_secret};
use crate::error::{ConfigProblem, Error};
use crate::sources::account::AccountRules;
use crate::sources::entry::{
    group_attributes, map_group, map_person, people_attributes, required_id,
};
use crate::sources::{FetchReport, RecordSink, SourceProblem, SourceRecord};

use search::SearchSpec;
pub use search::describe_result;

const SOURCE: &str = "ldap";

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

/// A connection to the source's server bound as `bind_dn` (the write-capable account of
/// remediation, which lives outside this read-only module), with the source's TLS settings.
/// Blocking.
pub fn connect_as(
    config: &LdapSourceConfig,
    bind_dn: &str,
    password: &str,
) -> Result<LdapConn, Error> {
    let timeout = Duration::from_secs(config.timeout_seconds.max(1));
    let settings = connection_settings(config, timeout)?;
    let mut conn = LdapConn::with_settings(settings, &config.url)
        .map_err(|e| Error::source(SOURCE, format!("cannot connect to {}: {e}", config.url)))?;
    bind(&mut conn, bind_dn, password, timeout)?;
    Ok(conn)
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
    let rules = AccountRules::new(people)?;
    let attributes = people_attributes(people, &rules);
    for base in &people.base_dns {
        let spec = SearchSpec::new(
            "people",
            base,
            &people.filter,
            &attributes,
            config.page_size,
            timeout,
        )
        .with_referrals(config.referrals);
        searches.push(spec.run(conn, &mut hasher, &mut |entry| {
            let id = required_id(&entry, &people.id_attribute, "people.id_attribute");
            let person = id.and_then(|id| map_person(&entry, people, &rules, id));
            let person = person.map_err(|msg| spec.entry_error(&msg))?;
            sink.accept(SourceRecord::Person(person))
        })?);
    }
    let groups = &config.groups;
    // With a range size, member attributes are asked for in windows from the start.
    let attributes: Vec<String> = group_attributes(groups)
        .into_iter()
        .map(|name| match config.member_range_size {
            Some(size)
                if groups
                    .member_attributes
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&name)) =>
            {
                format!("{name};range=0-{}", size.max(1) - 1)
            }
            _ => name,
        })
        .collect();
    for base in &groups.base_dns {
        let spec = SearchSpec::new(
            "groups",
            base,
            &groups.filter,
            &attributes,
            config.page_size,
            timeout,
        )
        .with_range_size(config.member_range_size)
        .with_referrals(config.referrals);
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
        problems: searches
            .iter()
            .flat_map(|search| {
                search.referrals_skipped.iter().map(|url| SourceProblem {
                    kind: "referral_skipped",
                    subject: search.base.clone(),
                    detail: format!("the server referred to {url}, which was not read"),
                })
            })
            .collect(),
        searches,
        raw_sha256: hex::encode(hasher.finalize()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::{GroupQuery, PeopleQuery};

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
            member_range_size: None,
            referrals: Default::default(),
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
            remediation: None,
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
