//! The real `attest` binary as a child process: one-shot commands, and a served instance (or
//! the demo) whose standard error is captured to a file, so that tests see exactly what an
//! operator's log would hold. Children are killed when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{kill_and_reap, log_tail, try_http_request, wait_until};

/// `attest` run in `dir`, with no RUST_LOG or ATTEST__ variables from the test's environment.
pub fn attest(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_attest"));
    command.current_dir(dir);
    without_test_environment(&mut command);
    command
}

fn without_test_environment(command: &mut Command) {
    command.env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("ATTEST__") {
            command.env_remove(key);
        }
    }
}

/// Runs `attest --config CONFIG ARGS...` to completion and returns its output.
pub fn run(dir: &Path, config: &Path, args: &[&str]) -> Output {
    attest(dir)
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("attest runs")
}

/// Like [`run`] for a command expected to refuse at once: were the refusal missing, a `serve`
/// or `demo` would run until stopped, so it is ended after `seconds` (and then fails).
pub fn run_bounded(dir: &Path, config: &Path, args: &[&str], seconds: u32) -> Output {
    let mut command = Command::new("timeout");
    command
        .arg(seconds.to_string())
        .arg(env!("CARGO_BIN_EXE_attest"))
        .arg("--config")
        .arg(config)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null());
    without_test_environment(&mut command);
    command.output().expect("attest runs")
}

/// Like [`run`], panicking with the output unless the command succeeds; returns stdout.
#[track_caller]
pub fn run_ok(dir: &Path, config: &Path, args: &[&str]) -> String {
    let output = run(dir, config, args);
    assert!(
        output.status.success(),
        "attest {args:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A long-running `attest` (serve or demo) with stdout and stderr written to files. It binds
/// port 0 and announces its address, so no port is ever raced for.
pub struct Running {
    child: Option<Child>,
    pub base_url: String,
    pub stdout_path: PathBuf,
    pub stderr_path: PathBuf,
}

impl Running {
    /// Starts `attest ARGS...` in `dir` (configured with `server.bind = "127.0.0.1:0"` and
    /// an empty `public_url`), reads the address it announces (the serving log line, or the
    /// demo's printed URL) and waits until `/healthz` answers there.
    pub fn start(dir: &Path, args: &[&str]) -> Running {
        let name = crate::support::random_hex(4);
        let stdout_path = dir.join(format!("attest-{name}.stdout"));
        let stderr_path = dir.join(format!("attest-{name}.stderr"));
        let child = attest(dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("attest starts");
        let mut running = Running {
            child: Some(child),
            base_url: String::new(),
            stdout_path,
            stderr_path,
        };
        let stderr = running.stderr_path.clone();
        running.base_url = wait_until(
            "attest to announce its address and answer /healthz",
            Duration::from_secs(60),
            || {
                if let Some(status) = running.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("attest exited with {status}\n{}", log_tail(&stderr, 40));
                }
                let announced = format!("{}{}", running.stdout(), running.stderr());
                let base_url = announced_url(&announced)?;
                try_http_request("GET", &format!("{base_url}/healthz"), None)
                    .ok()
                    .filter(|(status, _)| *status == 200)
                    .map(|_| base_url)
            },
            || log_tail(&stderr, 40),
        );
        running
    }

    /// Stops the process with SIGTERM (a graceful shutdown) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let stopped = wait_until(
                "attest to exit after SIGTERM",
                Duration::from_secs(30),
                || child.try_wait().unwrap(),
                || log_tail(&self.stderr_path, 20),
            );
            assert!(stopped.success(), "attest exited with {stopped}");
        }
    }

    /// Everything the process wrote to standard error so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

/// The first `http://127.0.0.1:PORT` in `output`.
fn announced_url(output: &str) -> Option<String> {
    const PREFIX: &str = "http://127.0.0.1:";
    let at = output.find(PREFIX)? + PREFIX.len();
    let port: String = output[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!port.is_empty() && port != "0").then(|| format!("{PREFIX}{port}"))
}

/// A config file for the binary: SQLite in `dir` (or `database_url`), the fixture directory
/// (or `ldif`), the file mailer, and a free port picked when it serves; `extra` TOML is
/// appended as is.
pub fn write_config(
    dir: &Path,
    database_url: Option<&str>,
    ldif: Option<&Path>,
    extra: &str,
) -> PathBuf {
    let database = database_url
        .map(str::to_string)
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("attest.db").display()));
    // The evidence key exists, as it must for instances sharing a PostgreSQL database.
    let evidence_key = dir.join("evidence-signing.key");
    std::fs::write(&evidence_key, format!("{}\n", "42".repeat(32))).unwrap();
    let text = format!(
        r#"
[server]
bind = "127.0.0.1:0"
public_url = ""

[database]
url = "{database}"

[links]
signing_key = "binary-test-signing-key-0123456789-abcdef"

[evidence]
signing_key_file = "{evidence_key}"

[mail]
transport = "file"
file_dir = "{mail}"
from = "attest <attest@example.com>"
poll_interval_ms = 100

[sources.corp]
kind = "ldif"
path = "{ldif}"
privileged_groups = ["prod-admins"]

[sources.corp.people]
base_dns = ["ou=people,dc=example,dc=com"]

[sources.corp.groups]
base_dns = ["ou=groups,dc=example,dc=com"]

[campaigns.access-review]
title = "Q4 access review"
source = "corp"
schedule = "manual"
fallback_reviewers = ["security@example.com"]
{extra}
"#,
        mail = dir.join("mail").display(),
        evidence_key = evidence_key.display(),
        ldif = ldif
            .map_or_else(crate::common::fixture, Path::to_path_buf)
            .display(),
    );
    let path = dir.join("attest.toml");
    std::fs::write(&path, text).unwrap();
    path
}
