//! Sync benchmark: attest's sync of a large OpenLDAP directory against the raw paged
//! `ldapsearch` dump of the same entries, in the same run, on SQLite and PostgreSQL.
//!
//! It generates a directory (default 100,000 people, 2,000 groups, 500,000 memberships, with
//! some nesting), loads it offline with `slapadd -q` into a private slapd, and measures:
//! the raw dump (people and groups, StartTLS, pages of 1,000, the attributes attest asks for);
//! attest's full sync into an empty database; an unchanged re-sync (and the rows it wrote);
//! the same at a quarter of the size, for the scaling ratio. It prints times, ratios against
//! the targets of issue 6, and the peak memory of each sync.
//!
//! `cargo bench --bench sync` runs the full size; `-- --smoke` a small one (what CI runs, to
//! keep the benchmark working, not to measure); `-- --people N` any size.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use attest::clock::SystemClock;
use attest::config::{DatabaseConfig, GroupQuery, LdapSourceConfig, PeopleQuery, SourceConfig};
use attest::db::Database;
use attest::directory::{SyncObserver, sync_source_observed};
use diesel::RunQueryDsl;
use secrecy::SecretString;

use support::slapd::{self, Slapd};

const MEMBERSHIPS_PER_PERSON: usize = 5;
const PAGE_SIZE: i32 = 1_000;

struct Size {
    people: usize,
    groups: usize,
}

