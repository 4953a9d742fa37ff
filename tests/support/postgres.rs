//! Fresh PostgreSQL databases for tests. `database()` creates a uniquely
//! named, empty database (template0, UTF8, C collation) on a server chosen
//! once per process: `ATTEST_TEST_POSTGRES_URL` when set; otherwise
//! `postgres://postgres@127.0.0.1:5432/postgres` when `psql` can connect to it
//! (trust auth); otherwise a throwaway cluster that this module starts
//! (initdb --auth=trust as the `postgres` user when running as root, pg_ctl
//! on a free port with its socket in its temp dir, fsync off). Setting
//! `ATTEST_TEST_POSTGRES_FORCE_CLUSTER=1` skips the first two choices. The
//! cluster lives in a static that is never dropped, so a watchdog shell
//! stops it (`pg_ctl stop -m immediate`) and removes its dir once the test
//! process exits. Databases are created and dropped with `psql` and are
//! dropped `WITH (FORCE)` when the `PgDatabase` is dropped.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{log_tail, ports, run_checked, shell_quote, spawn_watchdog, wait_until};

pub const URL_ENV: &str = "ATTEST_TEST_POSTGRES_URL";
pub const FORCE_CLUSTER_ENV: &str = "ATTEST_TEST_POSTGRES_FORCE_CLUSTER";
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// An empty database that is dropped (`WITH (FORCE)`) on `Drop`.
pub struct PgDatabase {
    /// URL of this database (same credentials and host as the server URL).
    pub url: String,
    /// Its name (`attest_test_...`).
    pub name: String,
    /// URL of the maintenance database used to create and drop it.
    pub server_url: String,
}

/// Creates a fresh, uniquely named, empty database.
pub fn database() -> PgDatabase {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let server_url = server_url().to_string();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = format!(
        "attest_test_{}_{n}_{}",
        std::process::id(),
        super::random_hex(3)
    );
    psql(
        &server_url,
        &format!(
            "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ),
    );
    PgDatabase {
        url: with_database(&server_url, &name),
        name,
        server_url,
    }
}

impl PgDatabase {
    /// Runs SQL in this database (`psql -At`), panicking on error; returns
    /// the unaligned, tuples-only output (`|`-separated columns).
    pub fn psql(&self, sql: &str) -> String {
        psql(&self.url, sql)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
        let result = psql_command(&self.server_url, &sql)
            .stdin(Stdio::null())
            .output();
        match result {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "warning: dropping test database {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("warning: cannot run psql to drop {}: {e}", self.name),
        }
    }
}

/// Runs SQL against `url` with `psql -X -At -v ON_ERROR_STOP=1`; panics
/// with stderr on failure; returns stdout.
#[track_caller]
pub fn psql(url: &str, sql: &str) -> String {
    run_checked(&mut psql_command(url, sql), &format!("psql `{sql}`"))
}

fn psql_command(url: &str, sql: &str) -> Command {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-d",
        url,
        "-c",
        sql,
    ])
    .env("PGCONNECT_TIMEOUT", "5");
    cmd
}

fn can_connect(url: &str) -> bool {
    psql_command(url, "SELECT 1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The server URL used for every database of this process.
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let forced = std::env::var(FORCE_CLUSTER_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        if !forced {
            if let Ok(url) = std::env::var(URL_ENV)
                && !url.trim().is_empty()
            {
                return url.trim().to_string();
            }
            if can_connect(DEFAULT_URL) {
                return DEFAULT_URL.to_string();
            }
        }
        start_cluster()
    })
}

/// `url` with its database (path) replaced by `name`; the query is kept.
pub fn with_database(url: &str, name: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[authority_end..]
        .find('?')
        .map_or("", |i| &rest[authority_end + i..]);
    format!("{}/{name}{query}", &url[..scheme_end + authority_end])
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Directory holding initdb/pg_ctl: the newest /usr/lib/postgresql/N/bin,
/// or None to use PATH.
fn pg_bin_dir() -> Option<PathBuf> {
    let entries = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version: f64 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, bin)| bin)
}

/// A command run as the `postgres` OS user when we are root.
fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

fn start_cluster() -> String {
    let bin = pg_bin_dir();
    let tool = |name: &str| {
        bin.as_ref()
            .map_or_else(|| PathBuf::from(name), |b| b.join(name))
    };
    let (initdb, pg_ctl) = (tool("initdb"), tool("pg_ctl"));
    let dir = tempfile::Builder::new()
        .prefix("attest-pg-")
        .tempdir()
        .expect("create PostgreSQL cluster temp dir")
        .keep();
    if is_root() {
        let uid = run_checked(
            Command::new("id").args(["-u", "postgres"]),
            "id -u postgres",
        );
        let gid = run_checked(
            Command::new("id").args(["-g", "postgres"]),
            "id -g postgres",
        );
        let uid: u32 = uid.trim().parse().expect("numeric uid of postgres");
        let gid: u32 = gid.trim().parse().expect("numeric gid of postgres");
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
            .expect("chown cluster dir to postgres");
    }
    let data = dir.join("data");
    let log = dir.join("postgres.log");
    let stop_cmd = as_pg_user(&pg_ctl);
    let cleanup = format!(
        "{} {} stop -D {} -m immediate >/dev/null 2>&1; rm -rf {}",
        stop_cmd.get_program().to_string_lossy(),
        stop_cmd
            .get_args()
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" "),
        shell_quote(&data.to_string_lossy()),
        shell_quote(&dir.to_string_lossy())
    );
    // Armed before initdb so that even a failed start leaves nothing behind.
    drop(spawn_watchdog(&cleanup));
    run_checked(
        as_pg_user(&initdb).arg("-D").arg(&data).args([
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]),
        "initdb of the throwaway cluster",
    );
    for attempt in 1..=3 {
        let port = ports::free_port();
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            dir.display()
        );
        let out_path = dir.join("pg_ctl.out");
        let out = std::fs::File::create(&out_path).expect("create pg_ctl.out");
        let status = as_pg_user(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "20", "-o", &options, "start"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone pg_ctl.out handle"))
            .stderr(out)
            .status()
            .expect("run pg_ctl start");
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        if status.success() {
            wait_until(
                "the throwaway PostgreSQL cluster to accept connections",
                super::READY_TIMEOUT,
                || can_connect(&url).then_some(()),
                || log_tail(&log, 30),
            );
            return url;
        }
        let tail = format!("{}\n{}", log_tail(&out_path, 20), log_tail(&log, 30));
        if attempt < 3 && tail.contains("already in use") {
            continue;
        }
        panic!("pg_ctl start of the throwaway cluster failed ({status})\n{tail}");
    }
    unreachable!("the last attempt either returns or panics")
}
