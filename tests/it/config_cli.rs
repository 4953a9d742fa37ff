//! The `attest` binary's configuration handling: problems name their key, unknown keys and
//! unsupported database URLs are refused with one clear line and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use crate::binary::attest;

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("attest runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attest.toml");
    std::fs::write(
        &file,
        r#"
[server]
public_url = "ftp://example.com"

[database]
pool_size = 0

[mail]
from = "not a mailbox"

[mail.smtp]
security = "none"
username = "attest"

[sources.corp]
kind = "ldap"
url = "ldap://ldap.example.com"
bind_dn = "cn=reader,dc=example,dc=com"
bind_password = "secret"
[sources.corp.people]
base_dns = ["ou=people,dc=example,dc=com"]
[sources.corp.groups]
base_dns = ["ou=groups,dc=example,dc=com"]

[campaigns.q]
source = "nowhere"
fallback_reviewers = []
"#,
    )
    .unwrap();
    let (ok, text) = run(attest(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("check-config"));
    assert!(!ok);
    for key in [
        "server.public_url",
        "database.pool_size",
        "mail.from",
        "campaigns.q.source",
        "campaigns.q.fallback_reviewers",
        "sources.corp.starttls",
        "mail.smtp.password_file",
        "mail.smtp.security",
    ] {
        assert!(text.contains(key), "missing {key} in:\n{text}");
    }
}

#[test]
fn unknown_keys_are_refused_in_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attest.toml");
    std::fs::write(&file, "[database]\nurll = \"sqlite://x.db\"\n").unwrap();
    let (ok, text) = run(attest(dir.path())
        .arg("--config")
        .arg(&file)
        .arg("check-config"));
    assert!(!ok);
    assert!(text.contains("urll"), "{text}");

    let (ok, text) = run(attest(dir.path())
        .arg("check-config")
        .env("ATTEST__MAIL__SMTP__HOSTNAME", "x"));
    assert!(!ok);
    assert!(text.contains("hostname"), "{text}");
}

#[test]
fn unsupported_database_url_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(attest(dir.path()).arg("migrate").env(
        "ATTEST__DATABASE__URL",
        "mysql://root:hunter2@localhost/attest",
    ));
    assert!(!ok);
    assert!(text.contains("database.url"), "{text}");
    assert!(!text.contains("hunter2"), "password echoed: {text}");
    assert_eq!(
        text.trim()
            .lines()
            .filter(|l| l.starts_with("error"))
            .count(),
        1,
        "{text}"
    );
}

#[test]
fn missing_config_file_is_an_error_when_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(attest(dir.path()).args(["--config", "nope.toml", "check-config"]));
    assert!(!ok);
    assert!(text.contains("nope.toml"), "{text}");
}

#[test]
fn migrate_creates_the_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, text) = run(attest(dir.path())
        .arg("migrate")
        .env("ATTEST__DATABASE__URL", "sqlite://var/a.db"));
    assert!(ok, "{text}");
    assert!(dir.path().join("var/a.db").exists());
    let (ok, text) = run(attest(dir.path())
        .arg("migrate")
        .env("ATTEST__DATABASE__URL", "sqlite://var/a.db"));
    assert!(ok && text.contains("0 migration(s)"), "{text}");
}

#[test]
fn default_toml_documents_the_built_in_defaults() {
    let file = crate::support::repo_root().join("config/default.toml");
    let loaded = attest::config::Config::load(Some(&file), true).unwrap();
    let as_json = |c: &attest::config::Config| serde_json::to_value(c).unwrap();
    assert_eq!(
        as_json(&loaded),
        as_json(&attest::config::Config::default())
    );
    let (ok, text) = run(attest(&crate::support::repo_root()).arg("check-config"));
    assert!(ok, "{text}");
}

