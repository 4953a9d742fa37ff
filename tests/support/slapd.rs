//! A private OpenLDAP server (Debian `slapd` 2.5) per test. `Slapd::start`
//! writes a `slapd.conf` into a fresh temp dir (mdb database for
//! `dc=example,dc=com`, memberof overlay, a random rootpw, read access for
//! the `cn=attest-reader` service account only), loads the LDIF offline with
//! `slapadd -q`, then runs `slapd -d stats` in the foreground as a child on a
//! free loopback port, logging to `slapd.log` in the temp dir. It is ready
//! once an `ldapsearch` of the root DSE succeeds. `stop` kills it (to
//! simulate an outage), `restart` brings it back on the same port with the
//! same data, and `Drop` stops it and removes the temp dir.
//!
//! Note: overlays do not run under slapadd, so an LDIF loaded this way must
//! carry `memberOf` itself (the fixture does); changes made later through
//! `ldapmodify`/`ldapadd` go through slapd and keep `memberOf` up to date.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tls::TestCertificates;
use super::{kill_and_reap, log_tail, ports, run_checked, spawn_watchdog, wait_until};

pub const BASE_DN: &str = "dc=example,dc=com";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
pub const READER_DN: &str = "cn=attest-reader,ou=services,dc=example,dc=com";
pub const READER_PASSWORD: &str = "reader-secret";
/// The remediation account: may change group membership (`Slapd::add_writer` creates it).
pub const WRITER_DN: &str = "cn=attest-writer,ou=services,dc=example,dc=com";
pub const WRITER_PASSWORD: &str = "writer-secret";
/// A reader the test server limits to 100 entries, paged or not (add it to the LDIF to use it).
pub const LIMITED_READER_DN: &str = "cn=limited-reader,ou=services,dc=example,dc=com";

/// The fixture LDIF loaded by `Slapd::start`.
pub fn fixture_path() -> PathBuf {
    super::repo_root().join("tests/fixtures/directory.ldif")
}

pub struct Slapd {
    /// `ldap://127.0.0.1:PORT/`
    pub url: String,
    pub port: u16,
    pub base_dn: String,
    /// The rootdn (bypasses ACLs and size limits).
    pub admin_dn: String,
    pub admin_password: String,
    pub reader_dn: String,
    pub reader_password: String,
    /// CA certificate that signed the server's TLS certificate (StartTLS on the same port).
    pub ca_file: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
    dir: tempfile::TempDir,
}

impl Slapd {
    /// Starts slapd loaded with `tests/fixtures/directory.ldif`.
    pub fn start() -> Slapd {
        Slapd::start_with_ldif_file(&fixture_path())
    }

    /// Starts slapd loaded with the given LDIF text (suffix `dc=example,dc=com`;
    /// it must contain the base entry, and the reader account if it is to bind).
    pub fn start_with_ldif(ldif: &str) -> Slapd {
        let staging = tempfile::Builder::new()
            .prefix("attest-ldif-")
            .tempdir()
            .expect("create temp dir for LDIF");
        let path = staging.path().join("load.ldif");
        std::fs::write(&path, ldif).expect("write LDIF to load");
        Slapd::start_with_ldif_file(&path)
    }

