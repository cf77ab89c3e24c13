//! `docker rollout promote SERVICE [--full]`: a canary on.
//!
//! A canary paused at a step held until promoted (or by an inconclusive
//! analysis) goes on when the rollout runs again: `promote` checks that
//! there is one, paused and run by no process, and runs the ordinary
//! rollout path, which takes it to its next step (exit 0 when that
//! completes it, 4 when it holds again). With `--full` it first marks the
//! journal (the canary's state `promote: "full"`, under the service's
//! lock), and the canary goes straight to its last step.
//!
//! A canary running in another process is told instead, through a request
//! kept with the engine (`steer.rs`): the hold of its step ends now (after
//! one more verdict of the analysis), or with `--full` it goes straight to
//! its last step; `promote` exits 0 once the journal says it moved on.
//!
//! Refused before anything changes (exit 2): no rollout of the service,
//! one not a canary, one paused otherwise or cut (no process runs it and it
//! is not paused at a step), one rolling back.

use crate::cli::VerbRequest;
use crate::fail::Fail;
use crate::verbs::scene;
use rollout_core::journal::{Journal, Liveness, Phase};
use rollout_docker::DockerJournal;
use std::io::Write;
use std::time::Duration;

/// A canary running in another process is told, and the exit code is
/// `Some`; otherwise checks that a paused canary of the service is there to
/// promote and, with `full`, marks its journal (`None`: the rollout path
/// does the rest).
pub async fn prepare(
    req: &VerbRequest,
    full: bool,
    timeout: Duration,
) -> Result<Option<i32>, Fail> {
    let scene = scene(req).await?;
    let service = &scene.service;
    let journal = DockerJournal::new(scene.engine.clone());
    let here = rollout_strategies::lock_holder();
    let live = match journal.holder(service).await? {
        Some(held) => rollout_docker::lock::judge(&held.holder, &here) != Liveness::Dead,
        None => false,
    };
    let Some(mut record) = journal.load(service).await? else {
        return Err(Fail::bad_input(format!(
            "nothing to promote: no rollout of {service} is paused\nhint: `docker rollout status {}` shows where it stands",
            service.service
        )));
    };
    if live {
        return crate::steer::promote_running(req, &scene, record, full, timeout)
            .await
            .map(Some);
    }
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
    Ok(None)
}
