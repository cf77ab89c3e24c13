//! `docker rollout migrate lint|status|apply DIR`: the command line of the
//! migration verbs (run by `migrate.rs`).

use super::*;

/// A parsed `docker rollout migrate` command.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrateRequest {
    /// The migration folder.
    pub dir: PathBuf,
    /// What to do.
    pub verb: MigrateVerb,
}

/// The migration verbs.
#[derive(Debug, Clone, PartialEq)]
pub enum MigrateVerb {
    /// Lint the folder; exit 2 on findings.
    Lint,
    /// Each file's phase and state in the database.
    Status {
        /// The database URL (may hold a password: never printed).
        database: String,
    },
    /// Apply the pending files of one phase.
    Apply {
        /// The database URL (may hold a password: never printed).
        database: String,
        /// The phase.
        phase: rollout_migrate::Phase,
        /// Timeouts, retries and the release recorded.
        options: rollout_migrate::RunOptions,
    },
}

/// Schema migrations in phases (expand, backfill, contract) for PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "docker rollout migrate", version, max_term_width = 100, after_help = MIGRATE_ENVIRONMENT)]
pub(super) struct MigrateCli {
    #[command(subcommand)]
    verb: MigrateCommand,
}

impl MigrateCli {
    /// The parsed verb.
    pub(super) fn into_request(self) -> MigrateRequest {
        self.verb.into_request()
    }
}

/// The end of `docker rollout migrate --help`.
const MIGRATE_ENVIRONMENT: &str = "\
Environment:
  ROLLOUT_DATABASE_URL     the database, when --database is not given (never printed)
Files: <VERSION>_<name>.sql (or V<VERSION>__<name>.sql), each with a header line
  -- rollout: phase=expand|backfill|contract   and optionally -- rollout: no-transaction";

#[derive(Debug, Subcommand)]
enum MigrateCommand {
    /// Lint every file of DIR: statements that break old code or block traffic (exit 2 on errors).
    Lint {
        /// The migration folder.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Each file of DIR: phase, applied or not, checksum, backfill progress.
    Status {
        /// The migration folder.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Apply the pending files of one phase, under the migration lock.
    Apply {
        /// The migration folder.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The phase to apply.
        #[arg(long, value_parser = PossibleValuesParser::new(["expand", "backfill", "contract"]).try_map(|s| s.parse::<rollout_migrate::Phase>()))]
        phase: rollout_migrate::Phase,
        #[command(flatten)]
        db: DatabaseArg,
        /// Recorded with each file applied.
        #[arg(long, value_name = "NAME", default_value = "manual")]
        release: String,
        /// How long a statement waits for a lock before it is retried.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "1s")]
        lock_timeout: Duration,
        /// How long one statement (or backfill batch) may run.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "60s")]
        statement_timeout: Duration,
        /// Attempts per statement when a lock is not granted.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100), default_value_t = 10)]
        attempts: u32,
    },
}

#[derive(Debug, Args)]
struct DatabaseArg {
    /// The database: postgres://user:password@host:port/name.
    #[arg(
        long,
        value_name = "URL",
        env = "ROLLOUT_DATABASE_URL",
        hide_env_values = true
    )]
    database: String,
}

impl MigrateCommand {
    fn into_request(self) -> MigrateRequest {
        match self {
            MigrateCommand::Lint { dir } => MigrateRequest {
                dir,
                verb: MigrateVerb::Lint,
            },
            MigrateCommand::Status { dir, db } => MigrateRequest {
                dir,
                verb: MigrateVerb::Status {
                    database: db.database,
                },
            },
            MigrateCommand::Apply {
                dir,
                phase,
                db,
                release,
                lock_timeout,
                statement_timeout,
                attempts,
            } => MigrateRequest {
                dir,
                verb: MigrateVerb::Apply {
                    database: db.database,
                    phase,
                    options: rollout_migrate::RunOptions {
                        release,
                        lock_timeout,
                        statement_timeout,
                        attempts,
                        ..Default::default()
                    },
                },
            },
        }
    }
}

/// The flags of a rollout's `--migrate`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Migrations")]
pub(super) struct MigrateFlags {
    /// Migrations to run around the rollout: expand before it, backfill and contract after.
    #[arg(long, value_name = "DIR", requires = "database")]
    migrate: Option<PathBuf>,
    /// The database of --migrate: postgres://user:password@host:port/name.
    #[arg(
        long,
        value_name = "URL",
        env = "ROLLOUT_DATABASE_URL",
        hide_env_values = true
    )]
    database: Option<String>,
    /// How long a migration statement of --migrate waits for a table lock before it is retried.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "1s", requires = "migrate")]
    migrate_lock_timeout: Duration,
    /// Attempts per migration statement of --migrate when a table lock is not granted.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100), default_value_t = 10, requires = "migrate")]
    migrate_attempts: u32,
}

impl MigrateFlags {
    /// What the rollout runs around itself, if `--migrate` was given.
    pub(super) fn into_around(self) -> Option<MigrateAround> {
        match (self.migrate, self.database) {
            (Some(dir), Some(database)) => Some(MigrateAround {
                dir,
                database,
                lock_timeout: self.migrate_lock_timeout,
                attempts: self.migrate_attempts,
            }),
            _ => None,
        }
    }
}

/// The migrations a rollout runs around itself.
#[derive(Clone, PartialEq, Eq)]
pub struct MigrateAround {
    /// The migration folder.
    pub dir: PathBuf,
    /// The database URL (it may hold a password: never printed).
    pub database: String,
    /// How long a statement waits for a lock before it is retried.
    pub lock_timeout: Duration,
    /// Attempts per statement when a lock is not granted.
    pub attempts: u32,
}

impl std::fmt::Debug for MigrateAround {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateAround")
            .field("dir", &self.dir)
            .field("database", &"(not shown)")
            .field("lock_timeout", &self.lock_timeout)
            .field("attempts", &self.attempts)
            .finish()
    }
}
