//! The mailer hands one rendered message to SMTP (lettre, rustls) or writes it as an `.eml`
//! file (the demo and development). A file appears whole or not at all (written under a
//! temporary name, then renamed), so the demo mailbox never shows half a message. It reports
//! whether a failure is worth retrying; it knows nothing about the outbox or campaigns.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::config::{MailConfig, MailTransport, SmtpSecurity, resolve_secret};
use crate::error::{Error, Result};
use crate::notify::templates::RenderedMail;

/// Why a send failed, and whether trying again later could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    pub permanent: bool,
    pub message: String,
}

#[derive(Clone)]
pub enum Mailer {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// The folder `.eml` files are written to.
    File(PathBuf),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp(_) => f.write_str("Mailer::Smtp"),
            Mailer::File(_) => f.write_str("Mailer::File"),
        }
    }
}

impl Mailer {
    pub fn from_config(config: &MailConfig) -> Result<Mailer> {
        match config.transport {
            MailTransport::File => {
                std::fs::create_dir_all(&config.file_dir).map_err(|e| {
                    Error::Io(format!(
                        "mail.file_dir: cannot create {}: {e}",
                        config.file_dir.display()
                    ))
                })?;
                Ok(Mailer::File(config.file_dir.clone()))
            }
            MailTransport::Smtp => {
                let smtp = &config.smtp;
                let builder = match smtp.security {
                    SmtpSecurity::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                    }
                    SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host),
                    SmtpSecurity::None => Ok(
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
                    ),
                }
                .map_err(|e| Error::Mail(format!("mail.smtp.host: {e}")))?;
                // As many pooled connections as sends in flight: none is opened per message.
                let pool =
                    lettre::transport::smtp::PoolConfig::new().max_size(config.concurrency.max(1));
                let mut builder = builder
                    .port(smtp.port)
                    .timeout(Some(Duration::from_secs(smtp.timeout_seconds)))
                    .pool_config(pool);
                let password = resolve_secret(
                    "mail.smtp.password",
                    smtp.password.as_ref(),
                    smtp.password_file.as_deref(),
                )
                .map_err(|p| Error::Config(vec![p]))?;
                if let Some(username) = &smtp.username {
                    let password = password
                        .map(|p| p.expose_secret().to_string())
                        .unwrap_or_default();
                    builder = builder.credentials(Credentials::new(username.clone(), password));
                }
                Ok(Mailer::Smtp(builder.build()))
            }
        }
    }

    /// Sends one message; returns the transport's id for it (SMTP: our Message-ID).
    pub async fn send(
        &self,
        from: &Mailbox,
        to: &Mailbox,
        message_id: &str,
        mail: &RenderedMail,
    ) -> std::result::Result<String, SendFailure> {
        let message = Message::builder()
            .from(from.clone())
            .to(to.clone())
            .subject(mail.subject.clone())
            .message_id(Some(message_id.to_string()))
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| SendFailure {
                permanent: true,
                message: format!("cannot build message: {e}"),
            })?;
        match self {
            Mailer::Smtp(transport) => match transport.send(message).await {
                Ok(_) => Ok(message_id.to_string()),
                Err(e) => Err(SendFailure {
                    permanent: e.is_permanent(),
                    message: e.to_string(),
                }),
            },
            Mailer::File(dir) => {
                let (dir, bytes) = (dir.clone(), message.formatted());
                tokio::task::spawn_blocking(move || write_mail_file(&dir, &bytes))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|written| written.map_err(|e| e.to_string()))
                    .map_err(|message| SendFailure {
                        permanent: false,
                        message: format!("cannot write mail file: {message}"),
                    })
            }
        }
    }
}

/// Writes one message as `<id>.eml` in `dir`, atomically; returns the id.
fn write_mail_file(dir: &Path, bytes: &[u8]) -> std::io::Result<String> {
    let id = crate::db::new_id();
    let partial = dir.join(format!(".{id}.eml.partial"));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, dir.join(format!("{id}.eml")))?;
    Ok(id)
}