impl Size {
    fn of(people: usize) -> Size {
        Size {
            people,
            groups: (people / 50).max(10),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let people = args
        .windows(2)
        .find(|w| w[0] == "--people")
        .map(|w| w[1].parse().expect("--people N"))
        .unwrap_or(if smoke { 2_000 } else { 100_000 });
    println!(
        "attest sync benchmark{}",
        if smoke { " (smoke size)" } else { "" }
    );

    let large = measure(&Size::of(people));
    let small = measure(&Size::of(people / 4));

    println!();
    println!(
        "targets (issue 6): full sync <= 1.5x the raw dump; unchanged re-sync <= 1.1x with 0 rows written; t(N)/t(N/4) <= 4.6"
    );
    for (backend, index) in [("sqlite", 0), ("postgres", 1)] {
        let (l, s) = (&large.backends[index], &small.backends[index]);
        println!(
            "{backend:>8}: full {:.2}x, unchanged {:.2}x ({} rows written), scaling {:.2} (full sync {} -> {} people)",
            ratio(l.full, large.raw),
            ratio(l.unchanged, large.raw),
            l.rows_written,
            ratio(l.full, s.full),
            people / 4,
            people
        );
    }
}

struct Measured {
    raw: Duration,
    backends: Vec<BackendRun>,
}

struct BackendRun {
    full: Duration,
    unchanged: Duration,
    rows_written: i64,
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn measure(size: &Size) -> Measured {
    println!();
    println!(
        "== {} people, {} groups, {} memberships",
        size.people,
        size.groups,
        size.people * MEMBERSHIPS_PER_PERSON
    );
    let dir = tempfile::tempdir().unwrap();
    let ldif = dir.path().join("directory.ldif");
    let started = Instant::now();
    write_directory(&ldif, size);
    let slapd = Slapd::start_with_ldif_file(&ldif);
    println!(
        "generated and loaded with slapadd -q in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let raw = best_of(3, || raw_dump(&slapd));
    println!("raw paged ldapsearch dump: {:.2} s", raw.as_secs_f64());

    let mut backends = Vec::new();
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    backends.push(sync_twice("sqlite", &sqlite_url, &slapd));
    let database = support::postgres::database();
    backends.push(sync_twice("postgres", &database.url, &slapd));
    Measured { raw, backends }
}

fn best_of(n: usize, mut run: impl FnMut() -> Duration) -> Duration {
    (0..n).map(|_| run()).min().unwrap()
}

fn raw_dump(slapd: &Slapd) -> Duration {
    let people = ldap_source(slapd);
    let SourceConfig::Ldap(config) = &people else {
        unreachable!()
    };
    let people_attrs = [
        "entryUUID",
        "uid",
        "cn",
        "mail",
        "manager",
        "memberOf",
        "gidNumber",
        "userAccountControl",
        "nsAccountLock",
        "pwdAccountLockedTime",
        "lastLogonTimestamp",
        "authTimestamp",
    ];
    let group_attrs = [
        "entryUUID",
        "cn",
        "memberUid",
        "gidNumber",
        "description",
        "member",
        "uniqueMember",
    ];
    let started = Instant::now();
    for (base, filter, attrs) in [
        (
            &config.people.base_dns[0],
            &config.people.filter,
            &people_attrs[..],
        ),
        (
            &config.groups.base_dns[0],
            &config.groups.filter,
            &group_attrs[..],
        ),
    ] {
        let status = Command::new("ldapsearch")
            .args([
                "-x",
                "-ZZ",
                "-LLL",
                "-E",
                &format!("pr={PAGE_SIZE}/noprompt"),
            ])
            .args([
                "-H",
                &slapd.url,
                "-D",
                slapd::READER_DN,
                "-w",
                slapd::READER_PASSWORD,
            ])
            .args(["-b", base, filter])
            .args(attrs)
            .env("LDAPTLS_CACERT", &slapd.ca_file)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "ldapsearch failed");
    }
    started.elapsed()
}

fn ldap_source(slapd: &Slapd) -> SourceConfig {
    SourceConfig::Ldap(LdapSourceConfig {
        url: slapd.url.clone(),
        bind_dn: slapd::READER_DN.into(),
        bind_password: Some(SecretString::from(slapd::READER_PASSWORD)),
        bind_password_file: None,
        starttls: true,
        tls_ca_file: Some(slapd.ca_file.clone()),
        allow_cleartext_bind: false,
        page_size: PAGE_SIZE,
        member_range_size: None,
        referrals: Default::default(),
        timeout_seconds: 120,
        people: PeopleQuery {
            base_dns: vec![format!("ou=people,{}", slapd::BASE_DN)],
            ..PeopleQuery::default()
        },
        groups: GroupQuery {
            base_dns: vec![format!("ou=groups,{}", slapd::BASE_DN)],
            ..GroupQuery::default()
        },
        privileged_groups: vec!["g0".into()],
        remediation: None,
    })
}

fn version_rows(db: &Database) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = db.conn().unwrap();
    let mut total = 0;
    for table in [
        "identity_versions",
        "entitlement_versions",
        "membership_versions",
        "grant_versions",
    ] {
        total += diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .get_result::<Count>(&mut *conn)
            .unwrap()
            .n;
    }
    total
}

fn sync_twice(backend: &str, url: &str, slapd: &Slapd) -> BackendRun {
    let db = Database::connect(&DatabaseConfig {
        url: url.to_string(),
        ..DatabaseConfig::default()
    })
    .unwrap();
    db.migrate().unwrap();
    let source = ldap_source(slapd);
    let run = |what: &str| {
        reset_peak_memory();
        let phases = PhaseTimes::default();
        let started = Instant::now();
        let outcome =
            sync_source_observed(&db, &SystemClock, "bench", &source, "bench", &phases).unwrap();
        let elapsed = started.elapsed();
        println!(
            "{backend:>8} {what:<9} {:>7.2} s, peak memory {:>5} MB: {}",
            elapsed.as_secs_f64(),
            peak_memory_mb(),
            outcome.summary()
        );
        println!("{:>18} {}", "", phases.report(started));
        elapsed
    };
    let full = run("full");
    let before = version_rows(&db);
    let unchanged = run("unchanged");
    let rows_written = version_rows(&db) - before;
    assert_eq!(rows_written, 0, "an unchanged re-sync wrote rows");
    BackendRun {
        full,
        unchanged,
        rows_written,
    }
}

/// When each step of a sync began, to show where the time goes.
#[derive(Default)]
struct PhaseTimes {
    phases: std::sync::Mutex<Vec<(&'static str, Instant)>>,
}

impl SyncObserver for PhaseTimes {
    fn phase(&self, phase: &'static str) {
        if let Ok(mut phases) = self.phases.lock() {
            phases.push((phase, Instant::now()));
        }
    }
}

impl PhaseTimes {
    fn report(&self, started: Instant) -> String {
        let phases = self.phases.lock().map(|p| p.clone()).unwrap_or_default();
        let mut out = String::new();
        let mut previous = started;
        let mut name = "starting";
        for (phase, at) in phases {
            write!(out, "{name} {:.2} s; ", (at - previous).as_secs_f64()).unwrap();
            (previous, name) = (at, phase);
        }
        write!(
            out,
            "{name} and finishing {:.2} s",
            previous.elapsed().as_secs_f64()
        )
        .unwrap();
        out
    }
}

/// Resets the kernel's record of this process's peak resident memory (Linux).
fn reset_peak_memory() {
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/clear_refs")
    {
        let _ = f.write_all(b"5");
    }
}

fn peak_memory_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// People `p{n}` under ou=people, each in five groups `g{k}` under ou=groups; the first
/// groups nest a few others, so that the expansion has chains to follow.
fn write_directory(path: &Path, size: &Size) {
    let file = std::fs::File::create(path).unwrap();
    let mut out = std::io::BufWriter::new(file);
    let base = slapd::BASE_DN;
    write!(
        out,
        "dn: {base}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\no: Bench\ndc: example\n\n\
         dn: ou=people,{base}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{base}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=services,{base}\nobjectClass: organizationalUnit\nou: services\n\n\
         dn: {reader}\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: attest-reader\nuserPassword: {pw}\n\n",
        reader = slapd::READER_DN,
        pw = slapd::READER_PASSWORD,
    )
    .unwrap();
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); size.groups];
    for p in 0..size.people {
        let manager = if p == 0 { 0 } else { p / 10 };
        let mut entry = String::new();
        write!(
            entry,
            "dn: uid=p{p},ou=people,{base}\nobjectClass: inetOrgPerson\nuid: p{p}\ncn: Person {p}\nsn: {p}\nmail: p{p}@example.com\n"
        )
        .unwrap();
        if p > 0 {
            writeln!(entry, "manager: uid=p{manager},ou=people,{base}").unwrap();
        }
        out.write_all(entry.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
        for j in 0..MEMBERSHIPS_PER_PERSON {
            let g = (p * 7 + j * (size.groups / MEMBERSHIPS_PER_PERSON + 1)) % size.groups;
            if members[g].last() != Some(&p) {
                members[g].push(p);
            }
        }
    }
    let nested = (size.groups / 20).max(1);
    for (g, people) in members.iter().enumerate() {
        write!(
            out,
            "dn: cn=g{g},ou=groups,{base}\nobjectClass: groupOfNames\ncn: g{g}\n"
        )
        .unwrap();
        if g < nested {
            writeln!(out, "member: cn=g{},ou=groups,{base}", g + nested).unwrap();
        }
        if people.is_empty() && g >= nested {
            writeln!(out, "member: cn=g0,ou=groups,{base}").unwrap();
        }
        for p in people {
            writeln!(out, "member: uid=p{p},ou=people,{base}").unwrap();
        }
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}
