//! The rollout context of a whole environment in memory, in one call.

use crate::{MemoryJournal, MockCluster};
use rollout_core::event::EventSink;
use rollout_core::{Cancel, RolloutContext};
use std::sync::Arc;

impl MockCluster {
    /// A [`RolloutContext`] on this cluster: it is the backend and the
    /// router, a fresh [`MemoryJournal`] keeps the journal, there is no
    /// analysis and no verifier, events are discarded and nothing cancels.
    ///
    /// Change what a test or a tool needs with struct update syntax:
    ///
    /// ```
    /// use rollout_core::event::EventSink;
    /// use rollout_core::RolloutContext;
    /// use rollout_mock::MockCluster;
    ///
    /// let mock = MockCluster::new();
    /// let (events, _progress) = EventSink::channel();
    /// let ctx = RolloutContext { events, ..mock.context() };
    /// # drop(ctx);
    /// ```
    pub fn context(self: &Arc<Self>) -> RolloutContext {
        RolloutContext {
            backend: self.clone(),
            router: self.clone(),
            journal: Arc::new(MemoryJournal::new()),
            analysis: None,
            verifier: None,
            events: EventSink::discard(),
            cancel: Cancel::never(),
            steer: rollout_core::Steer::never(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::ServiceRef;

    #[tokio::test(start_paused = true)]
    async fn the_context_runs_on_the_cluster_with_a_journal_of_its_own() {
        let mock = MockCluster::new();
        let app = ServiceRef::new("shop", "app");
        mock.seed(&app, "v1", 2, true);
        let ctx = mock.context();
        assert_eq!(ctx.backend.instances(&app).await.unwrap().len(), 2);
        assert_eq!(ctx.router.routes().await.unwrap(), mock.route_table());
        assert!(ctx.journal.load(&app).await.unwrap().is_none());
        assert!(ctx.analysis.is_none() && ctx.verifier.is_none());
        assert_eq!(
            ctx.cancel.level(),
            rollout_core::strategy::CancelLevel::None
        );
    }
}
