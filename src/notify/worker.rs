//! The outbox worker: claims due mail, mints each reviewer's link, renders the digest (or the
//! notice to IT of accesses to remove by hand) and sends it, then records the outcome. Database work runs on blocking threads; only the send
//! itself is async. Runs inside `attest serve` (and `attest demo`) until shutdown.

use std::sync::Arc;

use chrono::Duration;
use lettre::message::Mailbox;
use tokio::sync::{Notify, watch};

use crate::campaigns::model::{ITEM_PENDING, campaign, items_of_reviewer, reviewer};
use crate::clock::SharedClock;
use crate::config::{Config, MailConfig};
use crate::db::time::from_db;
use crate::db::{Database, write_tx};
use crate::error::{Error, Result};
use crate::notify::digest::digest_context;
use crate::notify::links::{LinkSigner, issue_review_link, lock_reviewer};
use crate::notify::mailer::Mailer;
use crate::notify::outbox::{
    self, DIGEST_KINDS, KIND_REMEDIATION, KIND_REVIEW_REQUEST, OutboxMessage, SentLink,
};
use crate::notify::pacing::Pacer;
use crate::notify::remediation_notice::remediation_notice;
use crate::notify::templates::{MailTemplates, RenderedMail, single_line};

/// A drain stops claiming after this long (it still finishes what it claimed).
const MAX_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// A mail ready to send, and the review link it carries (none in a notice to IT).
struct PreparedDigest {
    to: Mailbox,
    mail: RenderedMail,
    link_jti_sha256: Option<String>,
}

#[derive(Clone)]
pub struct OutboxWorker {
    db: Database,
    clock: SharedClock,
    signer: Arc<LinkSigner>,
    templates: Arc<MailTemplates>,
    mailer: Mailer,
    mail: MailConfig,
    from: Mailbox,
    public_url: String,
    grace_days: u32,
    revoke_superseded: bool,
    pacer: Pacer,
    /// The worker's share of the database pool: sends in flight wait on the mail server,
    /// not on the database, and leave connections for the web pages.
    db_slots: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for OutboxWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("mailer", &self.mailer)
            .finish_non_exhaustive()
    }
}

impl OutboxWorker {
    pub fn new(
        config: &Config,
        db: Database,
        clock: SharedClock,
        signer: Arc<LinkSigner>,
        templates: Arc<MailTemplates>,
    ) -> Result<OutboxWorker> {
        let from: Mailbox = config.mail.from.parse().map_err(|e| {
            Error::Config(vec![crate::error::ConfigProblem::new(
                "mail.from",
                format!("{e}"),
            )])
        })?;
        Ok(OutboxWorker {
            mailer: Mailer::from_config(&config.mail)?,
            db,
            clock,
            signer,
            templates,
            mail: config.mail.clone(),
            from,
            public_url: config.server.public_url.trim_end_matches('/').to_string(),
            grace_days: config.links.grace_days,
            revoke_superseded: config.links.revoke_superseded,
            pacer: Pacer::per_minute(config.mail.rate_per_minute),
            db_slots: Arc::new(tokio::sync::Semaphore::new(
                (config.database.pool_size as usize / 2).max(1),
            )),
        })
    }

