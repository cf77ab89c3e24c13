//! The database side: where it is (its password never shown), the state
//! table, the advisory lock, and what each file's state is.

use crate::error::MigrateError;
use crate::files::{hex, MigrationFile, Migrations, Phase};
use std::fmt;
use std::time::Duration;
use tokio_postgres::{Client, Config, NoTls};

/// The advisory lock key every run takes: "rollout" in ASCII.
pub const LOCK_KEY: i64 = 0x0072_6f6c_6c6f_7574;

/// The state table, created by the first run that applies something.
const STATE_DDL: &str = "
CREATE SCHEMA IF NOT EXISTS rollout;
CREATE TABLE IF NOT EXISTS rollout.migrations (
    version bigint PRIMARY KEY,
    name text NOT NULL,
    phase text NOT NULL CHECK (phase IN ('expand', 'backfill', 'contract')),
    checksum bytea NOT NULL,
    release text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'applied', 'failed')),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    rows_done bigint NOT NULL DEFAULT 0,
    backfill_cursor bigint,
    error text
);";

/// A database URL (`postgres://user:password@host:port/db`), parsed; shown
/// without its password.
#[derive(Clone)]
pub struct DbTarget {
    config: Config,
    shown: String,
}

impl fmt::Debug for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for DbTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl DbTarget {
    /// Parses a URL or a libpq key=value string. A bad one is a usage error
    /// that does not repeat the input (it may hold a password).
    pub fn parse(url: &str) -> Result<DbTarget, MigrateError> {
        let mut config: Config = url.parse().map_err(|e| {
            MigrateError::Usage(format!(
                "the database URL cannot be read ({e}): expected postgres://user:password@host:port/database"
            ))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("rollout-migrate");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(5));
        }
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let shown = format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or("postgres"),
            config
                .get_dbname()
                .or(config.get_user())
                .unwrap_or("postgres"),
        );
        Ok(DbTarget { config, shown })
    }

    /// Connects.
    pub async fn connect(&self) -> Result<Database, MigrateError> {
        let (client, connection) =
            self.config
                .connect(NoTls)
                .await
                .map_err(|e| MigrateError::Unreachable {
                    target: self.shown.clone(),
                    reason: with_causes(&e),
                })?;
        tokio::spawn(async move {
            // The connection ends with the client; its error shows up on the
            // next query.
            let _ = connection.await;
        });
        Ok(Database {
            client,
            target: self.clone(),
            locked: false,
        })
    }
}

/// The error and its causes ("error connecting to server: Connection refused").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(&format!(": {c}"));
        cause = c.source();
    }
    s
}

/// A connection to the database the migrations are for.
pub struct Database {
    pub(crate) client: Client,
    pub(crate) target: DbTarget,
    pub(crate) locked: bool,
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({})", self.target)
    }
}

/// Where one file stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileState {
    /// Not run yet.
    Pending,
    /// Started and not finished: a backfill under way, or a run that was killed.
    Running,
    /// Failed; runs again next time.
    Failed(String),
    /// Done.
    Applied,
    /// Applied, and the file changed since.
    Changed {
        /// The checksum recorded when it was applied.
        applied: String,
    },
}

/// One file and its state in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// The file.
    pub file: MigrationFile,
    /// Its state.
    pub state: FileState,
    /// The release that applied (or is applying) it.
    pub release: Option<String>,
    /// Rows a backfill changed so far.
    pub rows_done: i64,
    /// The last key a backfill finished.
    pub cursor: Option<i64>,
}

impl FileStatus {
    /// Applied, and unchanged.
    pub fn is_applied(&self) -> bool {
        self.state == FileState::Applied
    }
}

/// A row of the state table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub version: i64,
    pub checksum: Vec<u8>,
    pub release: String,
    pub status: String,
    pub rows_done: i64,
    pub cursor: Option<i64>,
    pub error: Option<String>,
}

pub(crate) fn db_error(e: tokio_postgres::Error) -> MigrateError {
    MigrateError::Database(describe(&e))
}

/// The server's message (with its detail) rather than the driver's
/// generic "db error".
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str(&format!("\n  detail: {d}"));
            }
            s
        }
        None => e.to_string(),
    }
}

impl Database {
    /// The database, without its password.
    pub fn target(&self) -> &DbTarget {
        &self.target
    }

