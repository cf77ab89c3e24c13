//! The crate's one error type, with the exit code each case means.

use crate::lint::Finding;
use rollout_core::exit;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What went wrong, with the file and line, the database (its password
/// never shown) or the lock holder a person needs.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The folder cannot be read.
    #[error("cannot read the migration folder {}: {reason}", dir.display())]
    Folder {
        /// The folder.
        dir: PathBuf,
        /// The system's words.
        reason: String,
    },
    /// A file is not a migration this tool can run (name, header, encoding).
    #[error("{}:{line}: {message}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// 1-based.
        line: usize,
        /// What is wrong and what to write instead.
        message: String,
    },
    /// The linter found statements that would break old code or block traffic.
    #[error("{}", findings_text(.0))]
    Lint(Vec<Finding>),
    /// A file changed after it was applied.
    #[error("{}:1: the file changed after it was applied (applied sha256 {applied}, now {now})\nhint: never edit an applied migration: restore it, and put the change in a new file", file.display())]
    Changed {
        /// The file.
        file: PathBuf,
        /// The checksum recorded when it was applied.
        applied: String,
        /// The checksum of the file now.
        now: String,
    },
    /// A file cannot run yet: files before it are pending.
    #[error("{}:1: this {phase} file cannot run before {}\nhint: apply the earlier phases first (expand, then backfill, then contract)", file.display(), missing.join(", "))]
    Order {
        /// The file.
        file: PathBuf,
        /// Its phase.
        phase: crate::Phase,
        /// The pending earlier files.
        missing: Vec<String>,
    },
    /// A bad database URL or setting.
    #[error("{0}")]
    Usage(String),
    /// The database cannot be reached.
    #[error("cannot reach the database {target}: {reason}")]
    Unreachable {
        /// The database, without its password.
        target: String,
        /// The driver's words.
        reason: String,
    },
    /// Another run holds the migration lock.
    #[error("another migration run holds the lock of {target} ({holder})\nhint: wait for it to finish; the lock is released when its connection closes")]
    Busy {
        /// The database, without its password.
        target: String,
        /// Who holds it, as the database knows.
        holder: String,
    },
    /// A statement failed.
    #[error("{}:{line}: {message}", file.display())]
    Statement {
        /// The file.
        file: PathBuf,
        /// The statement's first line.
        line: usize,
        /// The database's words (and how many attempts were made).
        message: String,
    },
    /// A statement waited for a lock through every attempt (another
    /// transaction held it): busy, as a held migration lock is; the file is
    /// not applied and runs again with the next run.
    #[error("{}:{line}: {message}\nhint: another transaction holds a lock this statement needs (pg_stat_activity shows it): run again once it ends, or allow a longer lock timeout or more attempts", file.display())]
    LockTimeout {
        /// The file.
        file: PathBuf,
        /// The statement's first line.
        line: usize,
        /// The database's words and how many attempts were made.
        message: String,
    },
    /// The database failed outside a migration file (the state table, the lock).
    #[error("database error: {0}")]
    Database(String),
}

fn findings_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for (i, f) in findings.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let _ = write!(s, "{f}");
    }
    s
}

impl MigrateError {
    /// A [`MigrateError::File`].
    pub fn file(path: &Path, line: usize, message: String) -> Self {
        MigrateError::File {
            file: path.to_path_buf(),
            line,
            message,
        }
    }

    /// The exit code of DESIGN.md: 2 bad input (nothing changed), 6 the
    /// database cannot be reached, 7 busy (the migration lock, or a table
    /// lock not granted through every attempt), 1 a statement or the
    /// database failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            MigrateError::Folder { .. }
            | MigrateError::File { .. }
            | MigrateError::Lint(_)
            | MigrateError::Changed { .. }
            | MigrateError::Order { .. }
            | MigrateError::Usage(_) => exit::BAD_INPUT,
            MigrateError::Unreachable { .. } => exit::UNREACHABLE,
            MigrateError::Busy { .. } | MigrateError::LockTimeout { .. } => exit::BUSY,
            MigrateError::Statement { .. } | MigrateError::Database(_) => exit::UNEXPECTED,
        }
    }
}
