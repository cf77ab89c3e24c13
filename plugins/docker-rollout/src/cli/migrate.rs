//! `docker rollout migrate lint|status|apply|contract DIR`: the command line of the
//! migration verbs (run by `migrate.rs`).

use super::*;

/// A parsed `docker rollout migrate` command.
#[derive(Debug, Clone, PartialEq)]
pub struct MigrateRequest {
    /// The migration folder.
    pub dir: PathBuf,
    /// What to do.
    pub verb: MigrateVerb,
    /// Where the engine is (the contract gate lists the project's containers).
    pub docker: DockerGlobals,
}

/// Whose containers the contract gate looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractScope {
    /// The services that run the revision the contract belongs to (the
    /// first names it: the image its newest container runs).
    pub services: Vec<String>,
    /// The Compose project they belong to.
    pub compose: ComposeArgs,
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
        /// For the contract phase: the gate's services (none: refused
        /// unless `force`).
        scope: ContractScope,
        /// Contract without the gate (said on stderr).
        force: bool,
    },
    /// Apply the pending contract files once the gate opens.
    Contract {
        /// The database URL (may hold a password: never printed).
        database: String,
        /// Timeouts, retries and the release recorded.
        options: rollout_migrate::RunOptions,
        /// The gate's services and project.
        scope: ContractScope,
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
Contract runs only when no container of the project that uses the database runs an
older image than SERVICE (its other colour, services of the same image repository;
one-off containers excepted): refused otherwise with exit 7, nothing changed.
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
        #[command(flatten)]
        run: RunArgs,
        /// With --phase contract: a service that runs the new revision; the contract gate
        /// checks the project's containers against it (repeatable).
        #[arg(long = "service", value_name = "SERVICE")]
        services: Vec<String>,
        /// With --phase contract: skip the gate (containers of an older revision are not checked).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        project: super::ProjectFlags,
    },
    /// Apply the pending contract files of DIR, once no container of an older revision of
    /// SERVICE's consumers runs (exit 7 and nothing changed otherwise).
    Contract {
        /// The migration folder.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The services that run the new revision (the first one's image is the target).
        #[arg(value_name = "SERVICE", required = true)]
        services: Vec<String>,
        #[command(flatten)]
        db: DatabaseArg,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        project: super::ProjectFlags,
    },
}

/// How the files of a phase are run.
#[derive(Debug, Args)]
struct RunArgs {
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
}

impl RunArgs {
    fn options(self) -> rollout_migrate::RunOptions {
        rollout_migrate::RunOptions {
            release: self.release,
            lock_timeout: self.lock_timeout,
            statement_timeout: self.statement_timeout,
            attempts: self.attempts,
            ..Default::default()
        }
    }
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
        let (dir, verb) = match self {
            MigrateCommand::Lint { dir } => (dir, MigrateVerb::Lint),
            MigrateCommand::Status { dir, db } => (
                dir,
                MigrateVerb::Status {
                    database: db.database,
                },
            ),
            MigrateCommand::Apply {
                dir,
                phase,
                db,
                run,
                services,
                force,
                project,
            } => (
                dir,
                MigrateVerb::Apply {
                    database: db.database,
                    phase,
                    options: run.options(),
                    scope: ContractScope {
                        services,
                        compose: project.into(),
                    },
                    force,
                },
            ),
            MigrateCommand::Contract {
                dir,
                services,
                db,
                run,
                project,
            } => (
                dir,
                MigrateVerb::Contract {
                    database: db.database,
                    options: run.options(),
                    scope: ContractScope {
                        services,
                        compose: project.into(),
                    },
                },
            ),
        };
        MigrateRequest {
            dir,
            verb,
            docker: DockerGlobals::default(),
        }
    }
}

impl From<ProjectFlags> for ComposeArgs {
    fn from(p: ProjectFlags) -> Self {
        ComposeArgs {
            files: p.files,
            project_name: p.project_name,
            project_directory: p.project_directory,
            env_files: p.env_files,
            profiles: p.profiles,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn migrate(s: &str, as_plugin: bool) -> MigrateRequest {
        let argv = std::iter::once("/usr/lib/docker/cli-plugins/docker-rollout")
            .chain(s.split_whitespace())
            .map(OsString::from)
            .collect();
        match parse(argv, as_plugin).unwrap() {
            Invocation::Migrate(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn contract_takes_the_services_and_their_project() {
        // contract: the services whose consumers the gate checks, in their project.
        let r = migrate(
            "-H unix:///x.sock rollout migrate contract m green blue -p shop --database postgres://h/d --release v2",
            true,
        );
        assert_eq!(r.docker.hosts, ["unix:///x.sock"]);
        let MigrateVerb::Contract {
            database,
            options,
            scope,
        } = r.verb
        else {
            panic!("{:?}", r.verb)
        };
        assert_eq!(database, "postgres://h/d");
        assert_eq!(options.release, "v2");
        assert_eq!(scope.services, ["green", "blue"]);
        assert_eq!(scope.compose.project_name.as_deref(), Some("shop"));
        let r = migrate(
            "migrate apply m --phase contract --service green --force --database postgres://h/d",
            false,
        );
        assert!(
            matches!(r.verb, MigrateVerb::Apply { ref scope, force: true, .. } if scope.services == ["green"]),
            "{:?}",
            r.verb
        );
    }
}
