//! `attest source test` and `attest sync` as an admin runs them against a real slapd: the test
//! reads everything, names every problem and writes nothing; a sync prints one line (no
//! progress drawing when the output is not a terminal).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use crate::binary;
use crate::common;
use crate::support::slapd::{self, Slapd};

fn ldap_config(dir: &Path, slapd: &Slapd) -> std::path::PathBuf {
    let text = format!(
        r#"
[database]
url = "sqlite://{db}"

[links]
signing_key = "source-cli-test-signing-key-0123456789-ab"

[sources.corp]
kind = "ldap"
url = "{url}"
starttls = true
tls_ca_file = "{ca}"
bind_dn = "{reader}"
bind_password = "{password}"
privileged_groups = ["backup-operators", "db-admins"]

[sources.corp.people]
base_dns = ["ou=people,dc=example,dc=com"]

[sources.corp.groups]
base_dns = ["ou=groups,dc=example,dc=com"]
"#,
        db = dir.join("attest.db").display(),
        url = slapd.url,
        ca = slapd.ca_file.display(),
        reader = slapd::READER_DN,
        password = slapd::READER_PASSWORD,
    );
    let path = dir.join("attest.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn source_test_reads_everything_names_every_problem_and_writes_nothing() {
    let dir = common::temp_dir();
    let slapd = Slapd::start_with_ldif_file(
        &crate::support::repo_root().join("tests/fixtures/nested.ldif"),
    );
    let config = ldap_config(dir.path(), &slapd);
    let out = binary::run_ok(dir.path(), &config, &["source", "test", "corp"]);
    for expected in [
        &format!("bound as {}", slapd::READER_DN)[..],
        "5 people (0 service accounts, 0 disabled), 7 groups",
        "11 direct memberships give 13 accesses",
        "4 problem(s) a sync would record",
        "privileged_group_missing  db-admins",
        "unresolved_member  backup-operators: dn uid=ghost,ou=people,dc=example,dc=com",
        "cycle  loop-a: groups nested in each other: loop-a, loop-b",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    assert!(
        !dir.path().join("attest.db").exists(),
        "a source test writes nothing"
    );

    let output = binary::run(dir.path(), &config, &["sync"]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(
        stdout.starts_with("corp: 5 people, 7 groups, 13 accesses"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains("people and"),
        "{stderr}"
    );
}

#[test]
fn source_test_of_an_unreachable_server_fails_with_one_line() {
    let dir = common::temp_dir();
    let mut slapd = Slapd::start_with_ldif_file(
        &crate::support::repo_root().join("tests/fixtures/nested.ldif"),
    );
    let config = ldap_config(dir.path(), &slapd);
    slapd.stop();
    let output = binary::run(dir.path(), &config, &["source", "test", "corp"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].starts_with("error[source_failed]: source `corp` failed: cannot connect"),
        "{stderr}"
    );
}