#[test]
fn cli_runs_sync_campaign_export_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = crate::support::slapd::fixture_path();
    let file = dir.path().join("attest.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[database]
url = "sqlite://var/attest.db"

[mail]
transport = "file"
file_dir = "var/mail"

[sources.corp]
kind = "ldif"
path = "{}"
[sources.corp.people]
base_dns = ["ou=people,dc=example,dc=com"]
[sources.corp.groups]
base_dns = ["ou=groups,dc=example,dc=com"]

[campaigns.review]
source = "corp"
fallback_reviewers = ["security@example.com"]
schedule = "manual"
no_response = "revoke"
"#,
            fixture.display()
        ),
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let (ok, text) = run(attest(dir.path()).arg("--config").arg(&file).args(args));
        assert!(ok, "attest {args:?} failed:\n{text}");
        text
    };
    let synced = cli(&["sync"]);
    assert!(
        synced.contains("corp: 12 people, 4 groups, 18 accesses (18 direct memberships)"),
        "{synced}"
    );
    assert!(synced.contains("12 joined, 0 left"), "{synced}");
    let again = cli(&["sync"]);
    assert!(
        again.contains("unchanged since the last sync, nothing written"),
        "{again}"
    );
    let opened = cli(&["campaign", "start", "review", "--now"]);
    assert!(opened.contains("18 items for 4 reviewers"), "{opened}");
    let id = opened
        .split_whitespace()
        .skip_while(|w| *w != "campaign")
        .nth(1)
        .unwrap()
        .to_string();
    assert!(cli(&["campaign", "list"]).contains(&id));
    let exported = cli(&["export", &id, "--out", "pack.zip"]);
    assert!(
        exported.contains("18 review items, 0 decisions"),
        "{exported}"
    );
    assert!(dir.path().join("pack.zip").exists());
    // Checked offline: no configuration, no database.
    let (ok, verified) = run(attest(dir.path()).args(["verify", "pack.zip"]));
    assert!(ok, "{verified}");
    assert!(verified.starts_with("OK: pack.zip"), "{verified}");
    assert!(
        verified.contains("18 review items, 0 decisions"),
        "{verified}"
    );
    let stranger = attest::ledger::checkpoint::CheckpointKey::from_bytes(&[9u8; 32], "attest");
    std::fs::write(
        dir.path().join("stranger.pub"),
        format!("{}\n", stranger.verifier_key()),
    )
    .unwrap();
    let (ok, refused) =
        run(attest(dir.path()).args(["verify", "pack.zip", "--public-key", "stranger.pub"]));
    assert!(!ok && refused.contains("no rotation"), "{refused}");
    let close = |extra: &[&str]| {
        run(attest(dir.path())
            .arg("--config")
            .arg(&file)
            .args(["campaign", "close", &id])
            .args(extra))
    };
    // Nobody answered: revoking all 18 is above the share, so the close needs confirmation.
    let dry = cli(&["campaign", "close", &id, "--dry-run"]);
    assert!(dry.contains("would revoke 18 access(es)"), "{dry}");
    assert!(dry.contains("  alice in prod-admins"), "{dry}");
    assert!(dry.contains("--confirm-revocations") && dry.contains("nothing was changed"));
    let (ok, text) = close(&[]);
    assert!(!ok && text.contains("--confirm-revocations"), "{text}");
    assert!(cli(&["campaign", "list"]).contains("0/18 decided"));
    let closed = cli(&["campaign", "close", &id, "--confirm-revocations"]);
    assert!(closed.contains("18 not reviewed (revoke)"), "{closed}");
    assert!(cli(&["campaign", "list"]).contains("18 without answer"));
    let (ok, text) = close(&[]);
    assert!(!ok && text.contains("already closed"), "{text}");

    // The 18 revocations become manual tasks (no remediation configured), for IT to close.
    let round = cli(&["remediation", "run"]);
    assert!(round.starts_with("18 task(s) made; 0 executed"), "{round}");
    let listed = cli(&["remediation", "list", "--state", "pending", "--json"]);
    let tasks: Vec<serde_json::Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tasks.len(), 18);
    assert!(
        tasks
            .iter()
            .all(|t| t["reason"] == "no_response" && t["mode"] == "manual")
    );
    let task = tasks[0]["id"].as_str().unwrap();
    let done = cli(&["remediation", "done", task, "--ticket", "CHG-1"]);
    assert!(done.contains("executed (ticket CHG-1)"), "{done}");
    let (ok, text) = run(attest(dir.path()).arg("--config").arg(&file).args([
        "remediation",
        "done",
        task,
        "--ticket",
        "CHG-1",
    ]));
    assert!(!ok && text.contains("not pending"), "{text}");
    let table = cli(&["remediation", "list", "--state", "executed"]);
    assert!(
        table.contains(task) && table.contains("ticket CHG-1"),
        "{table}"
    );
    let (ok, text) = run(attest(dir.path()).arg("--config").arg(&file).args([
        "remediation",
        "list",
        "--state",
        "gone",
    ]));
    assert!(
        !ok && text.contains("use one of pending, executed"),
        "{text}"
    );
}