    /// Takes the migration lock for this session, or says who holds it.
    pub async fn lock(&mut self) -> Result<(), MigrateError> {
        if self.locked {
            return Ok(());
        }
        let got: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(db_error)?
            .get(0);
        if !got {
            let holder = self
                .client
                .query_opt(
                    "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.client_addr::text, 'local'), a.backend_start::text
                     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND l.granted
                       AND l.classid::bigint = ($1::bigint >> 32) AND l.objid::bigint = ($1::bigint & 4294967295)
                     LIMIT 1",
                    &[&LOCK_KEY],
                )
                .await
                .map_err(db_error)?
                .map(|r| {
                    format!(
                        "backend pid {} of {:?} from {}, connected since {}",
                        r.get::<_, i32>(0),
                        r.get::<_, String>(1),
                        r.get::<_, String>(2),
                        r.get::<_, String>(3)
                    )
                })
                .unwrap_or_else(|| "a session that has just ended".to_string());
            return Err(MigrateError::Busy {
                target: self.target.to_string(),
                holder,
            });
        }
        self.locked = true;
        Ok(())
    }

    /// Releases the lock (closing the connection does too).
    pub async fn unlock(&mut self) -> Result<(), MigrateError> {
        if self.locked {
            self.client
                .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
                .await
                .map_err(db_error)?;
            self.locked = false;
        }
        Ok(())
    }

    /// Creates the state table if it is missing (under the lock).
    pub(crate) async fn ensure_state(&self) -> Result<(), MigrateError> {
        self.client.batch_execute(STATE_DDL).await.map_err(db_error)
    }

    /// The state table's rows; none when it does not exist (nothing is created).
    pub(crate) async fn rows(&self) -> Result<Vec<Row>, MigrateError> {
        let exists: bool = self
            .client
            .query_one("SELECT to_regclass('rollout.migrations') IS NOT NULL", &[])
            .await
            .map_err(db_error)?
            .get(0);
        if !exists {
            return Ok(Vec::new());
        }
        let rows = self
            .client
            .query(
                "SELECT version, checksum, release, status, rows_done, backfill_cursor, error
                 FROM rollout.migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .into_iter()
            .map(|r| Row {
                version: r.get(0),
                checksum: r.get(1),
                release: r.get(2),
                status: r.get(3),
                rows_done: r.get(4),
                cursor: r.get(5),
                error: r.get(6),
            })
            .collect())
    }

    /// Each file of the folder and its state. Reads only: a database no run
    /// has touched shows every file pending.
    pub async fn status(&self, migrations: &Migrations) -> Result<Vec<FileStatus>, MigrateError> {
        let rows = self.rows().await?;
        Ok(status_of(migrations, &rows))
    }
}

pub(crate) fn status_of(migrations: &Migrations, rows: &[Row]) -> Vec<FileStatus> {
    migrations
        .files
        .iter()
        .map(|f| {
            let row = rows.iter().find(|r| r.version == f.version);
            let state = match row {
                None => FileState::Pending,
                Some(r) if r.status != "failed" && r.checksum != f.checksum => FileState::Changed {
                    applied: hex(&r.checksum),
                },
                Some(r) => match r.status.as_str() {
                    "applied" => FileState::Applied,
                    "running" => FileState::Running,
                    _ => FileState::Failed(r.error.clone().unwrap_or_default()),
                },
            };
            FileStatus {
                file: f.clone(),
                state,
                release: row.map(|r| r.release.clone()),
                rows_done: row.map(|r| r.rows_done).unwrap_or(0),
                cursor: row.and_then(|r| r.cursor),
            }
        })
        .collect()
}

/// The first changed file, as an error.
pub(crate) fn check_unchanged(status: &[FileStatus]) -> Result<(), MigrateError> {
    for s in status {
        if let FileState::Changed { applied } = &s.state {
            return Err(MigrateError::Changed {
                file: s.file.path.clone(),
                applied: applied.clone(),
                now: s.file.checksum_hex(),
            });
        }
    }
    Ok(())
}

/// The files that must be applied before `file` can run: expand files
/// before a backfill; expand and backfill files before a contract; each
/// only of a lower version.
pub fn prerequisites<'a>(file: &MigrationFile, status: &'a [FileStatus]) -> Vec<&'a FileStatus> {
    status
        .iter()
        .filter(|s| {
            s.file.version < file.version
                && s.file.phase < file.phase
                && file.phase != Phase::Expand
        })
        .filter(|s| !s.is_applied())
        .collect()
}
