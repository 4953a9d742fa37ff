//! Proof that a campaign's generation is still alive. Generation commits in chunks (so that
//! SQLite's write lock is never held for long) and the campaign stays `generating` until the
//! last one; the guard says whether the process generating it is still there. A rerun that
//! finds a `generating` campaign whose guard it can take knows its generator died, removes
//! what it left, and generates the campaign again. On PostgreSQL the guard is a session
//! advisory lock, released by the server when the session ends; on SQLite an exclusive lock
//! on a file next to the database, released by the operating system when the process ends.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::PathBuf;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool};

use crate::db::{Database, DatabaseTarget, DbConnection};
use crate::error::{Error, Result};

/// Held while a campaign generates.
pub(crate) enum GenerationGuard {
    Postgres { key: i64 },
    Sqlite { file: File, path: PathBuf },
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

impl GenerationGuard {
    /// Takes the guard of `campaign_id` on `conn` (PostgreSQL: the session that generates),
    /// or `None` when a live process holds it.
    pub(crate) fn try_take(
        db: &Database,
        conn: &mut DbConnection,
        campaign_id: &str,
    ) -> Result<Option<GenerationGuard>> {
        match (&db.target, conn) {
            (DatabaseTarget::Postgres(_), DbConnection::Postgres(pg)) => {
                let key = advisory_key(campaign_id);
                let taken = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
                    .bind::<BigInt, _>(key)
                    .get_result::<Locked>(pg)?
                    .locked;
                Ok(taken.then_some(GenerationGuard::Postgres { key }))
            }
            (DatabaseTarget::Sqlite(db_path), _) => {
                let mut name = db_path.file_name().unwrap_or_default().to_os_string();
                name.push(format!(".generating-{campaign_id}.lock"));
                let path = db_path.with_file_name(name);
                let file = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .map_err(|e| Error::Io(format!("cannot open {}: {e}", path.display())))?;
                match file.try_lock() {
                    Ok(()) => Ok(Some(GenerationGuard::Sqlite { file, path })),
                    Err(TryLockError::WouldBlock) => Ok(None),
                    Err(TryLockError::Error(e)) => {
                        Err(Error::Io(format!("cannot lock {}: {e}", path.display())))
                    }
                }
            }
            _ => Err(Error::Internal("connection of another backend".into())),
        }
    }

    /// Lets go of the guard (on PostgreSQL, on the session that took it).
    pub(crate) fn release(self, conn: &mut DbConnection) -> Result<()> {
        match (self, conn) {
            (GenerationGuard::Postgres { key }, DbConnection::Postgres(pg)) => {
                diesel::sql_query("SELECT pg_advisory_unlock($1) AS locked")
                    .bind::<BigInt, _>(key)
                    .get_result::<Locked>(pg)?;
                Ok(())
            }
            (GenerationGuard::Sqlite { file, path }, _) => {
                // Removed while still locked, so that nobody locks a file on its way out.
                let _ = std::fs::remove_file(&path);
                drop(file);
                Ok(())
            }
            _ => Err(Error::Internal("connection of another backend".into())),
        }
    }
}

/// A stable 64-bit key per campaign for PostgreSQL's advisory locks.
fn advisory_key(campaign_id: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("attest:generating:{campaign_id}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}
