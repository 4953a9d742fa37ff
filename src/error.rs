//! One error type for the whole library, with stable machine-readable codes. The web layer
//! maps it to HTTP in one place; messages never carry secrets or internal details that a
//! caller could abuse (database errors are summarised, not echoed).

use std::fmt;

/// A configuration problem tied to the key that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(key: &str, message: impl Into<String>) -> Self {
        ConfigProblem {
            key: key.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {}", join_problems(.0))]
    Config(Vec<ConfigProblem>),
    #[error("{0}")]
    DatabaseUrl(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("source `{source_name}` failed: {message}")]
    Source {
        source_name: String,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("this link is invalid or has expired")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("the form has expired or was not sent from this site; reload the page and try again")]
    Csrf,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    /// A decision that must give a reason came without one.
    #[error("{0}")]
    ReasonRequired(String),
    /// The item was decided by someone else after the decider's page showed it.
    #[error("{0}")]
    Stale(String),
    #[error("mail delivery failed: {0}")]
    Mail(String),
    #[error("template error: {0}")]
    Template(String),
    #[error("{0}")]
    Io(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn join_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// Stable code for API clients, logs and exit messages.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(_) => "config_invalid",
            Error::DatabaseUrl(_) => "database_url_unsupported",
            Error::Database(_) => "database_error",
            Error::Source { .. } => "source_failed",
            Error::NotFound(_) => "not_found",
            Error::Unauthorized => "unauthorized",
            Error::Forbidden(_) => "forbidden",
            Error::Csrf => "csrf_failed",
            Error::Conflict(_) => "conflict",
            Error::BadRequest(_) => "bad_request",
            Error::ReasonRequired(_) => "reason_required",
            Error::Stale(_) => "stale",
            Error::Mail(_) => "mail_failed",
            Error::Template(_) => "template_error",
            Error::Io(_) => "io_error",
            Error::Internal(_) => "internal_error",
        }
    }

    pub fn source(name: &str, message: impl fmt::Display) -> Self {
        Error::Source {
            source_name: name.to_string(),
            message: message.to_string(),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error as Diesel};
        match e {
            // Someone else created the same thing first (e.g. the same campaign period).
            Diesel::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Error::Conflict(format!(
                    "already exists ({})",
                    info.constraint_name()
                        .or(info.table_name())
                        .unwrap_or("unique key")
                ))
            }
            other => Error::Database(other.to_string()),
        }
    }
}

impl From<diesel::r2d2::PoolError> for Error {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        Error::Database(format!("no database connection available: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

impl From<minijinja::Error> for Error {
    fn from(e: minijinja::Error) -> Self {
        Error::Template(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("json: {e}"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
