//! Semantic checks of a loaded [`Config`]: everything serde cannot express (URL schemes,
//! references between sections, secrets that must be readable). Each problem names its key,
//! and all of them are reported at once.

use secrecy::ExposeSecret;

use super::validate_campaigns::{chain_problems, follow_up_problems, new_access_problems};
use super::{
    Config, MailTransport, SmtpSecurity, SourceConfig, redact_url_password, resolve_secret,
};
use crate::error::{ConfigProblem, Error};

impl Config {
    /// Every semantic problem of the configuration, each naming its key.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let url = &self.database.url;
        if !(url.starts_with("sqlite://")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            problems.push(ConfigProblem::new(
                "database.url",
                format!(
                    "unsupported database URL `{}`: use sqlite://PATH or postgres://...",
                    redact_url_password(url)
                ),
            ));
        }
        if self.database.pool_size == 0 {
            problems.push(ConfigProblem::new(
                "database.pool_size",
                "must be at least 1",
            ));
        }
        problems.extend(super::validate_auth::auth_problems(
            &self.auth,
            &self.server.public_url,
        ));
        problems.extend(super::validate_auth::review_problems(
            &self.review,
            &self.auth,
        ));
        let public_url = &self.server.public_url;
        if !(public_url.is_empty()
            || public_url.starts_with("http://")
            || public_url.starts_with("https://"))
        {
            problems.push(ConfigProblem::new(
                "server.public_url",
                "must be an absolute http:// or https:// URL (or empty to use the bound address)",
            ));
        }
        if self.demo.enabled
            && !(self.server.public_url.is_empty() || is_loopback_url(&self.server.public_url))
        {
            problems.push(ConfigProblem::new(
                "demo.enabled",
                format!(
                    "the demo mailbox shows every reviewer's link to anyone who can reach it, so \
                     it is served only to this machine; server.public_url is `{}` (leave it empty \
                     or use http://127.0.0.1:PORT, or set demo.enabled = false)",
                    self.server.public_url
                ),
            ));
        }
        if self.demo.enabled && !is_loopback_bind(&self.server.bind) {
            problems.push(ConfigProblem::new(
                "demo.enabled",
                format!(
                    "the demo mailbox shows every reviewer's link to anyone who can reach it, so \
                     it is served only on a loopback address; server.bind is `{}` (use \
                     127.0.0.1, ::1 or localhost, or set demo.enabled = false)",
                    self.server.bind
                ),
            ));
        }
        self.link_key_problems(&mut problems);
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(ConfigProblem::new(
                "mail.from",
                "not a valid mailbox such as `attest <attest@example.com>`",
            ));
        }
        if self.mail.transport == MailTransport::Smtp {
            if self.mail.smtp.host.trim().is_empty() {
                problems.push(ConfigProblem::new("mail.smtp.host", "must not be empty"));
            }
            match resolve_secret(
                "mail.smtp.password",
                self.mail.smtp.password.as_ref(),
                self.mail.smtp.password_file.as_deref(),
            ) {
                Err(p) => problems.push(p),
                Ok(None) if self.mail.smtp.username.is_some() => {
                    problems.push(ConfigProblem::new(
                        "mail.smtp.password_file",
                        "mail.smtp.username is set but no password is: set password_file (or \
                         password)",
                    ));
                }
                Ok(_) => {}
            }
            if self.mail.smtp.username.is_some() && self.mail.smtp.security == SmtpSecurity::None {
                problems.push(ConfigProblem::new(
                    "mail.smtp.security",
                    "SMTP credentials would cross the network unencrypted: use starttls or tls",
                ));
            }
        }
        if self.scheduler.tick_seconds == 0 {
            problems.push(ConfigProblem::new(
                "scheduler.tick_seconds",
                "must be at least 1",
            ));
        }
        if !(1..=64).contains(&self.mail.concurrency) {
            problems.push(ConfigProblem::new(
                "mail.concurrency",
                "must be between 1 and 64",
            ));
        }
        if self.mail.max_attempts == 0 {
            problems.push(ConfigProblem::new(
                "mail.max_attempts",
                "must be at least 1",
            ));
        }
        for (name, source) in &self.sources {
            self.source_problems(name, source, &mut problems);
            problems.extend(super::validate_remediation::remediation_problems(
                name, source,
            ));
        }
        problems.extend(super::validate_remediation::immediate_stage_problems(self));
        for (name, definition) in &self.campaigns {
            let key = format!("campaigns.{name}");
            if !self.sources.contains_key(&definition.source) {
                problems.push(ConfigProblem::new(
                    &format!("{key}.source"),
                    format!("no source named `{}` under [sources]", definition.source),
                ));
            }
            if definition.fallback_reviewers.is_empty() {
                problems.push(ConfigProblem::new(
                    &format!("{key}.fallback_reviewers"),
                    "name at least one fallback reviewer (email or login)",
                ));
            }
            if let Err(schedule_problems) =
                crate::campaigns::schedule::Schedule::of(&key, definition)
            {
                problems.extend(schedule_problems);
            }
            if definition.duration_days == 0 {
                problems.push(ConfigProblem::new(
                    &format!("{key}.duration_days"),
                    "must be at least 1",
                ));
            }
            problems.extend(follow_up_problems(&key, definition));
            problems.extend(chain_problems(&key, definition));
            problems.extend(new_access_problems(&key, definition, &self.campaigns));
        }
        problems
    }

    /// An inline key wins over the key file; a missing file is generated only where one
    /// instance owns the database, since every instance must verify every other's links.
    fn link_key_problems(&self, problems: &mut Vec<ConfigProblem>) {
        let links = &self.links;
        for (kid, path) in &links.previous_key_files {
            let key = format!("links.previous_key_files.{kid}");
            if *kid == links.key_id {
                problems.push(ConfigProblem::new(
                    &key,
                    "is the current key_id; a previous key needs its own id",
                ));
            }
            match std::fs::read_to_string(path) {
                Ok(text) if text.trim_end().len() >= 32 => {}
                Ok(_) => problems.push(ConfigProblem::new(
                    &key,
                    "key must be at least 32 characters",
                )),
                Err(e) => problems.push(ConfigProblem::new(
                    &key,
                    format!("cannot read {}: {e}", path.display()),
                )),
            }
        }
        let origin = &self.evidence.origin;
        if origin.is_empty() || origin.contains(|c: char| c == '+' || c.is_whitespace()) {
            problems.push(ConfigProblem::new(
                "evidence.origin",
                "must be a non-empty name without spaces or '+' (it names the log in signed \
                 checkpoints)",
            ));
        }
        if !(1..=100).contains(&self.evidence.retention_years) {
            problems.push(ConfigProblem::new(
                "evidence.retention_years",
                "must be between 1 and 100 (years the evidence of a campaign is kept after it \
                 closes; SOC 2 auditors commonly expect at least one audit period)",
            ));
        }
        let evidence_key = &self.evidence.signing_key_file;
        if !evidence_key.exists()
            && (!self.evidence.generate_missing_key || self.database.url.starts_with("postgres"))
        {
            problems.push(ConfigProblem::new(
                "evidence.signing_key_file",
                format!(
                    "{} does not exist; create it with 32 random bytes in hex (`openssl rand \
                     -hex 32`) and give every instance sharing this database the same file",
                    evidence_key.display()
                ),
            ));
        }
        match (&links.signing_key, &links.signing_key_file) {
            (Some(key), _) => {
                if key.expose_secret().len() < 32 {
                    problems.push(ConfigProblem::new(
                        "links.signing_key",
                        "must be at least 32 characters",
                    ));
                }
            }
            (None, Some(path)) if path.exists() => {
                if let Err(p) = resolve_secret("links.signing_key", None, Some(path)) {
                    problems.push(p);
                }
            }
            (None, Some(path)) => {
                let shared_database = self.database.url.starts_with("postgres");
                if !links.generate_missing_key || shared_database {
                    problems.push(ConfigProblem::new(
                        "links.signing_key_file",
                        format!(
                            "{} does not exist; create it with a random key of at least 32 \
                             characters (e.g. `openssl rand -hex 32`){}",
                            path.display(),
                            if shared_database {
                                " and give every instance sharing this database the same file"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
            }
            (None, None) => problems.push(ConfigProblem::new(
                "links.signing_key_file",
                "set links.signing_key_file (or links.signing_key)",
            )),
        }
    }

    fn source_problems(
        &self,
        name: &str,
        source: &SourceConfig,
        problems: &mut Vec<ConfigProblem>,
    ) {
        let key = format!("sources.{name}");
        match source {
            SourceConfig::Ldap(ldap) => {
                if !(ldap.url.starts_with("ldap://") || ldap.url.starts_with("ldaps://")) {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.url"),
                        "must start with ldap:// or ldaps://",
                    ));
                }
                match resolve_secret(
                    &format!("{key}.bind_password"),
                    ldap.bind_password.as_ref(),
                    ldap.bind_password_file.as_deref(),
                ) {
                    Err(p) => problems.push(p),
                    Ok(None) if !ldap.bind_dn.is_empty() => problems.push(ConfigProblem::new(
                        &format!("{key}.bind_password_file"),
                        "bind_dn is set but no password is: set bind_password_file (or \
                         bind_password); an empty bind_dn binds anonymously",
                    )),
                    Ok(_) => {}
                }
                let encrypted = ldap.url.starts_with("ldaps://") || ldap.starttls;
                if !encrypted && !ldap.bind_dn.is_empty() && !ldap.allow_cleartext_bind {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.starttls"),
                        "the bind password would cross the network unencrypted: set starttls = \
                         true or use ldaps:// (allow_cleartext_bind = true accepts the risk)",
                    ));
                }
                if ldap.starttls && ldap.url.starts_with("ldaps://") {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.starttls"),
                        "ldaps:// is already encrypted; StartTLS applies to ldap:// only",
                    ));
                }
                if let Some(ca) = &ldap.tls_ca_file
                    && !ca.is_file()
                {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.tls_ca_file"),
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
                if ldap.page_size <= 0 {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.page_size"),
                        "must be a positive number",
                    ));
                }
                if ldap.people.base_dns.is_empty() {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.people.base_dns"),
                        "name at least one base DN to search for people",
                    ));
                }
                if ldap.groups.base_dns.is_empty() {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.groups.base_dns"),
                        "name at least one base DN to search for groups",
                    ));
                }
            }
            SourceConfig::Oidc(oidc) => {
                for (field, url) in [("issuer", &oidc.issuer), ("scim.url", &oidc.scim.url)] {
                    let secure = url.starts_with("https://");
                    if !(secure || (url.starts_with("http://") && oidc.allow_insecure_http)) {
                        problems.push(ConfigProblem::new(
                            &format!("{key}.{field}"),
                            "must be an https:// URL (allow_insecure_http = true accepts http:// \
                             and the risk of sending the client secret and tokens in clear)",
                        ));
                    }
                }
                match resolve_secret(
                    &format!("{key}.client_secret"),
                    oidc.client_secret.as_ref(),
                    oidc.client_secret_file.as_deref(),
                ) {
                    Err(p) => problems.push(p),
                    Ok(None) => problems.push(ConfigProblem::new(
                        &format!("{key}.client_secret_file"),
                        "set client_secret_file (or client_secret)",
                    )),
                    Ok(Some(_)) => {}
                }
                if oidc.scim.page_size == 0 {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.scim.page_size"),
                        "must be at least 1",
                    ));
                }
            }
            SourceConfig::Csv(csv) => {
                if csv.path.as_os_str().is_empty() {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.path"),
                        "must not be empty",
                    ));
                }
            }
            SourceConfig::Ldif(ldif) => {
                if ldif.path.as_os_str().is_empty() {
                    problems.push(ConfigProblem::new(
                        &format!("{key}.path"),
                        "must not be empty",
                    ));
                }
            }
        }
    }

    /// Fails with every problem at once when the configuration is not usable.
    pub fn validate(&self) -> Result<(), Error> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems))
        }
    }
}

