//! Test-support layer for attest's integration tests: starts real services
//! (OpenLDAP `slapd`, the `maildev` SMTP sink, PostgreSQL databases) on free
//! loopback ports, each in its own temporary directory, and stops them by pid
//! on `Drop`. Tests run as parallel threads of one process, so every start is
//! independent of the others. This file also holds small std-only helpers: a
//! minimal HTTP/1.1 client (`http_get`), log tails for panic messages, and a
//! watchdog that ends a service if the test process dies without unwinding.
//! It depends only on std, `tempfile` and `serde_json`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod maildev;
pub mod oidc_scim;
pub mod ports;
pub mod postgres;
pub mod samba;
pub mod slapd;
pub mod smtp_refuser;
pub mod tls;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to become ready before the test panics.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The repository root (the crate's manifest directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `GET url` over a fresh TCP connection; panics if the request fails.
/// Returns the status code and the body (decoded as lossy UTF-8).
#[track_caller]
pub fn http_get(url: &str) -> (u16, String) {
    try_http_request("GET", url, None).unwrap_or_else(|e| panic!("HTTP GET {url} failed: {e}"))
}

/// `DELETE url`; panics if the request fails.
#[track_caller]
pub fn http_delete(url: &str) -> (u16, String) {
    try_http_request("DELETE", url, None)
        .unwrap_or_else(|e| panic!("HTTP DELETE {url} failed: {e}"))
}

/// A minimal HTTP/1.1 client for plain `http://host:port/path` URLs
/// (`Connection: close`; understands Content-Length, chunked and
/// read-to-EOF bodies). `body` is `(content_type, bytes)`.
pub fn try_http_request(
    method: &str,
    url: &str,
    body: Option<(&str, &[u8])>,
) -> std::io::Result<(u16, String)> {
    let bad = |msg: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg.to_string());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("only http:// URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| bad("host did not resolve"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(15)))?;
    stream.set_write_timeout(Some(Duration::from_secs(15)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\n"
    );
    if let Some((content_type, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    } else if method != "GET" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes)?;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).ok_or_else(|| bad("malformed HTTP response"))
}

fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut payload = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let line_end = payload.windows(2).position(|w| w == b"\r\n")?;
            let size_text = String::from_utf8_lossy(&payload[..line_end]);
            let size_text = size_text.split(';').next()?.trim().to_string();
            let size = usize::from_str_radix(&size_text, 16).ok()?;
            payload = &payload[line_end + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(payload.get(..size)?);
            payload = payload.get(size + 2..).unwrap_or(&[]);
        }
        out
    } else if let Some(n) = length {
        payload.get(..n)?.to_vec()
    } else {
        payload.to_vec()
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with
/// `what` and the output of `context()` (typically a log tail).
#[track_caller]
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {timeout:?} waiting for {what}\n{}",
                context()
            );
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The last `lines` lines of a log file (or a note that it is unreadable).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let tail = all[all.len().saturating_sub(lines)..].join("\n");
            format!("--- last {lines} lines of {} ---\n{tail}", path.display())
        }
        Err(e) => format!("--- {} unreadable: {e} ---", path.display()),
    }
}

/// Runs a command to completion, panicking with its stderr/stdout when it
/// cannot be started or exits unsuccessfully. Returns its stdout.
#[track_caller]
pub fn run_checked(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({}): {cmd:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Random hex string from /dev/urandom (for passwords and unique names).
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts a detached `sh` loop that runs `cleanup` (a shell snippet) once
/// the test process is gone. Statics and leaked values are never dropped,
/// and a process that aborts does not unwind, so this is what makes services
/// die with the test process. Kill and reap the returned child (see
/// `kill_and_reap`) when the service is stopped normally.
pub fn spawn_watchdog(cleanup: &str) -> Child {
    let me = std::process::id();
    let script =
        format!("trap '' INT HUP; while kill -0 {me} 2>/dev/null; do sleep 1; done; {cleanup}");
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn watchdog sh")
}

/// Kills and reaps a child, ignoring errors (it may already be gone).
pub fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Single-quotes a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
