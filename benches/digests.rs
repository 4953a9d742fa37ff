//! Digest benchmark (issue 8): a campaign of N reviewers (2,000 by default, three accesses
//! each) on SQLite, its digests sent by the real outbox worker (link minted, digest rendered,
//! sent over SMTP, outcome recorded, one message at a time) to a local SMTP sink in this
//! process, against lettre alone sending N pre-built messages of the same size to the same
//! sink, in the same run. Then the same worker with `mail.rate_per_minute` set: the realised
//! rate against the configured one. Targets: >= 500 digests per second unthrottled; with a
//! rate set, 95-100 % of it and never above.
//!
//! `cargo bench --bench digests` runs 2,000; `-- --smoke` 100 (what CI runs, to keep the
//! benchmark working, not to measure); `-- --reviewers N` any size; `-- --concurrency N`
//! sends N at a time (default: `mail.concurrency`'s default).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use attest::app::App;
use attest::clock::{SharedClock, SystemClock};
use attest::config::{
    CampaignDefinition, Config, CsvSourceConfig, MailTransport, SmtpSecurity, SourceConfig,
};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const SOURCE: &str = "bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let reviewers: usize = args
        .windows(2)
        .find(|w| w[0] == "--reviewers")
        .map(|w| w[1].parse().expect("--reviewers N"))
        .unwrap_or(if smoke { 100 } else { 2_000 });
    let concurrency: u32 = args
        .windows(2)
        .find(|w| w[0] == "--concurrency")
        .map(|w| w[1].parse().expect("--concurrency N"))
        .unwrap_or(attest::config::MailConfig::default().concurrency);
    println!(
        "attest digest benchmark{}: {reviewers} reviewers, three accesses each, \
         mail.concurrency = {concurrency}",
        if smoke { " (smoke size)" } else { "" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sink = Sink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let (digests, bytes) = send_digests(dir.path(), reviewers, (0, concurrency), &sink).await;
        let raw = raw_lettre(reviewers, bytes, &sink).await;
        let rate = reviewers as f64 / digests.as_secs_f64();
        let raw_rate = reviewers as f64 / raw.as_secs_f64();
        // The throttled run: a rate well below the unthrottled one, for a few seconds.
        let per_minute: u32 = if smoke { 1_200 } else { 6_000 };
        let paced_count = (per_minute / 20) as usize; // three seconds' worth
        let dir = tempfile::tempdir().unwrap();
        let (paced, _) =
            send_digests(dir.path(), paced_count, (per_minute, concurrency), &sink).await;
        // n messages take n - 1 intervals: the first one goes at once.
        let realised = (paced_count - 1) as f64 / paced.as_secs_f64() * 60.0;
        println!();
        println!(
            "targets (issue 8): >= 500 digests/s unthrottled; with mail.rate_per_minute, \
             95-100 % of it"
        );
        println!(
            "digests: {rate:.0}/s (average {} KiB); lettre alone to the same sink: \
             {raw_rate:.0}/s; ratio {:.2}x",
            bytes / 1024,
            rate / raw_rate
        );
        println!(
            "mail.rate_per_minute = {per_minute}: {paced_count} digests at {realised:.0} a \
             minute ({:.1} %)",
            realised / f64::from(per_minute) * 100.0
        );
    });
}

/// A local SMTP server that accepts every message and counts them and their bytes.
struct Sink {
    port: u16,
    received: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
}

impl Sink {
    async fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicUsize::new(0));
        let bytes = Arc::new(AtomicUsize::new(0));
        let (counter, byte_counter) = (received.clone(), bytes.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (counter, byte_counter) = (counter.clone(), byte_counter.clone());
                // Replies go at once (no waiting for more to send with them).
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut lines = BufReader::new(read);
                    let _ = write.write_all(b"220 sink ready\r\n").await;
                    let mut line = String::new();
                    let mut in_data = false;
                    loop {
                        line.clear();
                        if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let reply: &[u8] = if in_data {
                            if line != ".\r\n" {
                                byte_counter.fetch_add(line.len(), Ordering::Relaxed);
                                continue;
                            }
                            in_data = false;
                            counter.fetch_add(1, Ordering::Relaxed);
                            b"250 queued\r\n"
                        } else {
                            match line.get(..4).map(str::to_ascii_uppercase).as_deref() {
                                Some("EHLO") => b"250-sink\r\n250 8BITMIME\r\n",
                                Some("DATA") => {
                                    in_data = true;
                                    b"354 go on\r\n"
                                }
                                Some("QUIT") => {
                                    let _ = write.write_all(b"221 bye\r\n").await;
                                    return;
                                }
                                _ => b"250 ok\r\n",
                            }
                        };
                        if write.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Sink {
            port,
            received,
            bytes,
        }
    }
}

