//! The OpenID Connect provider and SCIM 2.0 directory of `tests/support/oidc-scim.mjs`
//! (npm `oidc-provider`, `scimmy`, `scimmy-routers`), on free loopback ports, with the given
//! users and groups. The SCIM server accepts only JWT access tokens the provider issued for
//! its resource indicator; it can refuse tokens after a number of uses (as if they expired)
//! and cap the members a group resource lists. Killed on drop or when the test process dies.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::{kill_and_reap, ports, repo_root, spawn_watchdog};

pub const CLIENT_ID: &str = "attest";
pub const CLIENT_SECRET: &str = "attest-client-secret";

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Refuse a token after this many requests.
    pub expire_after: Option<u32>,
    /// List at most this many members per group resource.
    pub member_cap: Option<u32>,
}

/// The staff sign-in client (authorization code flow), redirecting to the given URL.
pub const CONSOLE_CLIENT_ID: &str = "attest-console";
pub const CONSOLE_CLIENT_SECRET: &str = "attest-console-secret";

pub struct OidcScim {
    pub issuer: String,
    /// SCIM base URL, also the resource indicator the provider knows.
    pub scim_url: String,
    child: Option<Child>,
    watchdog: Option<Child>,
    _dir: tempfile::TempDir,
}

fn script() -> PathBuf {
    repo_root().join("tests/support/oidc-scim.mjs")
}

impl OidcScim {
    /// Starts both servers with `data` (`{"users": [...], "groups": [...]}`).
    pub fn start(data: &serde_json::Value, options: Options) -> OidcScim {
        OidcScim::start_with_console(data, options, None)
    }

    /// Also serves staff sign-in for `CONSOLE_CLIENT_ID`, back to `console_redirect`, for the
    /// accounts in `data["staff"]`.
    pub fn start_with_console(
        data: &serde_json::Value,
        options: Options,
        console_redirect: Option<&str>,
    ) -> OidcScim {
        let modules = repo_root().join("tests/support/node_modules/oidc-provider");
        assert!(
            modules.is_dir(),
            "{} is missing: run `npm ci` in tests/support (tests/run does this)",
            modules.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("attest-oidc-")
            .tempdir()
            .expect("temp dir");
        let data_file = dir.path().join("directory.json");
        std::fs::write(&data_file, serde_json::to_vec(data).unwrap()).unwrap();
        let (provider_port, scim_port) = (ports::free_port(), ports::free_port());
        let mut command = Command::new("node");
        command
            .arg(script())
            .args(["--provider-port", &provider_port.to_string()])
            .args(["--scim-port", &scim_port.to_string()])
            .arg("--data")
            .arg(&data_file);
        if let Some(n) = options.expire_after {
            command.args(["--expire-after", &n.to_string()]);
        }
        if let Some(n) = options.member_cap {
            command.args(["--member-cap", &n.to_string()]);
        }
        if let Some(url) = console_redirect {
            command.args(["--console-redirect", url]);
        }
        let log = dir.path().join("node.log");
        let mut child = command
            .current_dir(repo_root().join("tests/support"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn node (installed by tests/run)");
        let watchdog = spawn_watchdog(&format!("kill -9 {} 2>/dev/null", child.id()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.trim() == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(30)).is_err() {
            kill_and_reap(&mut child);
            panic!(
                "the OIDC provider and SCIM server did not start\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        OidcScim {
            issuer: format!("http://127.0.0.1:{provider_port}"),
            scim_url: format!("http://127.0.0.1:{scim_port}/scim"),
            child: Some(child),
            watchdog: Some(watchdog),
            _dir: dir,
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            kill_and_reap(&mut watchdog);
        }
    }
}

impl Drop for OidcScim {
    fn drop(&mut self) {
        self.stop();
    }
}
