//! `docker rollout promote SERVICE [--full]`: a paused canary on.
//!
//! A canary paused at a step held until promoted (or by an inconclusive
//! analysis) goes on when the rollout runs again: `promote` checks that
//! there is one, paused and run by no process, and runs the ordinary
//! rollout path, which takes it to its next step (exit 0 when that
//! completes it, 4 when it holds again). With `--full` it first marks the
//! journal (the canary's state `promote: "full"`, under the service's
//! lock), and the canary goes straight to its last step.
//!
//! Refused before anything changes: no rollout of the service, one not
//! paused or not a canary (exit 2), one run by a live process (exit 7).

use crate::cli::VerbRequest;
use crate::fail::Fail;
use crate::verbs::scene;
use rollout_core::exit;
use rollout_core::journal::{Journal, Liveness, Phase};
use rollout_docker::DockerJournal;
use std::io::Write;

/// Checks that a paused canary of the service is there to promote and,
/// with `full`, marks its journal; the rollout path does the rest.
pub async fn prepare(req: &VerbRequest, full: bool) -> Result<(), Fail> {
    let scene = scene(req).await?;
    let service = &scene.service;
    let journal = DockerJournal::new(scene.engine.clone());
    let here = rollout_strategies::lock_holder();
    if let Some(held) = journal.holder(service).await? {
        if rollout_docker::lock::judge(&held.holder, &here) != Liveness::Dead {
            return Err(Fail {
                code: exit::BUSY,
                message: format!(
                    "the rollout of {service} is running ({} since {}): promote acts on a paused canary; nothing was changed",
                    held.holder, held.since
                ),
            });
        }
    }
    let Some(mut record) = journal.load(service).await? else {
        return Err(Fail::bad_input(format!(
            "nothing to promote: no rollout of {service} is paused\nhint: `docker rollout status {}` shows where it stands",
            service.service
        )));
    };
    if record.strategy != "canary" || record.phase != Phase::Paused {
        return Err(Fail::bad_input(format!(
            "nothing to promote: the {} rollout of {service} to {} is {:?}, not a paused canary\nhint: `docker rollout {}` resumes it, `docker rollout abort {}` rolls it back",
            record.strategy, record.to.image, record.phase, service.service, service.service
        )));
    }
    if full {
        journal.lock(service, &here).await?;
        if !record.state.is_object() {
            record.state = serde_json::json!({});
        }
        record.state[rollout_strategies::PROMOTE] = serde_json::json!("full");
        let saved = journal.save(&record).await;
        journal.flush().await;
        journal.unlock(service).await?;
        saved?;
    }
    let _ = writeln!(
        std::io::stderr(),
        "promoting the canary of {service} to {}{}",
        record.to.image,
        if full {
            ": straight to 100 %"
        } else {
            ": its next step"
        }
    );
    Ok(())
}
