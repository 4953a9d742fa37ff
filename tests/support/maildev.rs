//! A private `maildev` SMTP sink per test (npm `maildev` 3.x, installed in
//! tests/support/node_modules by `npm ci`; `tests/run` does that). The node
//! script runs directly as a child process (an npx wrapper would survive a
//! kill) with SMTP and its REST API on free loopback ports and mail kept in
//! a fresh temp dir. It is ready when `GET /api/healthz` answers `true` and
//! the SMTP port accepts connections. The helpers read the REST API:
//! `GET /api/email`, `GET /api/email/:id`, `GET /api/email/:id/source`,
//! `DELETE /api/email/all`. `Drop` kills and reaps the child and removes
//! the temp dir.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http_delete, http_get, kill_and_reap, log_tail, ports, spawn_watchdog};

/// Path of maildev's CLI entry point inside tests/support/node_modules.
pub fn maildev_script() -> PathBuf {
    super::repo_root().join("tests/support/node_modules/maildev/dist/bin/maildev.js")
}

pub struct Maildev {
    pub smtp_port: u16,
    pub http_port: u16,
    child: Option<Child>,
    watchdog: Option<Child>,
    dir: tempfile::TempDir,
}

impl Maildev {
    /// Starts maildev; panics with its output if it is not ready in time.
    pub fn start() -> Maildev {
        Self::start_with(None)
    }

    /// Starts maildev with its SMTP server on `smtp_port`: a port the app under test was
    /// configured with while no mail server listened there (an outage that ends).
    pub fn start_on(smtp_port: u16) -> Maildev {
        Self::start_with(Some(smtp_port))
    }

    fn start_with(smtp_port: Option<u16>) -> Maildev {
        let script = maildev_script();
        assert!(
            script.is_file(),
            "{} is missing: run `npm ci` in tests/support (tests/run does this)",
            script.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("attest-maildev-")
            .tempdir()
            .expect("create maildev temp dir");
        std::fs::create_dir(dir.path().join("mail")).expect("create maildev mail dir");
        let mut maildev = Maildev {
            smtp_port: 0,
            http_port: 0,
            child: None,
            watchdog: None,
            dir,
        };
        // Another process may grab a port between probe and bind: retry.
        for attempt in 1..=3 {
            let (smtp, http) = (
                smtp_port.unwrap_or_else(ports::free_port),
                ports::free_port(),
            );
            match maildev.launch(&script, smtp, http) {
                Ok(()) => return maildev,
                Err(log) if attempt < 3 && log.contains("EADDRINUSE") => continue,
                Err(log) => panic!("maildev did not start (smtp {smtp}, http {http})\n{log}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `http://127.0.0.1:HTTP_PORT`
    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// All received messages (`GET /api/email`), oldest first.
    pub fn messages(&self) -> Vec<Value> {
        self.get_json("/api/email")
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("maildev /api/email did not return an array"))
    }

    /// Messages with `address` among the recipients.
    pub fn messages_to(&self, address: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| {
                recipients(m)
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(address))
            })
            .collect()
    }

    /// Polls until at least `n` messages arrived; panics after `deadline`
    /// listing what did arrive.
    pub fn wait_for_messages(&self, n: usize, deadline: Duration) -> Vec<Value> {
        let end = Instant::now() + deadline;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            if Instant::now() >= end {
                let summary: Vec<String> = messages
                    .iter()
                    .map(|m| format!("to {:?}: {}", recipients(m), m["subject"]))
                    .collect();
                panic!(
                    "expected at least {n} messages within {deadline:?}, got {}:\n{}",
                    messages.len(),
                    summary.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One parsed message (`GET /api/email/:id`: subject, to, headers, html, text).
    pub fn message(&self, id: &str) -> Value {
        self.get_json(&format!("/api/email/{id}"))
    }

    /// The raw RFC 5322 source of a message (`GET /api/email/:id/source`).
    pub fn raw_source(&self, id: &str) -> String {
        let url = format!("{}/api/email/{id}/source", self.api_url());
        let (status, body) = http_get(&url);
        assert_eq!(status, 200, "GET {url} returned {status}: {body}");
        body
    }

    /// Deletes every received message (`DELETE /api/email/all`).
    pub fn clear(&self) {
        let url = format!("{}/api/email/all", self.api_url());
        let (status, body) = http_delete(&url);
        assert_eq!(status, 200, "DELETE {url} returned {status}: {body}");
    }

    /// Kills maildev (e.g. to simulate an SMTP outage). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            kill_and_reap(&mut watchdog);
        }
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("maildev.log")
    }

    fn get_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.api_url());
        let (status, body) = http_get(&url);
        assert_eq!(status, 200, "GET {url} returned {status}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {url}: bad JSON ({e}): {body}"))
    }

    fn launch(&mut self, script: &PathBuf, smtp: u16, http: u16) -> Result<(), String> {
        let log_path = self.log_path();
        let log = std::fs::File::create(&log_path).expect("create maildev.log");
        let mut child = Command::new("node")
            .arg(script)
            .args(["--ip", "127.0.0.1", "--web-ip", "127.0.0.1"])
            .args(["-s", &smtp.to_string(), "-w", &http.to_string()])
            .arg("--mail-directory")
            .arg(self.dir.path().join("mail"))
            .arg("--silent")
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn node (is Node.js installed?)");
        let cleanup = format!("kill -9 {} 2>/dev/null", child.id());
        self.watchdog = Some(spawn_watchdog(&cleanup));
        let health = format!("http://127.0.0.1:{http}/api/healthz");
        let deadline = Instant::now() + super::READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.stop();
                return Err(format!(
                    "maildev exited with {status}\n{}",
                    log_tail(&log_path, 30)
                ));
            }
            let healthy = matches!(super::try_http_request("GET", &health, None),
                Ok((200, body)) if body.trim() == "true");
            if healthy && TcpStream::connect(("127.0.0.1", smtp)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                kill_and_reap(&mut child);
                self.stop();
                return Err(format!(
                    "maildev not ready after {:?}\n{}",
                    super::READY_TIMEOUT,
                    log_tail(&log_path, 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        self.smtp_port = smtp;
        self.http_port = http;
        Ok(())
    }
}

impl Drop for Maildev {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Everyone a message was delivered to: the SMTP envelope recipients
/// (`envelope.to`, which includes Cc and Bcc) plus the `To:` header.
pub fn recipients(message: &Value) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for list in [&message["envelope"]["to"], &message["to"]] {
        for r in list.as_array().into_iter().flatten() {
            if let Some(a) = r["address"].as_str()
                && !out.iter().any(|o| o.eq_ignore_ascii_case(a))
            {
                out.push(a.to_string());
            }
        }
    }
    out
}
