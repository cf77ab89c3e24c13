//! The revision a rollout starts from is known to the strategy only by the
//! id its instances report; the backend describes it (`Backend::describe`:
//! the image and its id), so that the `rollout-started` event and the
//! journal's rollback target carry what people read. A backend that cannot
//! say leaves the bare id.

mod common;
use async_trait::async_trait;
use common::*;
use rollout_core::backend::{Diagnostics, Failure};
use rollout_core::config::Timeouts;
use rollout_core::event::EventSink;
use rollout_core::{
    Backend, BackendError, Event, Instance, InstanceId, Outcome, Revision, RolloutContext,
    ServiceRef, Strategy,
};
use rollout_mock::MockCluster;
use rollout_strategies::Rolling;
use std::sync::Arc;
use std::time::Duration;

/// The mock, describing revisions as the Docker backend does, or failing to.
struct Describing(Arc<MockCluster>, bool);

#[async_trait]
impl Backend for Describing {
    async fn instances(&self, s: &ServiceRef) -> Result<Vec<Instance>, BackendError> {
        self.0.instances(s).await
    }
    async fn launch(
        &self,
        s: &ServiceRef,
        r: &Revision,
        n: usize,
    ) -> Result<Vec<Instance>, BackendError> {
        self.0.launch(s, r, n).await
    }
    async fn wait_healthy(
        &self,
        i: &InstanceId,
        t: &Timeouts,
    ) -> Result<Result<(), Failure>, BackendError> {
        self.0.wait_healthy(i, t).await
    }
    async fn watch_failures(
        &self,
        i: &[InstanceId],
        w: Duration,
    ) -> Result<Option<(InstanceId, Failure)>, BackendError> {
        self.0.watch_failures(i, w).await
    }
    async fn stop(&self, i: &InstanceId, g: Duration) -> Result<(), BackendError> {
        self.0.stop(i, g).await
    }
    async fn remove(&self, i: &InstanceId) -> Result<(), BackendError> {
        self.0.remove(i).await
    }
    async fn diagnostics(&self, i: &InstanceId) -> Result<Diagnostics, BackendError> {
        self.0.diagnostics(i).await
    }
    async fn describe(&self, _: &ServiceRef, id: &str) -> Result<Revision, BackendError> {
        if self.1 {
            Ok(Revision::new(id, "app:latest").with_image_id("sha256:ab12"))
        } else {
            Err(BackendError::Other("the engine went away".into()))
        }
    }
}

async fn started_from(describes: bool) -> (Option<Revision>, Outcome) {
    let e = env(2);
    let (events, mut rx) = EventSink::channel();
    let ctx = RolloutContext {
        backend: Arc::new(Describing(e.mock.clone(), describes)),
        events,
        ..e.mock.context()
    };
    let outcome = Rolling.run(&ctx, &plan(&e, 2)).await;
    let mut from = None;
    while let Ok(event) = rx.try_recv() {
        if let Event::RolloutStarted { from: f, .. } = event {
            from = f;
        }
    }
    (from, outcome)
}

#[tokio::test(start_paused = true)]
async fn the_starting_revision_is_described_by_the_backend() {
    let (from, outcome) = started_from(true).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(
        from,
        Some(Revision::new(OLD, "app:latest").with_image_id("sha256:ab12"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_cannot_describe_leaves_the_id() {
    let (from, outcome) = started_from(false).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(from, Some(Revision::new(OLD, "")));
}
