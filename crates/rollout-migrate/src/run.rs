//! The runner: one phase's pending files, each under `lock_timeout` and
//! `statement_timeout`, retried with backoff when a lock is not granted in
//! time; backfills in checkpointed batches.
//!
//! A transactional file runs in one transaction with its state row, so it
//! is either applied and recorded or neither. A `no-transaction` file is
//! recorded `running` first and each statement commits alone; before a
//! `CREATE INDEX CONCURRENTLY` runs (or runs again), an invalid index of that
//! name, the leftover of a failed build, is dropped. A backfill batch
//! commits together with the cursor it reached, so a run killed at any
//! point resumes after the last batch that committed, and no row is done
//! twice.

use crate::error::MigrateError;
use crate::files::{MigrationFile, Migrations, Phase};
use crate::lint::{statements, Statement};
use crate::state::{
    check_unchanged, db_error, describe, prerequisites, status_of, Database, FileState,
};
use std::time::Duration;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

/// How a run behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Recorded with each file: the release (or image) that shipped it.
    pub release: String,
    /// How long a statement may wait for a lock before it gives up and is retried.
    pub lock_timeout: Duration,
    /// How long one statement (or one batch) may run.
    pub statement_timeout: Duration,
    /// Attempts per statement (or transaction) when a lock is not granted.
    pub attempts: u32,
    /// The first wait before a retry; it doubles each time, up to 10 s.
    pub backoff: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            release: "manual".to_string(),
            lock_timeout: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(60),
            attempts: 10,
            backoff: Duration::from_millis(200),
        }
    }
}

/// What a run says as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A file starts (or resumes).
    Started {
        /// Its version and name.
        file: String,
        /// Its phase.
        phase: Phase,
    },
    /// A lock was not granted within `lock_timeout`: waiting, then again.
    Retry {
        /// Its version and name.
        file: String,
        /// The statement's line.
        line: usize,
        /// The attempt that failed (1-based).
        attempt: u32,
        /// The wait before the next.
        wait: Duration,
    },
    /// An invalid index left by a failed concurrent build was dropped.
    DroppedInvalidIndex {
        /// Its version and name.
        file: String,
        /// The index.
        index: String,
    },
    /// A backfill batch committed.
    Batch {
        /// Its version and name.
        file: String,
        /// Rows in this batch.
        rows: u64,
        /// Rows so far (also those of an earlier, interrupted run).
        total: i64,
        /// The key reached.
        cursor: i64,
        /// Rows the file's `remaining` query counted when this run began.
        remaining_at_start: Option<i64>,
    },
    /// A file is applied.
    Applied {
        /// Its version and name.
        file: String,
        /// Lock retries it needed.
        retries: u32,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The files applied, by version and name.
    pub files: Vec<String>,
    /// Lock retries, over all files.
    pub retries: u32,
    /// Rows changed by backfills in this run.
    pub rows: i64,
}

fn label(f: &MigrationFile) -> String {
    format!("{}_{}", f.version, f.name)
}

fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

fn is_lock_timeout(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

impl RunOptions {
    fn wait(&self, attempt: u32) -> Duration {
        let base = self
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(8));
        let capped = base.min(Duration::from_secs(10));
        // A little jitter so that two waiting runs do not retry in step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        capped + Duration::from_millis(u64::from(nanos % 50))
    }

    fn set_timeouts(&self, local: bool) -> String {
        let scope = if local { "SET LOCAL" } else { "SET" };
        format!(
            "{scope} lock_timeout = '{}ms'; {scope} statement_timeout = '{}ms'",
            millis(self.lock_timeout),
            millis(self.statement_timeout)
        )
    }
}

