//! `docker rollout undo SERVICE`: back to the revision that served before
//! the service's last completed rollout.
//!
//! The way back is that rollout's `from` in the history kept with the
//! engine (rollout-docker's `history`). Its image and configuration come
//! together from the spec the backend saved when its last instance was
//! stopped (or from a container of it that still runs): `undo` runs the
//! ordinary rollout path with that revision as the target instead of the
//! one the Compose file names, so the strategy, the health gate, the drain
//! and the journal are the same as for any rollout. The Compose file is
//! not changed: a later `docker rollout` (or `docker compose up -d`)
//! returns to what it names.
//!
//! Refused before anything changes: with nothing to undo (no completed
//! rollout in the history, or one that started the service from nothing,
//! or a way back whose spec is gone) exit 2; while a rollout of the service
//! runs, exit 7; while one is paused or was cut, exit 2 (abort or finish it
//! first).

use crate::cli::VerbRequest;
use crate::fail::Fail;
use crate::live;
use crate::verbs::scene;
use rollout_core::journal::{HistoryEntry, Journal, Liveness};
use rollout_core::strategy::TrafficLayout;
use rollout_core::{exit, Outcome, Revision};
use rollout_docker::{history, DockerBackend, DockerJournal};

/// The revision `undo` goes back to, from the history (newest first): the
/// `from` of the newest completed entry.
pub fn way_back(service: &str, entries: &[HistoryEntry]) -> Result<Revision, String> {
    let Some(last) = entries
        .iter()
        .find(|e| matches!(e.outcome, Outcome::Completed))
    else {
        return Err(format!(
            "nothing to undo: no completed rollout of {service} in its history\nhint: `docker rollout history {service}` shows what ran"
        ));
    };
    last.from.clone().ok_or_else(|| {
        format!(
            "nothing to undo: the last completed rollout of {service} started it from no running revision"
        )
    })
}

/// Checks that `undo` may run and returns the revision it goes back to;
/// nothing is changed.
pub async fn target(req: &VerbRequest) -> Result<Revision, Fail> {
    let scene = scene(req).await?;
    let service = &scene.service;
    if let TrafficLayout::Colours { other, .. } = &scene.prepared.settings.layout {
        return Err(Fail::bad_input(format!(
            "{service} is one colour of a blue-green pair: there is nothing to undo in place\nhint: `docker rollout {}` switches the traffic back to the other colour",
            other.service
        )));
    }
    let journal = DockerJournal::new(scene.engine.clone());
    if let Some(held) = journal.holder(service).await? {
        let here = rollout_strategies::lock_holder();
        if rollout_docker::lock::judge(&held.holder, &here) != Liveness::Dead {
            return Err(Fail {
                code: exit::BUSY,
                message: format!(
                    "a rollout of {service} is under way ({} since {}): nothing was changed\nhint: wait for it to end, or `docker rollout abort {}`",
                    held.holder, held.since, service.service
                ),
            });
        }
    }
    if let Some(record) = journal.load(service).await? {
        return Err(Fail::bad_input(format!(
            "a rollout of {service} to {} is paused or was cut ({:?}): nothing was changed\nhint: `docker rollout abort {}` rolls it back, `docker rollout {}` finishes it",
            record.to.image,
            record.phase,
            service.service,
            service.service
        )));
    }
    let entries = history::list(&scene.engine, service)
        .await
        .map_err(Fail::from)?;
    let back = way_back(&service.service, &entries).map_err(Fail::bad_input)?;
    let backend = DockerBackend::new(
        scene.engine.clone(),
        live::compose_cli(&scene.prepared, &req.rollout),
    );
    if !backend.can_launch(service, &back.id).await? {
        return Err(Fail::bad_input(format!(
            "nothing to undo: the spec of {} ({}) that {service} ran before is gone (only the newest way back is kept)",
            back.image,
            back.id.chars().take(12).collect::<String>()
        )));
    }
    Ok(back)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::ServiceRef;

    fn entry(from: Option<&str>, to: &str, outcome: Outcome) -> HistoryEntry {
        HistoryEntry {
            service: ServiceRef::new("shop", "app"),
            strategy: "rolling".into(),
            started: 0,
            finished: 1,
            from: from.map(|f| Revision::new(f, format!("app:{f}"))),
            to: Some(Revision::new(to, format!("app:{to}"))),
            outcome,
            steps: 1,
            launched: 1,
            removed: 1,
            exit_code: 0,
            undo: false,
        }
    }

    #[test]
    fn the_way_back_is_the_from_of_the_newest_completed_rollout() {
        // Newest first: a rolled-back try of v3, then v1 -> v2 completed.
        let h = vec![
            entry(Some("v2"), "v3", Outcome::RolledBack("unhealthy".into())),
            entry(Some("v1"), "v2", Outcome::Completed),
            entry(None, "v1", Outcome::Completed),
        ];
        assert_eq!(way_back("app", &h).unwrap().id, "v1");
        // After the undo (v2 -> v1), undo goes to v2 again.
        let mut undone = entry(Some("v2"), "v1", Outcome::Completed);
        undone.undo = true;
        let mut h2 = vec![undone];
        h2.extend(h);
        assert_eq!(way_back("app", &h2).unwrap().id, "v2");
    }

    #[test]
    fn nothing_to_undo_says_why() {
        assert!(way_back("app", &[])
            .unwrap_err()
            .contains("nothing to undo"));
        let only_failed = vec![entry(Some("v1"), "v2", Outcome::RolledBack("x".into()))];
        let e = way_back("app", &only_failed).unwrap_err();
        assert!(e.contains("no completed rollout of app"), "{e}");
        let from_nothing = vec![entry(None, "v1", Outcome::Completed)];
        let e = way_back("app", &from_nothing).unwrap_err();
        assert!(e.contains("from no running revision"), "{e}");
    }
}
