#![deny(missing_docs)]
//! Schema migrations that keep old and new code running: plain `.sql` files
//! in three phases, a linter that knows which statements break old code or
//! block traffic, and a runner that applies them without a long lock.
//!
//! A release that changes the schema is split by phase, each file saying
//! its own in a header ([`files`]):
//!
//! - **expand** runs before the new revision starts: additive changes only,
//!   so the old revision keeps working;
//! - **backfill** runs once the new revision serves everything: rows
//!   changed in bounded, checkpointed batches that survive a kill;
//! - **contract** runs only when no container of an older revision
//!   remains ([`gate`]): drops, NOT NULL, the breaking half.
//!
//! This crate knows the database and the files, not the deploy: it never
//! talks to Docker. The rollout tells it which revisions still run
//! ([`gate::contract_gate`]) and asks it to run a phase
//! ([`Database::apply`]); `docker rollout migrate` exposes the same calls
//! by hand. State lives in the database (`rollout.migrations`): what was
//! applied, in which phase and release, its checksum (a changed file is an
//! error), and the cursor of a backfill. One run at a time holds a
//! PostgreSQL advisory lock.

pub mod error;
pub mod files;
pub mod gate;
pub mod lint;
pub mod progress;
mod run;
pub mod state;

pub use error::MigrateError;
pub use files::{Batch, MigrationFile, Migrations, Phase};
pub use lint::{Finding, Severity};
pub use run::{Applied, Event, RunOptions};
pub use state::{Database, DbTarget, FileState, FileStatus};