impl Database {
    /// Applies the pending files of `phase`, in version order, under the
    /// migration lock. Before anything runs: every file is linted (errors
    /// refuse the run), every applied file is checked against its checksum,
    /// and each pending file's earlier phases must be applied. Any of those
    /// failing changes nothing.
    pub async fn apply(
        &mut self,
        migrations: &Migrations,
        phase: Phase,
        options: &RunOptions,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Applied, MigrateError> {
        migrations.check()?;
        self.lock().await?;
        let result = self
            .apply_locked(migrations, phase, options, progress)
            .await;
        // Closing the connection would release it too.
        let _ = self.unlock().await;
        result
    }

    async fn apply_locked(
        &mut self,
        migrations: &Migrations,
        phase: Phase,
        options: &RunOptions,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Applied, MigrateError> {
        let status = status_of(migrations, &self.rows().await?);
        check_unchanged(&status)?;
        let pending: Vec<_> = status
            .iter()
            .filter(|s| s.file.phase == phase && !s.is_applied())
            .collect();
        for s in &pending {
            let missing = prerequisites(&s.file, &status);
            if !missing.is_empty() {
                return Err(MigrateError::Order {
                    file: s.file.path.clone(),
                    phase,
                    missing: missing
                        .iter()
                        .map(|m| format!("{} ({})", label(&m.file), m.file.phase))
                        .collect(),
                });
            }
        }
        let mut done = Applied::default();
        if pending.is_empty() {
            return Ok(done);
        }
        self.ensure_state().await?;
        for s in pending {
            let file = &s.file;
            progress(&Event::Started {
                file: label(file),
                phase,
            });
            let outcome = if phase == Phase::Backfill {
                self.backfill(
                    file,
                    s.state == FileState::Running,
                    options,
                    progress,
                    &mut done,
                )
                .await
            } else if file.no_transaction {
                self.run_autocommit(file, options, progress).await
            } else {
                self.run_transaction(file, options, progress).await
            };
            match outcome {
                Ok(retries) => {
                    done.retries += retries;
                    done.files.push(label(file));
                    progress(&Event::Applied {
                        file: label(file),
                        retries,
                    });
                }
                Err(e) => {
                    self.record_failure(file, options, &e).await;
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    async fn record_failure(&self, file: &MigrationFile, options: &RunOptions, e: &MigrateError) {
        // Best effort: the error itself is what the caller sees. A backfill
        // keeps its row (and cursor) as `running`.
        if file.phase == Phase::Backfill {
            return;
        }
        let _ = self
            .client
            .execute(
                "INSERT INTO rollout.migrations (version, name, phase, checksum, release, status, error)
                 VALUES ($1, $2, $3, $4, $5, 'failed', $6)
                 ON CONFLICT (version) DO UPDATE SET status = 'failed', error = $6, checksum = $4",
                &[&file.version, &file.name, &file.phase.as_str(), &file.checksum, &options.release, &e.to_string()],
            )
            .await;
    }

    async fn record(
        &self,
        file: &MigrationFile,
        options: &RunOptions,
        status: &str,
    ) -> Result<(), MigrateError> {
        let finished = status == "applied";
        self.client
            .execute(
                "INSERT INTO rollout.migrations (version, name, phase, checksum, release, status, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $7 THEN now() END)
                 ON CONFLICT (version) DO UPDATE SET status = $6, checksum = $4, release = $5, error = NULL,
                     finished_at = CASE WHEN $7 THEN now() END",
                &[&file.version, &file.name, &file.phase.as_str(), &file.checksum, &options.release, &status, &finished],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    fn statement_error(
        file: &MigrationFile,
        stmt: &Statement,
        e: &tokio_postgres::Error,
        attempts: u32,
    ) -> MigrateError {
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        let message = format!("{}{tries}", describe(e));
        if is_lock_timeout(e) {
            MigrateError::LockTimeout {
                file: file.path.clone(),
                line: stmt.line,
                message,
            }
        } else {
            MigrateError::Statement {
                file: file.path.clone(),
                line: stmt.line,
                message,
            }
        }
    }

    /// The whole file and its state row in one transaction, retried whole
    /// on a lock timeout. Returns the retries.
    async fn run_transaction(
        &mut self,
        file: &MigrationFile,
        options: &RunOptions,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<u32, MigrateError> {
        let stmts = statements(&file.sql);
        let mut attempt = 1;
        loop {
            let tx = self.client.transaction().await.map_err(db_error)?;
            tx.batch_execute(&options.set_timeouts(true))
                .await
                .map_err(db_error)?;
            let mut failed = None;
            for stmt in &stmts {
                if let Err(e) = tx.batch_execute(&stmt.sql).await {
                    failed = Some((stmt, e));
                    break;
                }
            }
            match failed {
                None => {
                    tx.execute(
                        "INSERT INTO rollout.migrations (version, name, phase, checksum, release, status, finished_at)
                         VALUES ($1, $2, $3, $4, $5, 'applied', now())
                         ON CONFLICT (version) DO UPDATE SET status = 'applied', checksum = $4, release = $5,
                             error = NULL, finished_at = now()",
                        &[&file.version, &file.name, &file.phase.as_str(), &file.checksum, &options.release],
                    )
                    .await
                    .map_err(db_error)?;
                    tx.commit().await.map_err(db_error)?;
                    return Ok(attempt - 1);
                }
                Some((stmt, e)) => {
                    drop(tx); // rolls back
                    if is_lock_timeout(&e) && attempt < options.attempts {
                        let wait = options.wait(attempt);
                        progress(&Event::Retry {
                            file: label(file),
                            line: stmt.line,
                            attempt,
                            wait,
                        });
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(Self::statement_error(file, stmt, &e, attempt));
                }
            }
        }
    }

    /// Each statement on its own, retried alone on a lock timeout (the
    /// statements of such a file should be idempotent: IF NOT EXISTS).
    async fn run_autocommit(
        &mut self,
        file: &MigrationFile,
        options: &RunOptions,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<u32, MigrateError> {
        self.record(file, options, "running").await?;
        self.client
            .batch_execute(&options.set_timeouts(false))
            .await
            .map_err(db_error)?;
        let mut retries = 0;
        let result = async {
            for stmt in statements(&file.sql) {
                let mut attempt = 1;
                loop {
                    if let Some(index) = &stmt.concurrent_index {
                        self.drop_invalid_index(file, index, progress).await?;
                    }
                    match self.client.batch_execute(&stmt.sql).await {
                        Ok(()) => break,
                        Err(e) if is_lock_timeout(&e) && attempt < options.attempts => {
                            let wait = options.wait(attempt);
                            progress(&Event::Retry {
                                file: label(file),
                                line: stmt.line,
                                attempt,
                                wait,
                            });
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                            retries += 1;
                        }
                        Err(e) => return Err(Self::statement_error(file, &stmt, &e, attempt)),
                    }
                }
            }
            Ok(())
        }
        .await;
        let _ = self
            .client
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await;
        result?;
        self.record(file, options, "applied").await?;
        Ok(retries)
    }

    /// Drops `index` if it exists and is invalid (a failed concurrent build).
    async fn drop_invalid_index(
        &self,
        file: &MigrationFile,
        index: &str,
        progress: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<(), MigrateError> {
        let rows = self
            .client
            .query(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
                 WHERE c.relname = $1 AND NOT i.indisvalid AND pg_table_is_visible(c.oid)",
                &[&index],
            )
            .await
            .map_err(db_error)?;
        for row in rows {
            // The name as PostgreSQL itself quotes it (regclass output).
            let name: String = row.get(0);
            self.client
                .batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                .await
                .map_err(db_error)?;
            progress(&Event::DroppedInvalidIndex {
                file: label(file),
                index: name,
            });
        }
        Ok(())
    }

    /// The batch statement, repeated from the saved cursor until it changes
    /// no row; each batch commits with its cursor.
    async fn backfill(
        &mut self,
        file: &MigrationFile,
        resuming: bool,
        options: &RunOptions,
        progress: &mut (dyn FnMut(&Event) + Send),
        done: &mut Applied,
    ) -> Result<u32, MigrateError> {
        let batch = file.batch.unwrap_or_default();
        let stmts = statements(&file.sql);
        let Some(stmt) = stmts.iter().find(|s| {
            let head = s.sql.trim_start().to_ascii_uppercase();
            head.starts_with("UPDATE")
                || head.starts_with("DELETE")
                || head.starts_with("INSERT")
                || head.starts_with("WITH")
        }) else {
            return Err(MigrateError::file(
                &file.path,
                1,
                "no batch statement".to_string(),
            ));
        };
        if !resuming {
            self.record(file, options, "running").await?;
        }
        let (mut cursor, mut total): (i64, i64) = {
            let row = self
                .client
                .query_one(
                    "SELECT coalesce(backfill_cursor, -9223372036854775808), rows_done FROM rollout.migrations WHERE version = $1",
                    &[&file.version],
                )
                .await
                .map_err(db_error)?;
            (row.get(0), row.get(1))
        };
        let remaining_at_start = match &file.remaining {
            Some(query) => {
                let row = self
                    .client
                    .query_one(query.as_str(), &[])
                    .await
                    .map_err(|e| MigrateError::Statement {
                        file: file.path.clone(),
                        line: 1,
                        message: format!("the `remaining` query: {e}"),
                    })?;
                let n = row
                    .try_get::<_, i64>(0)
                    .map_err(|e| MigrateError::Statement {
                        file: file.path.clone(),
                        line: 1,
                        message: format!("the `remaining` query must return one bigint: {e}"),
                    })?;
                Some(n)
            }
            None => None,
        };
        let prepared = self
            .client
            .prepare_typed(&stmt.sql, &[Type::INT8, Type::INT8])
            .await
            .map_err(|e| Self::statement_error(file, stmt, &e, 1))?;
        let mut retries = 0;
        loop {
            let mut attempt = 1;
            let rows = loop {
                let tx = self.client.transaction().await.map_err(db_error)?;
                tx.batch_execute(&options.set_timeouts(true))
                    .await
                    .map_err(db_error)?;
                match tx.query(&prepared, &[&cursor, &batch.size]).await {
                    Ok(rows) => {
                        let mut reached = cursor;
                        for r in &rows {
                            let key = match r.columns().first().map(|c| c.type_().clone()) {
                                Some(Type::INT4) => r.try_get::<_, i32>(0).map(i64::from),
                                Some(Type::INT2) => r.try_get::<_, i16>(0).map(i64::from),
                                _ => r.try_get::<_, i64>(0),
                            }
                            .map_err(|e| MigrateError::Statement {
                                file: file.path.clone(),
                                line: stmt.line,
                                message: format!(
                                    "the batch statement must return an integer key first: {e}"
                                ),
                            })?;
                            reached = reached.max(key);
                        }
                        let n = rows.len() as i64;
                        tx.execute(
                            "UPDATE rollout.migrations SET backfill_cursor = $1, rows_done = rows_done + $2 WHERE version = $3",
                            &[&reached, &n, &file.version],
                        )
                        .await
                        .map_err(db_error)?;
                        tx.commit().await.map_err(db_error)?;
                        cursor = reached;
                        break rows.len();
                    }
                    Err(e) => {
                        drop(tx);
                        if is_lock_timeout(&e) && attempt < options.attempts {
                            let wait = options.wait(attempt);
                            progress(&Event::Retry {
                                file: label(file),
                                line: stmt.line,
                                attempt,
                                wait,
                            });
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                            retries += 1;
                            continue;
                        }
                        return Err(Self::statement_error(file, stmt, &e, attempt));
                    }
                }
            };
            if rows == 0 {
                break;
            }
            total += rows as i64;
            done.rows += rows as i64;
            progress(&Event::Batch {
                file: label(file),
                rows: rows as u64,
                total,
                cursor,
                remaining_at_start,
            });
            if !batch.pause.is_zero() {
                tokio::time::sleep(batch.pause).await;
            }
        }
        self.record(file, options, "applied").await?;
        Ok(retries)
    }
}
