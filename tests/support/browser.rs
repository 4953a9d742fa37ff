//! Headless Chromium for UI tests: starts Debian's `chromedriver` on a free loopback port in
//! its own temp dir and opens a WebDriver session (fantoccini) on `/usr/bin/chromium` with a
//! fresh profile and the flags this closed network needs. The driver is killed on `Drop`;
//! close the session with `Browser::close` first.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{READY_TIMEOUT, kill_and_reap, log_tail, ports, spawn_watchdog};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    pub client: fantoccini::Client,
    driver: Child,
    watchdog: Child,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session; panics with the driver log if
    /// either does not come up.
    pub async fn start() -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                PathBuf::from(binary).is_file(),
                "{binary} is missing: tests/run installs Debian's chromium and chromium-driver"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("attest-chromium-")
            .tempdir()
            .expect("create browser temp dir");
        let port = ports::free_port();
        let log = dir.path().join("chromedriver.log");
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let watchdog = spawn_watchdog(&format!("kill -9 {} 2>/dev/null", driver.id()));
        let status_url = format!("http://127.0.0.1:{port}/status");
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            let ready = match reqwest::get(&status_url).await {
                Ok(response) => response
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|status| status["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "chromedriver not ready after {READY_TIMEOUT:?}\n{}",
                log_tail(&log, 30)
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let profile = dir.path().join("profile");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=420,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot open a Chromium session: {e}\n{}",
                log_tail(&log, 40)
            )
        });
        Browser {
            client,
            driver,
            watchdog,
            dir,
        }
    }

    /// Ends the WebDriver session (Chromium exits); the driver stops on drop.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Runs axe-core (npm `axe-core`, injected into the page) against the WCAG 2.x A and AA
    /// rules; returns the serious and critical violations as "rule: help (targets)".
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let axe = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/support/node_modules/axe-core/axe.min.js"),
        )
        .expect("axe-core is missing: tests/run installs tests/support's npm packages");
        self.client
            .execute(&axe, Vec::new())
            .await
            .expect("inject axe-core");
        let result = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag', values:
                     ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })
                   .then(r => done(r.violations), e => done([{ id: 'axe-error',
                     impact: 'critical', help: String(e), nodes: [] }]));",
                Vec::new(),
            )
            .await
            .expect("run axe-core");
        result
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                let targets: Vec<String> = v["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|n| n["target"].to_string())
                    .collect();
                format!("{}: {} ({})", v["id"], v["help"], targets.join(", "))
            })
            .collect()
    }
}

/// Screenshots of a UI test's steps, kept under `target/test-artefacts/NAME/` when the test
/// fails and removed when it passes.
pub struct Artefacts {
    dir: PathBuf,
    step: usize,
    passed: bool,
}

impl Artefacts {
    pub fn new(test: &str) -> Artefacts {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-artefacts")
            .join(test);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test's artefact folder");
        Artefacts {
            dir,
            step: 0,
            passed: false,
        }
    }

    /// Saves what the browser shows now, named after the step about to be checked.
    pub async fn snapshot(&mut self, browser: &Browser, step: &str) {
        self.step += 1;
        if let Ok(png) = browser.client.screenshot().await {
            let _ = std::fs::write(self.dir.join(format!("{:02}-{step}.png", self.step)), png);
        }
    }

    pub fn passed(mut self) {
        self.passed = true;
    }
}

impl Drop for Artefacts {
    fn drop(&mut self) {
        if self.passed {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("screenshots of the failed UI test: {}", self.dir.display());
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_and_reap(&mut self.driver);
        kill_and_reap(&mut self.watchdog);
    }
}
