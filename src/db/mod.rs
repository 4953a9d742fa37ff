//! Database access: one connection type over SQLite and PostgreSQL (chosen from the URL
//! scheme), an r2d2 pool, SQLite pragmas, embedded migrations per backend, and the one way to
//! open a write transaction. Repository functions live next to the aggregate they serve
//! (`directory/`, `campaigns/`, ...); this module owns only connections and transactions.

pub mod schema;
pub mod stored_time;
pub mod time;

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::{Connection, MultiConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::{DatabaseConfig, redact_url_password};
use crate::error::{Error, Result};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// Arbitrary key of the PostgreSQL advisory lock held while migrating.
const MIGRATION_LOCK: i64 = 0x6174_7465_7374_0002;

#[derive(MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

/// Which database a URL names, parsed once at the edge.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for DatabaseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseTarget::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            DatabaseTarget::Postgres(url) => f.write_str(&redact_url_password(url)),
        }
    }
}

impl DatabaseTarget {
    pub fn parse(url: &str) -> Result<Self> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() || path == ":memory:" {
                return Err(Error::DatabaseUrl(
                    "database.url: sqlite:// needs a file path, e.g. sqlite://var/attest.db".into(),
                ));
            }
            Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseTarget::Postgres(url.to_string()))
        } else {
            let scheme = url.split_once("://").map_or("(none)", |(s, _)| s);
            Err(Error::DatabaseUrl(format!(
                "database.url: unsupported scheme `{scheme}`; use sqlite://PATH or postgres://USER@HOST/DB"
            )))
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            DatabaseTarget::Sqlite(_) => "sqlite",
            DatabaseTarget::Postgres(_) => "postgres",
        }
    }
}

/// Opens connections for the pool and applies the SQLite pragmas to each.
#[derive(Debug)]
pub struct ConnectionOpener {
    target: DatabaseTarget,
    busy_timeout_ms: u32,
}

impl ConnectionOpener {
    fn open(&self) -> std::result::Result<DbConnection, diesel::ConnectionError> {
        match &self.target {
            DatabaseTarget::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())?;
                // busy_timeout first: switching to WAL needs a lock that the pool's other
                // new connections may briefly hold.
                // A 32 MiB page cache (allocated as used): bulk syncs and campaign generation
                // touch far more than the default 2 MiB and would re-read pages from disk.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA cache_size = -{SQLITE_CACHE_KIB};",
                    self.busy_timeout_ms
                ))
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConnection::Sqlite(conn))
            }
            DatabaseTarget::Postgres(url) => {
                Ok(DbConnection::Postgres(PgConnection::establish(url)?))
            }
        }
    }
}

impl ManageConnection for ConnectionOpener {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> std::result::Result<DbConnection, r2d2::Error> {
        self.open().map_err(r2d2::Error::ConnectionError)
    }

    fn is_valid(&self, conn: &mut DbConnection) -> std::result::Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1")
            .map_err(r2d2::Error::QueryError)
    }

    /// A connection that unwound mid-transaction (a panic) or whose transaction state broke
    /// would hand the next user an open transaction, or SQLite's write lock; it is dropped.
    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        std::thread::panicking() || diesel::r2d2::R2D2Connection::is_broken(conn)
    }
}

pub type Pool = r2d2::Pool<ConnectionOpener>;
pub type PooledConnection = r2d2::PooledConnection<ConnectionOpener>;

/// The pool plus what it points at; cheap to clone.
#[derive(Clone)]
pub struct Database {
    pub pool: Pool,
    pub target: DatabaseTarget,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("target", &self.target)
            .finish()
    }
}

impl Database {
    /// Connects (creating the SQLite file and its folder when needed) and checks one connection.
    pub fn connect(config: &DatabaseConfig) -> Result<Database> {
        let target = DatabaseTarget::parse(&config.url)?;
        if let DatabaseTarget::Sqlite(path) = &target
            && let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::Io(format!(
                    "cannot create database folder {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let opener = ConnectionOpener {
            target: target.clone(),
            busy_timeout_ms: config.busy_timeout_ms,
        };
        // Fail fast with the real reason instead of r2d2's generic timeout.
        opener
            .open()
            .map_err(|e| Error::Database(format!("cannot connect to {target:?}: {e}")))?;
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(Duration::from_secs(10))
            .build(opener)
            .map_err(|e| Error::Database(format!("cannot open pool for {target:?}: {e}")))?;
        Ok(Database { pool, target })
    }

    pub fn conn(&self) -> Result<PooledConnection> {
        Ok(self.pool.get()?)
    }

    /// Applies pending migrations; returns the versions applied.
    pub fn migrate(&self) -> Result<Vec<String>> {
        let mut conn = self.conn()?;
        let applied = match &mut *conn {
            DbConnection::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>()),
            DbConnection::Postgres(c) => {
                // Instances starting together on one database migrate one at a time.
                c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
                let applied = c
                    .run_pending_migrations(POSTGRES_MIGRATIONS)
                    .map(|versions| versions.iter().map(ToString::to_string).collect::<Vec<_>>());
                c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
                applied
            }
        }
        .map_err(|e| Error::Database(format!("migration failed: {e}")))?;
        Ok(applied)
    }

    /// Runs blocking database work off the async executor.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConnection) -> Result<T> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await
        .map_err(|e| Error::Internal(format!("database task failed: {e}")))?
    }
}

