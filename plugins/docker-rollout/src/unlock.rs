//! `docker rollout unlock SERVICE`: show who holds a service's lock and
//! release it.
//!
//! A rollout killed on this machine leaves its lock behind, and the next
//! rollout here takes it over by itself (its holder is proven gone). A lock
//! left by a rollout that ran elsewhere (another CI runner, a laptop) is
//! never proven anything, so a person releases it here: the holder is
//! shown, the question asked (unless `--force`), and the lock removed with
//! the other locks the same holder left (a proxy's, a blue-green pair's). A holder proven alive on this
//! machine is never released (exit 7, busy, nothing changed).

use crate::cli::RolloutRequest;
use crate::fail::Fail;
use crate::live;
use rollout_core::journal::Liveness;
use rollout_core::{exit, ServiceRef};
use rollout_docker::lock::{judge, release_locks_of};
use rollout_docker::DockerJournal;
use std::io::{BufRead, IsTerminal, Write};

/// Runs `docker rollout unlock`; `force` skips the question.
pub async fn unlock(req: &RolloutRequest, force: bool) -> Result<i32, Fail> {
    let names = live::project_names(req);
    let mut projects: Vec<String> = [names.v2.clone(), names.v1.clone()]
        .into_iter()
        .flatten()
        .collect();
    projects.dedup();
    if projects.is_empty() {
        return Err(Fail::bad_input(
            "no Compose project here: cannot tell whose lock to release\nhint: run it where you run the rollout, or give -f / -p",
        ));
    }
    let engine = live::connect(&req.docker).await?;
    let journal = DockerJournal::new(engine.clone());
    let mut out = std::io::stderr();
    for project in &projects {
        let service = ServiceRef::new(project, &req.service);
        let Some(held) = journal.holder(&service).await? else {
            continue;
        };
        let _ = writeln!(
            out,
            "{service} is locked by {} since {}",
            held.holder, held.since
        );
        let here = rollout_strategies::lock_holder();
        match judge(&held.holder, &here) {
            Liveness::Alive => {
                return Err(Fail {
                    code: exit::BUSY,
                    message: format!(
                        "the holder of {service}'s lock runs on this machine: not released\nhint: wait for that rollout, or interrupt it (Ctrl-C rolls it back)"
                    ),
                });
            }
            Liveness::Dead => {
                let _ = writeln!(out, "its process is gone from this machine");
            }
            Liveness::Unknown => {
                let _ = writeln!(
                    out,
                    "whether it still runs cannot be told from here (another machine, another boot, or an older record)"
                );
            }
        }
        if !force && !confirmed(&service)? {
            let _ = writeln!(out, "left as it is");
            return Ok(exit::SUCCESS);
        }
        let released = journal.break_lock(&service, &held.holder).await?;
        if !released {
            return Err(Fail {
                code: exit::BUSY,
                message: format!(
                    "the lock of {service} changed hands meanwhile: not released\nhint: run unlock again to see the new holder"
                ),
            });
        }
        let proxies = release_locks_of(&engine, project, &held.holder)
            .await
            .map_err(Fail::from)?;
        let _ = writeln!(out, "released the lock of {service}");
        for name in proxies {
            let _ = writeln!(out, "released {name}, another lock of the same holder");
        }
        let _ = writeln!(
            out,
            "hint: the next `docker rollout {}` finishes what the holder started",
            req.service
        );
        return Ok(exit::SUCCESS);
    }
    let _ = writeln!(out, "{} is not locked", req.service);
    Ok(exit::SUCCESS)
}

/// Asks on the terminal; without one, the answer is no and `--force` is
/// what to give.
fn confirmed(service: &ServiceRef) -> Result<bool, Fail> {
    if !std::io::stdin().is_terminal() {
        return Err(Fail::bad_input(format!(
            "not releasing the lock of {service} without a question answered\nhint: add --force to release it without asking"
        )));
    }
    let _ = write!(std::io::stderr(), "release it? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Fail::unexpected(e.to_string()))?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