#[test]
fn cli_issues_lists_and_revokes_api_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("attest.toml");
    std::fs::write(&file, "[database]\nurl = \"sqlite://var/attest.db\"\n").unwrap();
    let cli = |args: &[&str]| run(attest(dir.path()).arg("--config").arg(&file).args(args));
    let (ok, issued) = cli(&[
        "token",
        "create",
        "--role",
        "auditor",
        "--email",
        "auditor@example.com",
        "--name",
        "FY2026 audit",
    ]);
    assert!(ok, "{issued}");
    let secret = issued
        .lines()
        .find(|l| l.starts_with("attest_at_"))
        .unwrap_or_else(|| panic!("no token printed:\n{issued}"));
    let id = issued.split_whitespace().nth(3).unwrap().to_string();
    let (ok, listed) = cli(&["token", "list"]);
    assert!(
        ok && listed.contains(&id) && listed.contains("auditor@example.com"),
        "{listed}"
    );
    assert!(!listed.contains(secret), "the secret is shown once only");
    let (ok, revoked) = cli(&["token", "revoke", &id]);
    assert!(ok && revoked.contains("revoked token"), "{revoked}");
    let (ok, listed) = cli(&["token", "list"]);
    assert!(ok && listed.contains("revoked 20"), "{listed}");
    let (ok, refused) = cli(&[
        "token", "create", "--role", "root", "--email", "a@b.c", "--name", "x",
    ]);
    assert!(!ok && refused.contains("unknown role"), "{refused}");

    // A one-time console link for the same person: same role only.
    let (ok, link) = cli(&[
        "admin",
        "link",
        "--role",
        "auditor",
        "--email",
        "auditor@example.com",
    ]);
    assert!(ok, "{link}");
    assert!(
        link.lines()
            .any(|l| l.starts_with("http://127.0.0.1:8080/auth/link?t=") && l.len() > 60),
        "{link}"
    );
    let (ok, refused) = cli(&[
        "admin",
        "link",
        "--role",
        "admin",
        "--email",
        "auditor@example.com",
    ]);
    assert!(!ok && refused.contains("role auditor"), "{refused}");
}

#[test]
fn email_preview_renders_each_mail_with_sample_data_and_the_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = dir.path().join("templates");
    std::fs::create_dir_all(overrides.join("reminder")).unwrap();
    std::fs::write(
        overrides.join("reminder/subject.txt.j2"),
        "Still {{ item_count }} to go, {{ reviewer_name }}",
    )
    .unwrap();
    let file = dir.path().join("attest.toml");
    std::fs::write(
        &file,
        format!(
            "[mail]\ntemplates_dir = {:?}\n",
            overrides.display().to_string()
        ),
    )
    .unwrap();
    let preview = |args: &[&str]| {
        run(attest(dir.path())
            .arg("--config")
            .arg(&file)
            .args(["email", "preview"])
            .args(args))
    };

    let (ok, text) = preview(&["review_request"]);
    assert!(ok, "{text}");
    assert!(
        text.starts_with("Subject: Access review: 6 accesses to review by"),
        "{text}"
    );
    assert!(text.contains("* Dave Dunn (dave) in prod-admins [PRIVILEGED]\n  Production administrators; direct member; first seen 2026-10-01"), "{text}");
    assert_eq!(text.matches("Approve: ").count(), 6);

    let (ok, text) = preview(&["escalation", "--items", "60"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("That is too many to list here. By group:\n* prod-admins [PRIVILEGED]: 15"),
        "{text}"
    );

    let (ok, text) = preview(&["reminder", "--items", "2"]);
    assert!(ok, "{text}");
    assert!(
        text.starts_with("Subject: Still 2 to go, Bob Baker"),
        "the override: {text}"
    );

    let (ok, html) = preview(&["review_request", "--html"]);
    assert!(ok && html.starts_with("<!DOCTYPE html>") && html.contains("Remote access VPN"));

    let (ok, text) = preview(&["welcome"]);
    assert!(!ok);
    assert!(
        text.contains("unknown mail `welcome`; one of: review_request, reminder, escalation"),
        "{text}"
    );
}