    /// Starts slapd loaded with an LDIF file (cheaper for big generated data).
    pub fn start_with_ldif_file(ldif: &Path) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("attest-slapd-")
            .tempdir()
            .expect("create slapd temp dir");
        std::fs::create_dir(dir.path().join("db")).expect("create slapd db dir");
        let admin_password = super::random_hex(12);
        let certificates = TestCertificates::generate(dir.path());
        let conf = dir.path().join("slapd.conf");
        std::fs::write(
            &conf,
            slapd_conf(dir.path(), &admin_password, &certificates),
        )
        .expect("write slapd.conf");
        run_checked(
            Command::new("slapadd")
                .args(["-q", "-f"])
                .arg(&conf)
                .arg("-l")
                .arg(ldif),
            &format!("slapadd of {}", ldif.display()),
        );
        let mut slapd = Slapd {
            url: String::new(),
            port: 0,
            base_dn: BASE_DN.to_string(),
            admin_dn: ADMIN_DN.to_string(),
            admin_password,
            reader_dn: READER_DN.to_string(),
            reader_password: READER_PASSWORD.to_string(),
            ca_file: certificates.ca_file,
            child: None,
            watchdog: None,
            dir,
        };
        // Another process may grab the port between probe and bind: retry.
        for attempt in 1..=3 {
            let port = ports::free_port();
            match slapd.launch(port) {
                Ok(()) => return slapd,
                Err(log) if attempt < 3 && log.contains("Address already in use") => continue,
                Err(log) => panic!("slapd did not start on port {port}\n{log}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Kills slapd and waits for it to exit. Idempotent; the data stays.
    pub fn stop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            kill_and_reap(&mut watchdog);
        }
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }

    /// Starts slapd again (same port, same data) after `stop`.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port;
        let log_path = self.log_path();
        // The old listener may linger for a moment after the kill.
        let log = wait_until(
            "slapd to restart",
            super::READY_TIMEOUT,
            || match self.launch(port) {
                Ok(()) => Some(None),
                Err(log) if log.contains("Address already in use") => None,
                Err(log) => Some(Some(log)),
            },
            || log_tail(&log_path, 30),
        );
        if let Some(log) = log {
            panic!("slapd did not restart on port {port}\n{log}");
        }
    }

    /// True while the slapd child runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Applies an LDIF change set as the rootdn (`ldapmodify`); panics with
    /// stderr on failure. Entries without `changetype` are rejected: use
    /// `ldapadd` for plain entries.
    pub fn ldapmodify(&self, ldif: &str) {
        self.ldap_tool(&[], ldif, "ldapmodify");
    }

    /// Creates the remediation account [`WRITER_DN`] (write access to group membership).
    pub fn add_writer(&self) {
        self.ldapadd(&format!(
            "dn: {WRITER_DN}\nobjectClass: person\nobjectClass: simpleSecurityObject\n\
             cn: attest-writer\nsn: writer\nuserPassword: {WRITER_PASSWORD}\n"
        ));
    }

