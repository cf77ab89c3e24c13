//! `docker rollout migrate lint|status|apply|contract`: the migration verbs,
//! wired to rollout-migrate. Findings and status are data (stdout); progress
//! and errors go to stderr. Exit codes are the crate's
//! (`MigrateError::exit_code`): 2 bad input or lint findings, 6 the database
//! cannot be reached, 7 busy. `contract` (and `apply --phase contract
//! --service SERVICE`) runs the contract files only when the gate opens
//! ([`crate::contract`]); refused, it exits 7 (the containers' state holds
//! it back, not the input; nothing changed) naming each container of an
//! older revision. `apply --phase contract` without a service is bad input
//! unless `--force` skips the gate (and says so).

use crate::cli::{ContractScope, DockerGlobals, MigrateRequest, MigrateVerb};
use crate::contract;
use crate::fail::Fail;
use rollout_core::exit;
use rollout_migrate::gate::ContractGate;
use rollout_migrate::{
    lint, DbTarget, Event, FileState, FileStatus, MigrateError, Migrations, Phase, RunOptions,
    Severity,
};
use std::io::Write;
use std::time::Instant;

/// Runs one verb; returns the exit code.
pub fn run(req: MigrateRequest) -> i32 {
    match verb(req) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            e.code
        }
    }
}

fn verb(req: MigrateRequest) -> Result<i32, Fail> {
    let migrations = Migrations::load(&req.dir)?;
    match req.verb {
        MigrateVerb::Lint => Ok(lint_verb(&migrations)),
        MigrateVerb::Status { database } => {
            let target = DbTarget::parse(&database)?;
            block_on(async {
                let db = target.connect().await?;
                let status = db.status(&migrations).await?;
                print_status(&status);
                Ok(changed_is_bad_input(&status)?)
            })
        }
        MigrateVerb::Apply {
            database,
            phase,
            options,
            scope,
            force,
        } => {
            // Bad input is found before the database is asked.
            migrations.check()?;
            let target = DbTarget::parse(&database)?;
            if phase == Phase::Contract && force {
                let _ = writeln!(
                    std::io::stderr(),
                    "warning: --force: contract runs without its gate: no container was checked for an older revision"
                );
            } else if phase == Phase::Contract {
                if scope.services.is_empty() {
                    return Err(Fail::bad_input(format!(
                        "--phase contract is gated: name the service that runs the new revision (--service SERVICE), or run `docker rollout migrate contract {} SERVICE`; --force skips the gate",
                        req.dir.display()
                    )));
                }
                return block_on(contract(
                    &migrations,
                    &target,
                    &options,
                    &scope,
                    &req.docker,
                ));
            }
            block_on(async { apply(&migrations, &target, phase, &options).await })
        }
        MigrateVerb::Contract {
            database,
            options,
            scope,
        } => {
            migrations.check()?;
            let target = DbTarget::parse(&database)?;
            block_on(contract(
                &migrations,
                &target,
                &options,
                &scope,
                &req.docker,
            ))
        }
    }
}

/// Applies the pending files of `phase`, one line per event on stderr.
async fn apply(
    migrations: &Migrations,
    target: &DbTarget,
    phase: Phase,
    options: &RunOptions,
) -> Result<i32, Fail> {
    let mut db = target.connect().await?;
    let started = Instant::now();
    let mut rows_now = 0u64;
    let mut progress = |e: &Event| report(e, options, started, &mut rows_now);
    let done = db.apply(migrations, phase, options, &mut progress).await?;
    let _ = writeln!(
        std::io::stderr(),
        "{phase}: {} file(s) applied to {target} in {:.1}s ({} lock retries, {} rows backfilled)",
        done.files.len(),
        started.elapsed().as_secs_f64(),
        done.retries,
        done.rows
    );
    Ok(exit::SUCCESS)
}

/// `docker rollout migrate contract`: the gate, then the contract files.
/// Refused (exit 7, nothing changed) while a consumer runs an older image.
async fn contract(
    migrations: &Migrations,
    target: &DbTarget,
    options: &RunOptions,
    scope: &ContractScope,
    docker: &DockerGlobals,
) -> Result<i32, Fail> {
    let engine = crate::live::connect(docker).await?;
    let names = contract::project_names(scope);
    let running = contract::running(&engine, &names.distinct()).await?;
    let gate_target = contract::target_of(scope, &running)?;
    let status = target.connect().await?.status(migrations).await?;
    match contract::decide(&status, &running, &gate_target) {
        ContractGate::Nothing => {
            let _ = writeln!(std::io::stderr(), "contract: no contract file is pending");
            Ok(exit::SUCCESS)
        }
        ContractGate::Open(files) => {
            let _ = writeln!(
                std::io::stderr(),
                "contract: every consumer runs {} ({}): {} may run",
                gate_target.image,
                short(&gate_target.image_id),
                files.join(", ")
            );
            apply(migrations, target, Phase::Contract, options).await
        }
        ContractGate::Refused(reasons) => Err(contract::refused(&reasons, &migrations.dir)),
    }
}

