//! A throwaway Active Directory domain controller (Debian's Samba AD DC) for tests that need
//! real AD behaviour: binary `objectGUID`, `userAccountControl`, `memberOf`, and
//! `member;range=` retrieval. Each instance is provisioned into its own temp dir (realm
//! ACME.TEST, no DNS, only the LDAP service), listens on its own loopback address (Samba's
//! ports cannot be changed, so every DC gets a 127.x.y.z of its own), serves StartTLS with a
//! test CA whose certificate names that address, runs in the single-process model, and is
//! killed on drop or when the test process dies.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use super::tls::TestCertificates;
use super::{kill_and_reap, log_tail, run_checked, spawn_watchdog, wait_until};

pub const BASE_DN: &str = "DC=acme,DC=test";
pub const USERS_DN: &str = "CN=Users,DC=acme,DC=test";
pub const ADMIN_UPN: &str = "Administrator@acme.test";
pub const ADMIN_PASSWORD: &str = "Adm1n-Passw0rd!";

pub struct SambaDc {
    dir: tempfile::TempDir,
    pub ip: String,
    pub url: String,
    pub ca_file: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
    /// Holds the loopback address for this DC (released on drop).
    _address_lock: std::fs::File,
}

/// Whether Samba's AD DC is installed here.
pub fn available() -> bool {
    Path::new("/usr/sbin/samba").exists() && which("samba-tool")
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A loopback address nobody listens on port 389 of, held for the DC's lifetime by an
/// exclusive lock file, so that test runs in parallel processes never share a DC.
fn free_loopback_ip() -> (String, std::fs::File) {
    static TAKEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let seed = std::process::id();
    for n in 0..250u32 {
        let ip = format!("127.77.{}.{}", (seed + n) % 250 + 1, n % 250 + 2);
        if taken.contains(&ip) {
            continue;
        }
        let lock_path = std::env::temp_dir().join(format!("attest-samba-{ip}.lock"));
        let Ok(lock) = std::fs::File::create(&lock_path) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        if TcpListener::bind((ip.as_str(), 389)).is_ok() {
            taken.push(ip.clone());
            return (ip, lock);
        }
    }
    panic!("no free loopback address for a Samba DC (is port 389 bindable? tests run as root)");
}

impl SambaDc {
    /// Provisions and starts a DC, and waits until its LDAP service answers.
    pub fn start() -> SambaDc {
        let dir = tempfile::Builder::new()
            .prefix("attest-samba-")
            .tempdir()
            .expect("create samba temp dir");
        let (ip, address_lock) = free_loopback_ip();
        let root = dir.path().join("dc");
        let options: Vec<String> = [
            format!("interfaces={ip}/8"),
            "bind interfaces only=yes".into(),
            "server services=ldap".into(),
            format!("pid directory={}", root.join("run").display()),
            format!("lock directory={}", root.join("lock").display()),
            format!("state directory={}", root.join("state").display()),
            format!("cache directory={}", root.join("cache").display()),
            format!("private dir={}", root.join("private").display()),
            format!("log file={}", dir.path().join("samba.log").display()),
        ]
        .into_iter()
        .collect();
        let mut provision = Command::new("samba-tool");
        provision
            .args(["domain", "provision"])
            .arg(format!("--targetdir={}", root.display()))
            .args([
                "--realm=ACME.TEST",
                "--domain=ACME",
                "--server-role=dc",
                "--dns-backend=NONE",
                "--use-rfc2307",
                "--host-name=DC1",
            ])
            .arg(format!("--adminpass={ADMIN_PASSWORD}"));
        for option in &options {
            provision.arg(format!("--option={option}"));
        }
        run_checked(&mut provision, "samba-tool domain provision");

        let tls = TestCertificates::generate_for(dir.path(), &ip);
        let conf = root.join("etc/smb.conf");
        let text = std::fs::read_to_string(&conf).expect("read smb.conf");
        let global = format!(
            "[global]\n\tldap server require strong auth = no\n\ttls enabled = yes\n\
             \ttls keyfile = {}\n\ttls certfile = {}\n\ttls cafile = {}\n",
            tls.key_file.display(),
            tls.cert_file.display(),
            tls.ca_file.display()
        );
        std::fs::write(&conf, text.replacen("[global]\n", &global, 1)).expect("write smb.conf");

        let log = dir.path().join("samba.stdout");
        let child = Command::new("/usr/sbin/samba")
            .args(["-F", "--no-process-group", "-M", "single"])
            .args(["--maximum-runtime=3600", "-s"])
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("samba log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn samba");
        let watchdog = spawn_watchdog(&format!("kill -9 {} 2>/dev/null", child.id()));
        let mut dc = SambaDc {
            url: format!("ldap://{ip}"),
            ip,
            ca_file: tls.ca_file,
            child: Some(child),
            watchdog: Some(watchdog),
            _address_lock: address_lock,
            dir,
        };
        let samba_log = dc.dir.path().join("samba.log");
        let url = dc.url.clone();
        wait_until(
            "Samba's LDAP service",
            Duration::from_secs(60),
            || {
                if let Some(status) = dc.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    panic!("samba exited with {status}\n{}", log_tail(&samba_log, 30));
                }
                let probe = Command::new("ldapsearch")
                    .args(["-x", "-H", &url, "-D", ADMIN_UPN, "-w", ADMIN_PASSWORD])
                    .args(["-b", BASE_DN, "-s", "base", "-o", "nettimeout=2"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                probe.is_ok_and(|s| s.success()).then_some(())
            },
            || log_tail(&samba_log, 30),
        );
        dc
    }

    /// Adds an enabled user with a password (`samba-tool user add` on the DC's database).
    pub fn add_user(&self, login: &str, given: &str, surname: &str, mail: &str) {
        run_checked(
            Command::new("samba-tool")
                .args([
                    "user",
                    "add",
                    login,
                    "Us3r-Passw0rd!",
                    "--use-username-as-cn",
                ])
                .arg(format!("--given-name={given}"))
                .arg(format!("--surname={surname}"))
                .arg(format!("--mail-address={mail}"))
                .arg("-H")
                .arg(self.dir.path().join("dc/private/sam.ldb"))
                .arg(format!(
                    "--configfile={}",
                    self.dir.path().join("dc/etc/smb.conf").display()
                )),
            "samba-tool user add",
        );
    }

    /// Adds LDIF entries as the Administrator, over LDAP.
    pub fn ldapadd(&self, ldif: &str) {
        let path = self.dir.path().join("add.ldif");
        std::fs::write(&path, ldif).expect("write ldif");
        run_checked(
            Command::new("ldapadd")
                .args([
                    "-x",
                    "-H",
                    &self.url,
                    "-D",
                    ADMIN_UPN,
                    "-w",
                    ADMIN_PASSWORD,
                    "-f",
                ])
                .arg(&path),
            "ldapadd to samba",
        );
    }

    /// An LDAP search as the Administrator; returns the LDIF output (no wrapping).
    pub fn ldapsearch(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        run_checked(
            Command::new("ldapsearch")
                .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &self.url])
                .args(["-D", ADMIN_UPN, "-w", ADMIN_PASSWORD, "-b", base, filter])
                .args(attrs),
            "ldapsearch of samba",
        )
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            kill_and_reap(&mut watchdog);
        }
    }
}
