//! Step notes are saved in the background: a rollout does not wait for the
//! journal to store the step it is about to take (the engine's journal costs
//! a container per save), no save of a run lands after its end, and a note
//! the journal refused fails the run.

mod common;
use async_trait::async_trait;
use common::*;
use rollout_core::config::Order;
use rollout_core::journal::{JournalRecord, Step};
use rollout_core::router::Target;
use rollout_core::strategy::Cancel;
use rollout_core::{Backend, InstanceState, JournalError, Outcome, ServiceRef, Strategy};
use rollout_mock::MockCluster;
use std::sync::Arc;
use std::time::Duration;

/// The save of a `Retire` step lands only once the instances it names are
/// stopped: a rollout that waited for that save before stopping them would
/// never end.
struct AfterTheFact {
    mock: Arc<MockCluster>,
    service: ServiceRef,
}

#[async_trait]
impl SaveHook for AfterTheFact {
    async fn before_save(&self, r: &JournalRecord) -> Result<(), JournalError> {
        let Some(Step::Retire { instances }) = &r.step else {
            return Ok(());
        };
        loop {
            let list = self.mock.instances(&self.service).await.unwrap();
            let running = list
                .iter()
                .any(|i| instances.contains(&i.id.0) && i.state == InstanceState::Running);
            if !running {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_is_taken_while_its_note_is_saved_and_nothing_lands_after_the_end() {
    for order in [Order::StopFirst, Order::StartFirst] {
        let e = env(4);
        let journal = HookedJournal::new(AfterTheFact {
            mock: e.mock.clone(),
            service: e.service.clone(),
        });
        let mut p = plan(&e, 4);
        p.update.order = order;
        let (mut c, _rx) = ctx(&e, Cancel::never());
        c.journal = journal.clone();
        let run = rollout_strategies::Rolling.run(&c, &p);
        let o = tokio::time::timeout(Duration::from_secs(3600), run)
            .await
            .unwrap_or_else(|_| panic!("{order:?}: the rollout waited for a step's save"));
        assert_eq!(o, Outcome::Completed, "{order:?}");
        let left = e.mock.instances(&e.service).await.unwrap();
        assert!(
            left.iter().all(|i| i.revision == NEW),
            "{order:?}: {left:?}"
        );
        // Give a stray background save every chance to land.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            journal.inner.record(&e.service).is_none(),
            "{order:?}: a save landed after the run cleared the journal"
        );
    }
}

/// Refuses to store the last step of a rollout, the route back to the
/// service's name (as the engine's journal refuses a generation another run
/// wrote): no later step would find out.
struct RefusesTheLastStep;

#[async_trait]
impl SaveHook for RefusesTheLastStep {
    async fn before_save(&self, r: &JournalRecord) -> Result<(), JournalError> {
        let to_name = |set: &[rollout_core::Route]| {
            set.iter()
                .any(|r| matches!(r.target, Target::Service { .. }))
        };
        match &r.step {
            Some(Step::Route { change }) if to_name(&change.set) => Err(JournalError::Storage(
                "generation 7 was written by someone else".into(),
            )),
            _ => Ok(()),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_step_note_the_journal_refused_fails_the_run_and_keeps_the_journal() {
    let e = env(2);
    let journal = HookedJournal::new(RefusesTheLastStep);
    let mut p = plan(&e, 2);
    p.update.order = Order::StartFirst;
    let (mut c, _rx) = ctx(&e, Cancel::never());
    c.journal = journal.clone();
    let o = rollout_strategies::Rolling.run(&c, &p).await;
    assert!(
        matches!(&o, Outcome::Failed(why) if why.contains("someone else")),
        "{o:?}"
    );
    assert!(
        journal.inner.record(&e.service).is_some(),
        "the journal was cleared after it refused the run's write"
    );
}