    /// Database work of the worker, within its share of the pool.
    async fn db_run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut crate::db::DbConnection) -> Result<T> + Send + 'static,
    {
        let _slot = self
            .db_slots
            .acquire()
            .await
            .map_err(|e| Error::Internal(format!("database slots closed: {e}")))?;
        self.db.run(work).await
    }

    /// Runs until `shutdown` turns true; wakes on `wake` or every poll interval.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>, wake: Arc<Notify>) {
        let interval = std::time::Duration::from_millis(self.mail.poll_interval_ms.max(10));
        loop {
            match self.drain_once().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(messages = n, "outbox batch processed"),
                Err(e) => tracing::error!(error = %e, code = e.code(), "outbox worker error"),
            }
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
                _ = wake.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Attempts up to `batch_size` due messages, `mail.concurrency` of them at a time;
    /// returns how many were attempted. Each message is claimed just before it is sent, so a
    /// lease never has to cover a whole batch. An SMTP round trip waits on the network, not
    /// on this machine: several in flight hide that wait.
    pub async fn drain_once(&self) -> Result<usize> {
        let lease = Duration::seconds(i64::from(self.mail.lease_seconds));
        let (limit, concurrency) = (
            self.mail.batch_size.max(1) as usize,
            self.mail.concurrency.max(1) as usize,
        );
        let started = std::time::Instant::now();
        let mut in_flight = tokio::task::JoinSet::new();
        let (mut claimed, mut exhausted, mut first_error) = (0, false, None);
        loop {
            while !exhausted && in_flight.len() < concurrency && claimed < limit {
                // A long drain (a slow pace) stops claiming, so that shutdown is heard.
                if claimed > 0 && started.elapsed() > MAX_DRAIN {
                    exhausted = true;
                    break;
                }
                // Within mail.rate_per_minute: wait for the slot before claiming, so that a
                // claim never waits out its lease.
                self.pacer.wait().await;
                let now = self.clock.now();
                match self
                    .db_run(move |conn| outbox::claim_due(conn, now, lease, 1))
                    .await
                {
                    Ok(next) => match next.into_iter().next() {
                        Some(message) => {
                            claimed += 1;
                            let worker = self.clone();
                            in_flight.spawn(async move { worker.deliver(message).await });
                        }
                        None => exhausted = true,
                    },
                    Err(e) => {
                        exhausted = true;
                        first_error.get_or_insert(e);
                    }
                }
            }
            // Every send ends before this returns, even after an error: none is cut off.
            match in_flight.join_next().await {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    exhausted = true;
                    first_error.get_or_insert(e);
                }
                Some(Err(e)) => {
                    exhausted = true;
                    first_error.get_or_insert(Error::Internal(format!("a send panicked: {e}")));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }

    async fn deliver(&self, message: OutboxMessage) -> Result<()> {
        let prepared = match self.prepare(&message).await {
            Ok(Some(prepared)) => Ok(prepared),
            Ok(None) => {
                tracing::info!(outbox = %message.id, kind = %message.kind, "nothing left to review; not sent");
                return Ok(());
            }
            // A closed campaign, a bad address or a broken template will not heal by waiting;
            // a busy database or pool will.
            Err(e) => Err((
                matches!(
                    e,
                    Error::Conflict(_)
                        | Error::BadRequest(_)
                        | Error::Template(_)
                        | Error::NotFound(_)
                ),
                e.to_string(),
            )),
        };
        let outcome = match prepared {
            Ok(digest) => {
                let message_id = format!("<{}@attest>", message.id);
                self.mailer
                    .send(&self.from, &digest.to, &message_id, &digest.mail)
                    .await
                    .map(|sent_id| (sent_id, digest.link_jti_sha256))
                    .map_err(|f| (f.permanent, f.message))
            }
            Err(failure) => Err(failure),
        };
        let now = self.clock.now();
        let (max_attempts, base) = (self.mail.max_attempts, self.mail.retry_base_seconds);
        match outcome {
            Ok((message_id, jti_sha256)) => {
                tracing::info!(outbox = %message.id, kind = %message.kind, "mail sent");
                let id = message.id.clone();
                let revoke_superseded = self.revoke_superseded;
                let recorded = self
                    .db_run(move |conn| {
                        let link = jti_sha256.as_deref().map(|jti_sha256| SentLink {
                            jti_sha256,
                            revoke_superseded,
                        });
                        outbox::mark_sent(conn, now, &message, &message_id, link)
                    })
                    .await?;
                if !recorded {
                    tracing::warn!(outbox = %id, "claim expired before the send was recorded");
                }
                Ok(())
            }
            Err((permanent, error)) => {
                // The server's wording may quote the recipient's address: only its first part
                // (the kind of failure and status code) goes to the log; the row keeps it all.
                let summary = error.split(':').next().unwrap_or_default();
                tracing::warn!(outbox = %message.id, permanent, error = summary, "mail not sent");
                self.db_run(move |conn| {
                    outbox::mark_failed(conn, now, &message, &error, permanent, max_attempts, base)
                })
                .await?;
                Ok(())
            }
        }
    }

    /// Mints the link and renders the digest for one queued mail; `None` when a reminder or
    /// escalation notice found nothing left to review (it is then cancelled, on the record).
    async fn prepare(&self, message: &OutboxMessage) -> Result<Option<PreparedDigest>> {
        if message.kind == KIND_REMEDIATION {
            return self.prepare_remediation_notice(message).await;
        }
        if !DIGEST_KINDS.contains(&message.kind.as_str()) {
            return Err(Error::Internal(format!(
                "unknown mail kind {}",
                message.kind
            )));
        }
        let (Some(campaign_id), Some(reviewer_id)) =
            (message.campaign_id.clone(), message.reviewer_id.clone())
        else {
            return Err(Error::Internal(
                "review request without campaign or reviewer".into(),
            ));
        };
        let signer = self.signer.clone();
        let now = self.clock.now();
        let grace = Duration::days(i64::from(self.grace_days));
        let base = self.public_url.clone();
        let claim = message.clone();
        let kind = message.kind.clone();
        let prepared = self
            .db_run(move |conn| {
                write_tx(conn, |conn| {
                    // An admin may have cancelled this mail (and revoked the reviewer's links)
                    // since it was claimed: then no new link may be minted for it.
                    lock_reviewer(conn, &reviewer_id, false)?;
                    if !outbox::is_still_claimed(conn, &claim, now)? {
                        return Err(Error::Conflict(
                            "cancelled or re-claimed before delivery".into(),
                        ));
                    }
                    let campaign = campaign(conn, &campaign_id)?;
                    if !campaign.is_open() {
                        return Err(Error::Conflict("campaign closed before delivery".into()));
                    }
                    let reviewer = reviewer(conn, &reviewer_id)?;
                    let items = items_of_reviewer(conn, &reviewer_id)?;
                    // A reminder or escalation notice with nothing left to decide is not sent.
                    if kind != KIND_REVIEW_REQUEST && items.iter().all(|i| i.state != ITEM_PENDING)
                    {
                        outbox::cancel_claimed(conn, now, &claim, "nothing left to review")?;
                        return Ok(None);
                    }
                    let expires_at = from_db(campaign.due_at) + grace;
                    let link = issue_review_link(
                        conn,
                        &signer,
                        now,
                        expires_at,
                        &campaign_id,
                        &reviewer_id,
                        "worker:outbox",
                    )?;
                    let review_url = format!("{base}/r/{}", link.token);
                    let context = digest_context(conn, &campaign, &reviewer, items, &review_url)?;
                    Ok(Some((
                        context,
                        (reviewer.display_name, reviewer.email),
                        link.jti_sha256,
                    )))
                })
            })
            .await?;
        let Some((context, to, link_jti_sha256)) = prepared else {
            return Ok(None);
        };
        let mailbox = Mailbox::new(
            Some(single_line(&to.0)),
            to.1.parse()
                .map_err(|e| Error::BadRequest(format!("reviewer address is not valid: {e}")))?,
        );
        let mail = self.templates.render(&message.kind, &context)?;
        Ok(Some(PreparedDigest {
            to: mailbox,
            mail,
            link_jti_sha256: Some(link_jti_sha256),
        }))
    }

    /// Renders the notice to IT of a campaign's manual remediation tasks; `None` (and the
    /// mail cancelled) when IT has closed them all meanwhile.
    async fn prepare_remediation_notice(
        &self,
        message: &OutboxMessage,
    ) -> Result<Option<PreparedDigest>> {
        let Some(campaign_id) = message.campaign_id.clone() else {
            return Err(Error::Internal(
                "remediation notice without campaign".into(),
            ));
        };
        let claim = message.clone();
        let now = self.clock.now();
        let notice = self
            .db_run(move |conn| {
                write_tx(conn, |conn| {
                    if !outbox::is_still_claimed(conn, &claim, now)? {
                        return Err(Error::Conflict("re-claimed before delivery".into()));
                    }
                    let notice = remediation_notice(conn, &campaign_id)?;
                    if notice.is_none() {
                        outbox::cancel_claimed(conn, now, &claim, "no task left for IT")?;
                    }
                    Ok(notice)
                })
            })
            .await?;
        let Some(notice) = notice else {
            return Ok(None);
        };
        let to = Mailbox::new(
            None,
            message.recipient.parse().map_err(|e| {
                Error::BadRequest(format!("remediation.mail_to is not a valid address: {e}"))
            })?,
        );
        let mail = self.templates.render(KIND_REMEDIATION, &notice)?;
        Ok(Some(PreparedDigest {
            to,
            mail,
            link_jti_sha256: None,
        }))
    }
}