/// Runs `work` in a write transaction. On SQLite the transaction starts `IMMEDIATE`, taking
/// the write lock up front so that two writers wait for each other (busy_timeout) instead of
/// failing when a read lock cannot be upgraded.
pub fn write_tx<T, F>(conn: &mut DbConnection, work: F) -> Result<T>
where
    F: FnOnce(&mut DbConnection) -> Result<T>,
{
    match conn {
        DbConnection::Postgres(_) => conn.transaction(work),
        DbConnection::Sqlite(sqlite) => {
            AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?;
            match work(conn) {
                Ok(value) => {
                    <DbConnection as Connection>::TransactionManager::commit_transaction(conn)?;
                    Ok(value)
                }
                Err(err) => {
                    // The original error matters more than a failed rollback.
                    let _ = <DbConnection as Connection>::TransactionManager::rollback_transaction(
                        conn,
                    );
                    Err(err)
                }
            }
        }
    }
}

/// PostgreSQL: this transaction's commit need not wait for its WAL to reach disk. Only for
/// work that is worthless after a crash anyway (a sync's intermediate batches: a run that
/// does not finish is swept and undone); the commit that makes a run current stays durable.
pub fn relax_commit_durability(conn: &mut DbConnection) -> Result<()> {
    if let DbConnection::Postgres(pg) = conn {
        pg.batch_execute("SET LOCAL synchronous_commit TO OFF")?;
    }
    Ok(())
}

/// Bulk INSERT of many rows: PostgreSQL's binary `COPY FROM`, SQLite's multi-row INSERTs of
/// `$per_statement` rows (keep rows x columns under SQLite's 32,766 bind parameters). The row
/// type needs `#[diesel(treat_none_as_default_value = false)]` (COPY sends every column).
#[macro_export]
macro_rules! bulk_insert {
    ($conn:expr, $table:expr, $rows:expr, $per_statement:expr) => {{
        let rows = $rows;
        match $conn {
            $crate::db::DbConnection::Postgres(c) if !rows.is_empty() => diesel::copy_from($table)
                .from_insertable(rows)
                .execute(c)
                .map(|_| ()),
            $crate::db::DbConnection::Postgres(_) => Ok(()),
            $crate::db::DbConnection::Sqlite(c) => {
                let mut done = Ok(());
                for chunk in rows.chunks($per_statement) {
                    if let Err(e) = diesel::insert_into($table).values(chunk).execute(c) {
                        done = Err(e);
                        break;
                    }
                }
                done
            }
        }
    }};
}

/// Multi-row INSERT on whichever backend `conn` is. Diesel's generic multi-connection cannot
/// express batch inserts (SQLite and PostgreSQL build them differently), so each arm runs the
/// same statement on the concrete connection.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgres(c) => {
                diesel::insert_into($table).values($rows).execute(c)
            }
            $crate::db::DbConnection::Sqlite(c) => {
                diesel::insert_into($table).values($rows).execute(c)
            }
        }
    };
}

/// Each SQLite connection's page cache, in KiB.
pub const SQLITE_CACHE_KIB: i64 = 32 * 1024;

/// Runs `work` with this SQLite connection's page cache (and so the memory its sorts may
/// hold before spilling to temporary files) at `kib`, then puts it back; PostgreSQL is left
/// as it is.
pub fn with_sqlite_cache<T>(
    conn: &mut DbConnection,
    kib: i64,
    work: impl FnOnce(&mut DbConnection) -> Result<T>,
) -> Result<T> {
    let DbConnection::Sqlite(sqlite) = conn else {
        return work(conn);
    };
    sqlite.batch_execute(&format!("PRAGMA cache_size = -{kib};"))?;
    let done = work(conn);
    if let DbConnection::Sqlite(sqlite) = conn {
        sqlite.batch_execute(&format!("PRAGMA cache_size = -{SQLITE_CACHE_KIB};"))?;
    }
    done
}

pub fn is_postgres(conn: &DbConnection) -> bool {
    matches!(conn, DbConnection::Postgres(_))
}

/// A new row id: a UUID whose leading bits are the time (version 7), so that rows made
/// together sit together in the primary-key index (bulk inserts append instead of landing at
/// random places); the rest is random. Ids are never secrets.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_scheme_is_refused_with_the_key() {
        let err = DatabaseTarget::parse("mysql://root@localhost/attest").unwrap_err();
        assert!(err.to_string().contains("database.url"), "{err}");
        assert!(err.to_string().contains("mysql"), "{err}");
    }

    #[test]
    fn a_smaller_cache_holds_for_the_work_and_is_put_back() {
        use diesel::sql_types::BigInt;
        #[derive(diesel::QueryableByName)]
        struct CacheSize {
            #[diesel(sql_type = BigInt)]
            cache_size: i64,
        }
        let dir = tempfile::tempdir().unwrap();
        let db = Database::connect(&DatabaseConfig {
            url: format!("sqlite://{}", dir.path().join("t.db").display()),
            ..DatabaseConfig::default()
        })
        .unwrap();
        let mut conn = db.conn().unwrap();
        let size = |conn: &mut DbConnection| match conn {
            DbConnection::Sqlite(sqlite) => {
                diesel::RunQueryDsl::get_result::<CacheSize>(
                    diesel::sql_query("PRAGMA cache_size"),
                    sqlite,
                )
                .unwrap()
                .cache_size
            }
            DbConnection::Postgres(_) => unreachable!(),
        };
        let inside = with_sqlite_cache(&mut conn, 1024, |conn| Ok(size(conn))).unwrap();
        assert_eq!(inside, -1024);
        let failed: Result<()> = with_sqlite_cache(&mut conn, 1024, |_| {
            Err(Error::Internal("the work failed".into()))
        });
        assert!(failed.is_err());
        assert_eq!(size(&mut conn), -SQLITE_CACHE_KIB);
    }

    #[test]
    fn postgres_password_is_not_shown() {
        let target = DatabaseTarget::parse("postgres://u:hunter2@db/attest").unwrap();
        assert!(!format!("{target:?}").contains("hunter2"));
    }
}