/// Whether `bind` (`host:port`) only accepts connections from this machine.
fn is_loopback_bind(bind: &str) -> bool {
    if let Ok(address) = bind.parse::<std::net::SocketAddr>() {
        return address.ip().is_loopback();
    }
    bind.rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// Whether an `http(s)://host[:port]/...` URL names this machine.
fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::{is_loopback_bind, is_loopback_url};

    #[test]
    fn only_loopback_urls_count_as_local() {
        for local in [
            "http://127.0.0.1:8080",
            "http://localhost/x",
            "https://[::1]:8443/",
        ] {
            assert!(is_loopback_url(local), "{local}");
        }
        for open in [
            "https://review.example.com",
            "http://10.0.0.1:8080",
            "http://127.0.0.1.example.com/",
            "http://localhost@evil.example",
        ] {
            assert!(!is_loopback_url(open), "{open}");
        }
    }

    #[test]
    fn only_loopback_binds_count_as_local() {
        for local in [
            "127.0.0.1:8080",
            "127.0.0.2:0",
            "[::1]:8080",
            "localhost:8080",
        ] {
            assert!(is_loopback_bind(local), "{local}");
        }
        for open in [
            "0.0.0.0:8080",
            "[::]:8080",
            "192.168.1.4:80",
            "example.com:80",
            "8080",
        ] {
            assert!(!is_loopback_bind(open), "{open}");
        }
    }
}