    /// The values of `attribute` of the entry `dn`, as the rootdn reads them.
    pub fn values(&self, dn: &str, attribute: &str) -> Vec<String> {
        let out = run_checked(
            Command::new("ldapsearch")
                .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &self.url])
                .args(["-D", &self.admin_dn, "-w", &self.admin_password])
                .args(["-s", "base", "-b", dn, "(objectClass=*)", attribute]),
            "ldapsearch",
        );
        let prefix = format!("{attribute}: ");
        out.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .map(str::to_string)
            .collect()
    }

    /// Adds plain LDIF entries as the rootdn (`ldapmodify -a`).
    pub fn ldapadd(&self, ldif: &str) {
        self.ldap_tool(&["-a"], ldif, "ldapadd");
    }

    /// Subtree search under the base DN as the reader account (paged, so it
    /// passes the 500-entry size limit); returns LDIF (`-LLL`, no wrapping).
    pub fn ldapsearch(&self, filter: &str, attrs: &[&str]) -> String {
        let mut cmd = Command::new("ldapsearch");
        cmd.args(["-x", "-LLL", "-o", "ldif-wrap=no", "-E", "pr=1000/noprompt"])
            .args(["-H", &self.url])
            .args(["-D", &self.reader_dn, "-w", &self.reader_password])
            .args(["-b", &self.base_dn, filter])
            .args(attrs);
        run_checked(&mut cmd, "ldapsearch as reader")
    }

    /// Number of entries matching `filter` (searched as the reader account).
    pub fn count(&self, filter: &str) -> usize {
        let out = self.ldapsearch(filter, &["1.1"]);
        out.lines().filter(|l| l.starts_with("dn:")).count()
    }

    /// The temp dir holding slapd.conf, db/ and slapd.log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    fn ldap_tool(&self, extra: &[&str], ldif: &str, what: &str) {
        let mut child = Command::new("ldapmodify")
            .args(["-x", "-H", &self.url])
            .args(["-D", &self.admin_dn, "-w", &self.admin_password])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot run ldapmodify: {e}"));
        let mut stdin = child.stdin.take().expect("ldapmodify stdin");
        let input = ldif.to_string();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().expect("wait for ldapmodify");
        let _ = writer.join();
        if !out.status.success() {
            panic!(
                "{what} failed ({}):\n--- stderr ---\n{}\n--- stdout ---\n{}\n--- input ---\n{ldif}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
        }
    }

    /// Spawns slapd on `port` and waits until it answers; on failure returns
    /// the log tail (and leaves no process behind).
    fn launch(&mut self, port: u16) -> Result<(), String> {
        let url = format!("ldap://127.0.0.1:{port}/");
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open slapd.log");
        let mut child = Command::new("slapd")
            .args(["-d", "stats", "-h", &url, "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn slapd (is the Debian `slapd` package installed?)");
        let cleanup = format!(
            "kill -9 {} 2>/dev/null; rm -rf {}",
            child.id(),
            super::shell_quote(&self.dir.path().to_string_lossy())
        );
        self.watchdog = Some(spawn_watchdog(&cleanup));
        let deadline = std::time::Instant::now() + super::READY_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.stop();
                return Err(format!(
                    "slapd exited with {status}\n{}",
                    log_tail(&log_path, 30)
                ));
            }
            let probe = Command::new("ldapsearch")
                .args(["-x", "-H", &url, "-b", "", "-s", "base"])
                .args(["-o", "nettimeout=2"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if matches!(probe, Ok(s) if s.success()) {
                break;
            }
            if std::time::Instant::now() >= deadline {
                kill_and_reap(&mut child);
                self.stop();
                return Err(format!(
                    "slapd not ready after {:?}\n{}",
                    super::READY_TIMEOUT,
                    log_tail(&log_path, 30)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child = Some(child);
        self.port = port;
        self.url = url;
        Ok(())
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn slapd_conf(dir: &Path, rootpw: &str, tls: &TestCertificates) -> String {
    let d = dir.display();
    let (ca, cert, key) = (
        tls.ca_file.display(),
        tls.cert_file.display(),
        tls.key_file.display(),
    );
    format!(
        r#"# Generated by tests/support/slapd.rs
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
moduleload refint
pidfile "{d}/slapd.pid"
argsfile "{d}/slapd.args"
TLSCACertificateFile "{ca}"
TLSCertificateFile "{cert}"
TLSCertificateKeyFile "{key}"

# Root DSE and schema are public (readiness probe, client discovery).
access to dn.base="" by * read
access to dn.base="cn=Subschema" by * read

database mdb
maxsize 1073741824
suffix "{BASE_DN}"
rootdn "{ADMIN_DN}"
rootpw {rootpw}
directory "{d}/db"
overlay memberof
# Renames and deletes update the DNs that groups and managers hold, as in most directories.
overlay refint
refint_attributes member uniqueMember manager

# The service account reads everything but passwords; everyone else may
# only authenticate (bind).
access to attrs=userPassword
  by anonymous auth
  by * none
# The remediation account may change group membership, and nothing else.
access to dn.subtree="ou=groups,{BASE_DN}" attrs=member,uniqueMember,memberUid
  by dn.exact="{WRITER_DN}" write
  by dn.exact="{READER_DN}" read
  by dn.exact="{LIMITED_READER_DN}" read
  by * auth
access to *
  by dn.exact="{READER_DN}" read
  by dn.exact="{LIMITED_READER_DN}" read
  by dn.exact="{WRITER_DN}" read
  by * auth

# Plain searches stop at 500 entries; paged searches return everything. The limited reader
# (which a test's LDIF may add) gets at most 100 entries even when paging.
limits dn.exact="{LIMITED_READER_DN}" size.soft=100 size.hard=100 size.prtotal=100
limits users size.soft=500 size.hard=500 size.prtotal=unlimited
"#
    )
}
