//! `docker rollout SERVICE --migrate DIR --database URL`: the migration
//! phases around a rollout, in the order that keeps both revisions working.
//!
//! - **expand** runs before the strategy starts anything: the new revision
//!   needs the new schema, and the old one ignores what expand adds. A
//!   failing expand stops the rollout before any container changes (its
//!   exit code is rollout-migrate's: 2 bad input or lint errors, 6 the
//!   database cannot be reached, 7 another deploy holds the migration lock
//!   or a table lock was not granted through every attempt; the
//!   `on-failure` hook and the webhook are told). Its statements wait for
//!   a lock `--migrate-lock-timeout` per attempt, `--migrate-attempts` times.
//! - **backfill** runs once the rollout completed: the new revision serves
//!   everything and writes the new columns itself, so the rows the backfill
//!   fills are not written again the old way.
//! - **contract** runs only when rollout-migrate's gate opens: every earlier
//!   file applied and no consumer running an older image (a consumer is a
//!   running container of the service, of its other blue-green colour, a
//!   colour left running for a switch back being one, or of another
//!   service of the project started from the same image repository, such
//!   as a worker; one-off `docker compose run` containers are not). Refused,
//!   it is deferred with the reasons: the rollout still succeeded, and
//!   the next `--migrate` rollout (or `docker rollout migrate contract DIR
//!   SERVICE` once the old containers are gone) runs it.
//!
//! Each phase is also in the rollout's event stream (`--output json`):
//! `migration-started` with the files pending, `migration-progress` after
//! each backfill batch (rows, rows/s, and the ETA when the file counts
//! what is left), `migration-finished` with files, rows and lock retries.
//!
//! A rollout that did not complete (rolled back, paused, interrupted) runs
//! neither backfill nor contract; expand stays, as it is backward
//! compatible by its phase's rules (the linter holds files to them).

use crate::cli::MigrateAround;
use crate::fail::Fail;
use crate::output::Renderer;
use rollout_docker::Engine;
use rollout_migrate::gate::{ContractGate, Target};
use rollout_migrate::{
    progress, DbTarget, Event, FileState, MigrateError, Migrations, Phase, RunOptions,
};
use std::io::Write;
use std::time::Instant;

/// The migrations of one rollout, loaded and checked before the engine is
/// asked to change anything.
pub struct Around {
    migrations: Migrations,
    target: DbTarget,
    options: RunOptions,
}

impl Around {
    /// Reads and checks the folder and the URL (bad input: exit 2, nothing
    /// changed). `release` is recorded with each file applied.
    pub fn load(spec: &MigrateAround, release: &str) -> Result<Self, Fail> {
        let migrations = Migrations::load(&spec.dir).map_err(fail)?;
        migrations.check().map_err(fail)?;
        let target = DbTarget::parse(&spec.database).map_err(fail)?;
        Ok(Self {
            migrations,
            target,
            options: RunOptions {
                release: release.to_string(),
                lock_timeout: spec.lock_timeout,
                attempts: spec.attempts,
                ..Default::default()
            },
        })
    }

    /// Applies the pending expand files.
    pub async fn expand(&self, renderer: &mut Renderer) -> Result<(), Fail> {
        self.apply(Phase::Expand, renderer).await.map(|_| ())
    }

    /// After a completed rollout to `target`: backfill, then contract if
    /// the gate opens, judged on the running containers of `projects` (the
    /// consumers: the service, the other colour of a blue-green pair, the
    /// other services of the same image repository; one-off containers
    /// excepted). Returns what to tell the operator; an error is the
    /// database's or the engine's (the rollout itself is done).
    pub async fn after(
        &self,
        engine: &Engine,
        projects: &[&str],
        target: &Target,
        renderer: &mut Renderer,
    ) -> Result<Vec<String>, Fail> {
        let mut notes = Vec::new();
        self.apply(Phase::Backfill, renderer).await?;
        let running = crate::contract::running(engine, projects).await?;
        let status = {
            let db = self.target.connect().await.map_err(fail)?;
            db.status(&self.migrations).await.map_err(fail)?
        };
        match crate::contract::decide(&status, &running, target) {
            ContractGate::Nothing => {}
            ContractGate::Open(files) => {
                say(&format!("migrate: contract may run ({})", files.join(", ")));
                self.apply(Phase::Contract, renderer).await?;
            }
            ContractGate::Refused(reasons) => {
                let reasons: Vec<String> = reasons.iter().map(|r| format!("  {r}")).collect();
                notes.push(format!(
                    "migrate: contract deferred, the old revision may still use what it removes:\n{}\nhint: it runs with the next --migrate rollout once they are gone, or by `docker rollout migrate contract {} {}`",
                    reasons.join("\n"),
                    self.migrations.dir.display(),
                    target.services.first().map_or("SERVICE", String::as_str)
                ));
            }
        }
        Ok(notes)
    }

    async fn apply(&self, phase: Phase, renderer: &mut Renderer) -> Result<(), Fail> {
        let started = Instant::now();
        let mut db = self.target.connect().await.map_err(fail)?;
        let pending = db
            .status(&self.migrations)
            .await
            .map_err(fail)?
            .iter()
            .filter(|s| s.file.phase == phase && s.state != FileState::Applied)
            .count();
        renderer.event(&rollout_core::Event::MigrationStarted {
            phase: phase.to_string(),
            pending,
        });
        // The runner's callback must be Send and the renderer is not: its
        // events come through a channel, shown while the phase runs.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut rows_now = 0;
        // The same lines as `docker rollout migrate apply`, marked as ours.
        let mut progress = |e: &Event| {
            if let Event::Started { .. } = e {
                let _ = write!(std::io::stderr(), "migrate: ");
            }
            crate::migrate::report(e, &self.options, started, &mut rows_now);
            if let Event::Batch {
                file,
                total,
                remaining_at_start,
                ..
            } = e
            {
                let p = progress::progress(rows_now, started.elapsed(), *remaining_at_start);
                let _ = tx.send(rollout_core::Event::MigrationProgress {
                    file: file.clone(),
                    rows: *total,
                    rows_per_second: (p.rows_per_second * 10.0).round() / 10.0,
                    remaining: p.remaining,
                    eta_secs: p.eta.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
                });
            }
        };
        let run = db.apply(&self.migrations, phase, &self.options, &mut progress);
        tokio::pin!(run);
        let done = loop {
            tokio::select! {
                done = &mut run => break done,
                Some(e) = rx.recv() => renderer.event(&e),
            }
        };
        while let Ok(e) = rx.try_recv() {
            renderer.event(&e);
        }
        let done = done.map_err(fail)?;
        renderer.event(&rollout_core::Event::MigrationFinished {
            phase: phase.to_string(),
            applied: done.files.len(),
            rows: done.rows,
            retries: done.retries,
            secs: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        });
        if !done.files.is_empty() {
            say(&format!(
                "migrate: {phase}: {} file(s) applied to {} in {:.1}s ({} lock retries, {} rows backfilled)",
                done.files.len(),
                self.target,
                started.elapsed().as_secs_f64(),
                done.retries,
                done.rows
            ));
        }
        Ok(())
    }
}

fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// rollout-migrate's error with its exit code.
fn fail(e: MigrateError) -> Fail {
    Fail {
        code: e.exit_code(),
        message: e.to_string(),
    }
}