fn short(image_id: &str) -> String {
    image_id
        .trim_start_matches("sha256:")
        .chars()
        .take(12)
        .collect()
}

fn block_on(fut: impl std::future::Future<Output = Result<i32, Fail>>) -> Result<i32, Fail> {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => Err(Fail::unexpected(format!("cannot start the runtime: {e}"))),
    }
}

fn lint_verb(migrations: &Migrations) -> i32 {
    let findings = lint::lint_all(&migrations.files);
    let mut out = std::io::stdout().lock();
    for f in &findings {
        let _ = writeln!(out, "{f}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .count();
    let _ = writeln!(
        std::io::stderr(),
        "{} file(s), {errors} error(s), {} warning(s)",
        migrations.files.len(),
        findings.len() - errors
    );
    if errors > 0 {
        exit::BAD_INPUT
    } else {
        exit::SUCCESS
    }
}

fn print_status(status: &[FileStatus]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<16} {:<28} {:<9} {:<8} {:<12} {:<12} BACKFILL",
        "VERSION", "NAME", "PHASE", "STATE", "RELEASE", "SHA256"
    );
    for s in status {
        let state = match &s.state {
            FileState::Pending => "pending",
            FileState::Running => "running",
            FileState::Failed(_) => "failed",
            FileState::Applied => "applied",
            FileState::Changed { .. } => "CHANGED",
        };
        let backfill = match (s.file.phase, s.cursor) {
            (rollout_migrate::Phase::Backfill, Some(c)) => {
                format!("{} rows, cursor {c}", s.rows_done)
            }
            (rollout_migrate::Phase::Backfill, None) => "not started".to_string(),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<16} {:<28} {:<9} {:<8} {:<12} {:<12} {backfill}",
            s.file.version,
            s.file.name,
            s.file.phase,
            state,
            s.release.as_deref().unwrap_or("-"),
            &s.file.checksum_hex()[..12],
        );
    }
}

/// Exit 2 when a file changed after it was applied (status shows it first).
fn changed_is_bad_input(status: &[FileStatus]) -> Result<i32, MigrateError> {
    for s in status {
        if let FileState::Changed { applied } = &s.state {
            return Err(MigrateError::Changed {
                file: s.file.path.clone(),
                applied: applied.clone(),
                now: s.file.checksum_hex(),
            });
        }
    }
    Ok(exit::SUCCESS)
}

/// One line on stderr per event; `rows_now` counts this run's backfilled
/// rows, for the rate.
pub(crate) fn report(e: &Event, options: &RunOptions, started: Instant, rows_now: &mut u64) {
    let line = match e {
        Event::Started { file, phase } => format!("{phase}: {file}"),
        Event::Retry {
            file,
            line,
            attempt,
            wait,
        } => format!(
            "  {file}:{line}: lock not granted within {}ms (attempt {attempt} of {}): again in {}ms",
            options.lock_timeout.as_millis(),
            options.attempts,
            wait.as_millis()
        ),
        Event::DroppedInvalidIndex { file, index } => {
            format!("  {file}: dropped the invalid index {index} of a failed concurrent build")
        }
        Event::Batch {
            file,
            rows,
            total,
            cursor,
            remaining_at_start,
        } => {
            *rows_now += rows;
            let p = rollout_migrate::progress::progress(
                *rows_now,
                started.elapsed(),
                *remaining_at_start,
            );
            let left = match (p.remaining, p.eta) {
                (Some(r), Some(eta)) => format!(", {r} left, ETA {:.1}s", eta.as_secs_f64()),
                (Some(r), None) => format!(", {r} left"),
                _ => String::new(),
            };
            format!(
                "  {file}: +{rows} rows ({total} so far, cursor {cursor}, {:.0} rows/s{left})",
                p.rows_per_second
            )
        }
        Event::Applied { file, retries } => format!("  {file}: applied ({retries} lock retries)"),
    };
    let _ = writeln!(std::io::stderr(), "{line}");
}
