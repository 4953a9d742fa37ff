//! Checks of `[auth]`, each problem naming its key.

use crate::config::{AuthConfig, ReviewConfig, resolve_secret};
use crate::error::ConfigProblem;

pub(super) fn review_problems(review: &ReviewConfig, auth: &AuthConfig) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if review.require_sso && auth.oidc.is_none() {
        problems.push(ConfigProblem::new(
            "review.require_sso",
            "reviewers sign in at the [auth.oidc] provider: configure it, or set require_sso = \
             false",
        ));
    }
    if review.require_sso
        && let Some(oidc) = &auth.oidc
        && !oidc.scopes.iter().any(|s| s == "email")
    {
        problems.push(ConfigProblem::new(
            "auth.oidc.scopes",
            "review.require_sso matches a reviewer by the verified email address: add the \
             \"email\" scope",
        ));
    }
    if !(1..=24).contains(&review.sso_hours) {
        problems.push(ConfigProblem::new(
            "review.sso_hours",
            "must be between 1 and 24",
        ));
    }
    problems
}

pub(super) fn auth_problems(auth: &AuthConfig, public_url: &str) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if auth.session_idle_minutes == 0 {
        problems.push(ConfigProblem::new(
            "auth.session_idle_minutes",
            "must be at least 1",
        ));
    }
    if auth.session_absolute_hours == 0 || auth.session_absolute_hours > 24 * 7 {
        problems.push(ConfigProblem::new(
            "auth.session_absolute_hours",
            "must be between 1 and 168 (a week)",
        ));
    }
    if !(1..=10_000).contains(&auth.sign_ins_per_minute) {
        problems.push(ConfigProblem::new(
            "auth.sign_ins_per_minute",
            "must be between 1 and 10000",
        ));
    }
    let Some(oidc) = &auth.oidc else {
        return problems;
    };
    let issuer = &oidc.issuer;
    if !(issuer.starts_with("https://")
        || (issuer.starts_with("http://") && oidc.allow_insecure_http))
    {
        problems.push(ConfigProblem::new(
            "auth.oidc.issuer",
            "must be an https:// URL (allow_insecure_http = true accepts http:// and the risk \
             of sending codes and tokens in clear)",
        ));
    }
    if !(public_url.starts_with("https://") || oidc.allow_insecure_http) {
        problems.push(ConfigProblem::new(
            "server.public_url",
            "must be an https:// URL for staff sign-in (the session cookie is sent only over \
             https; allow_insecure_http = true in [auth.oidc] accepts http://)",
        ));
    }
    if oidc.client_id.trim().is_empty() {
        problems.push(ConfigProblem::new("auth.oidc.client_id", "must be set"));
    }
    match resolve_secret(
        "auth.oidc.client_secret",
        oidc.client_secret.as_ref(),
        oidc.client_secret_file.as_deref(),
    ) {
        Err(p) => problems.push(p),
        Ok(None) => problems.push(ConfigProblem::new(
            "auth.oidc.client_secret_file",
            "set client_secret_file (or client_secret)",
        )),
        Ok(Some(_)) => {}
    }
    if oidc.admin_groups.is_empty() && oidc.auditor_groups.is_empty() {
        problems.push(ConfigProblem::new(
            "auth.oidc.admin_groups",
            "name the groups whose members sign in as admins (or auditor_groups): without \
             them nobody can sign in",
        ));
    }
    if oidc.groups_claim.trim().is_empty() {
        problems.push(ConfigProblem::new("auth.oidc.groups_claim", "must be set"));
    }
    problems
}