fn write_directory(path: &Path, reviewers: usize) {
    let mut csv = String::from("person_id,login,email,manager,entitlement\n");
    for m in 0..reviewers {
        writeln!(csv, "m{m},manager{m},manager{m}@example.com,,").unwrap();
        for r in 0..3 {
            writeln!(
                csv,
                "p{m}-{r},user{m}-{r},user{m}-{r}@example.com,m{m},app-{}",
                (m + r) % 40
            )
            .unwrap();
        }
    }
    std::fs::write(path, csv).unwrap();
}

fn config(dir: &Path, smtp_port: u16, rate_per_minute: u32) -> Config {
    let csv = dir.join("access.csv");
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", dir.join("attest.db").display());
    config.server.bind = "127.0.0.1:0".into();
    config.server.public_url = "http://127.0.0.1:8080".into();
    config.links.signing_key = Some(SecretString::from("bench-signing-key-0123456789abcdef"));
    config.links.signing_key_file = None;
    config.evidence.signing_key_file = dir.join("evidence.key");
    config.mail.transport = MailTransport::Smtp;
    config.mail.smtp.host = "127.0.0.1".into();
    config.mail.smtp.port = smtp_port;
    config.mail.smtp.security = SmtpSecurity::None;
    config.mail.from = "attest <attest@example.com>".into();
    config.mail.batch_size = 1_000_000;
    config.mail.rate_per_minute = rate_per_minute;
    config.scheduler.enabled = false;
    config.sources.insert(
        SOURCE.into(),
        SourceConfig::Csv(CsvSourceConfig {
            path: csv,
            privileged_groups: Vec::new(),
            remediation: None,
        }),
    );
    let mut definition =
        CampaignDefinition::for_source(SOURCE, vec!["security@example.com".into()]);
    definition.schedule = "manual".into();
    config.campaigns.insert("review".into(), definition);
    config
}

/// Opens a campaign of `reviewers` digests and times the worker sending them all; returns
/// the time and the average size of a message as the sink received it.
async fn send_digests(
    dir: &Path,
    reviewers: usize,
    (rate_per_minute, concurrency): (u32, u32),
    sink: &Sink,
) -> (Duration, usize) {
    write_directory(&dir.join("access.csv"), reviewers);
    let mut config = config(dir, sink.port, rate_per_minute);
    config.mail.concurrency = concurrency;
    let clock: SharedClock = Arc::new(SystemClock);
    let app = App::build(config.clone(), clock.clone())
        .await
        .unwrap()
        .without_background_workers();
    let worker = app.outbox_worker();
    let db = app.database().clone();
    tokio::task::spawn_blocking(move || {
        attest::directory::sync_source(
            &db,
            &*clock,
            SOURCE,
            config.source(SOURCE).unwrap(),
            "bench",
        )
        .unwrap();
        attest::campaigns::start_campaign(&db, &*clock, &config, "review", true, "bench").unwrap();
    })
    .await
    .unwrap();
    let before = sink.received.load(Ordering::Relaxed);
    let bytes_before = sink.bytes.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut sent = 0;
    while sent < reviewers {
        let n = worker.drain_once().await.unwrap();
        assert!(n > 0, "the outbox ran dry after {sent} of {reviewers}");
        sent += n;
    }
    let elapsed = started.elapsed();
    assert_eq!(sink.received.load(Ordering::Relaxed) - before, reviewers);
    let bytes = sink.bytes.load(Ordering::Relaxed) - bytes_before;
    (elapsed, bytes / reviewers.max(1))
}

/// lettre alone: `count` messages of `bytes` each, one after another, to the sink.
async fn raw_lettre(count: usize, bytes: usize, sink: &Sink) -> Duration {
    let mailer: AsyncSmtpTransport<Tokio1Executor> =
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.port)
            .build();
    let body = "x".repeat(bytes);
    let started = Instant::now();
    for n in 0..count {
        let message = Message::builder()
            .from("attest <attest@example.com>".parse().unwrap())
            .to(format!("manager{n}@example.com").parse().unwrap())
            .subject("Access review")
            .body(body.clone())
            .unwrap();
        mailer.send(message).await.unwrap();
    }
    started.elapsed()
}
