//! Checks of `[sources.NAME.remediation]`, each problem naming its key.

use crate::config::{
    Config, RemediationConfig, RemediationMode, RemediationWhen, SourceConfig, StageOutcome,
    resolve_secret,
};
use crate::error::ConfigProblem;

pub(super) fn remediation_problems(name: &str, source: &SourceConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    let Some(remediation) = source.remediation() else {
        return problems;
    };
    let key = format!("sources.{name}.remediation");
    let at = |field: &str| format!("{key}.{field}");
    for (field, value, max) in [
        ("max_attempts", u64::from(remediation.max_attempts), 100),
        ("timeout_seconds", remediation.timeout_seconds, 600),
        ("retry_base_seconds", remediation.retry_base_seconds, 86_400),
        (
            "regrant_window_days",
            u64::from(remediation.regrant_window_days),
            3_650,
        ),
    ] {
        if !(1..=max).contains(&value) {
            problems.push(ConfigProblem::new(
                &at(field),
                format!("must be between 1 and {max}"),
            ));
        }
    }
    if !remediation.mail_to.is_empty() && !remediation.mail_to.contains('@') {
        problems.push(ConfigProblem::new(
            &at("mail_to"),
            "must be an email address",
        ));
    }
    match remediation.mode {
        RemediationMode::Ldap => ldap_problems(&at, source, remediation, &mut problems),
        RemediationMode::Webhook => webhook_problems(&at, remediation, &mut problems),
        RemediationMode::Manual => {}
    }
    problems
}

/// A revocation that goes on to a later stage for a second opinion is not final: removing it
/// at once would act before that opinion.
pub(super) fn immediate_stage_problems(config: &Config) -> Vec<ConfigProblem> {
    config
        .campaigns
        .iter()
        .filter(|(_, d)| d.stages.len() > 1 && d.stage_outcome == StageOutcome::AnyApprove)
        .filter(|(_, d)| {
            config
                .sources
                .get(&d.source)
                .and_then(|s| s.remediation())
                .is_some_and(|r| r.when == RemediationWhen::Immediately)
        })
        .map(|(name, d)| {
            ConfigProblem::new(
                &format!("sources.{}.remediation.when", d.source),
                format!(
                    "campaigns.{name} sends revocations to a later stage for a second opinion \
                     (stage_outcome = \"any_approve\"), so a revocation is final only at the \
                     close: use when = \"close\""
                ),
            )
        })
        .collect()
}

fn ldap_problems(
    at: &dyn Fn(&str) -> String,
    source: &SourceConfig,
    remediation: &RemediationConfig,
    problems: &mut Vec<ConfigProblem>,
) {
    let SourceConfig::Ldap(ldap) = source else {
        problems.push(ConfigProblem::new(
            &at("mode"),
            format!(
                "mode = \"ldap\" writes to an LDAP directory, and this source is of kind `{}`: \
                 use \"webhook\" or \"manual\"",
                source.kind()
            ),
        ));
        return;
    };
    if remediation.bind_dn.trim().is_empty() {
        problems.push(ConfigProblem::new(
            &at("bind_dn"),
            "name the write-capable account that removes memberships",
        ));
    }
    match resolve_secret(
        &at("bind_password"),
        remediation.bind_password.as_ref(),
        remediation.bind_password_file.as_deref(),
    ) {
        Err(problem) => problems.push(problem),
        Ok(None) => problems.push(ConfigProblem::new(
            &at("bind_password_file"),
            "set bind_password_file (or bind_password) for the write-capable account",
        )),
        Ok(Some(_)) => {}
    }
    let encrypted = ldap.url.starts_with("ldaps://") || ldap.starttls;
    if !encrypted && !ldap.allow_cleartext_bind {
        problems.push(ConfigProblem::new(
            &at("bind_dn"),
            "the write account's password would cross the network unencrypted: set the \
             source's starttls = true or use ldaps://",
        ));
    }
}

fn webhook_problems(
    at: &dyn Fn(&str) -> String,
    remediation: &RemediationConfig,
    problems: &mut Vec<ConfigProblem>,
) {
    let url = &remediation.url;
    if !(url.starts_with("https://")
        || (url.starts_with("http://") && remediation.allow_insecure_http))
    {
        problems.push(ConfigProblem::new(
            &at("url"),
            "must be an https:// URL (allow_insecure_http = true accepts http:// on a trusted \
             link)",
        ));
    }
    match resolve_secret(
        &at("secret"),
        remediation.secret.as_ref(),
        remediation.secret_file.as_deref(),
    ) {
        Err(problem) => problems.push(problem),
        Ok(None) => problems.push(ConfigProblem::new(
            &at("secret_file"),
            "set secret_file (or secret): the key that signs each task (HMAC-SHA256)",
        )),
        Ok(Some(secret)) => {
            use secrecy::ExposeSecret;
            if secret.expose_secret().len() < 16 {
                problems.push(ConfigProblem::new(
                    &at("secret"),
                    "must be at least 16 characters",
                ));
            }
        }
    }
    if let Some(ca) = &remediation.tls_ca_file
        && !ca.is_file()
    {
        problems.push(ConfigProblem::new(
            &at("tls_ca_file"),
            format!("{} is not a readable file", ca.display()),
        ));
    }
}
