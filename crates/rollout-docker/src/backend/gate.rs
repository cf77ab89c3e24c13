//! The launch gate: launches never overlap the retirement of an instance.
//!
//! The backend launches through the Compose tool with `up --no-start
//! --scale SERVICE=N`, N counted from the containers that exist just
//! before. So a launch that overlaps another rolling worker's retirement
//! (stop, then remove) sees one container fewer than was counted and
//! creates one too many (and without `--no-start`, Compose would start the
//! container being retired again). Here a launch through Compose
//! waits until every instance whose stop has begun is removed (at most
//! [`RETIRE_WAIT`]), and no stop begins while a launch counts and creates
//! containers. A copy (a later launch of a revision, made through the API)
//! counts nothing: it makes one container, numbered past every container
//! there, a stopped one being removed included, so it need not wait for
//! removals (a stop-first slot starts its new instance while the engine
//! removes the old one); health waits, drains, the stops themselves and the starts of
//! created containers (most of a launch's time: the engine sets up their
//! network) still run in parallel. Launches create one at a time for the
//! same reason: Compose scales to a total, so two at once would each count
//! the other's containers, and a copy takes the next free number.

use rollout_core::InstanceId;
use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a launch waits for retirements under way to end.
pub const RETIRE_WAIT: Duration = Duration::from_secs(120);

/// One launch at a time, and none while an instance is being retired.
#[derive(Default)]
pub(super) struct LaunchGate {
    one: tokio::sync::Mutex<()>,
    retiring: Mutex<HashSet<InstanceId>>,
    removed: Notify,
    /// Containers a launch created and starts outside the gate: not
    /// stopped containers an operator left, whatever a Compose launch that
    /// counts meanwhile sees.
    starting: Mutex<HashSet<String>>,
}

impl LaunchGate {
    /// Waits for the gate and, for a launch that counts (`counts`: through
    /// Compose), for retirements under way to end (at most
    /// [`RETIRE_WAIT`]); the launch holds the guard while it runs.
    pub(super) async fn launch(&self, counts: bool) -> tokio::sync::MutexGuard<'_, ()> {
        let one = self.one.lock().await;
        if !counts {
            return one;
        }
        let until = tokio::time::Instant::now() + RETIRE_WAIT;
        loop {
            let notified = self.removed.notified();
            if self.retiring().is_empty() {
                break;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                break;
            }
        }
        one
    }

    /// `instance` begins to retire: once no launch runs.
    pub(super) async fn retiring_begins(&self, instance: &InstanceId) {
        let _one = self.one.lock().await;
        self.retiring().insert(instance.clone());
    }

    /// `instance` is retired (removed), or its stop failed.
    pub(super) fn retired(&self, instance: &InstanceId) {
        self.retiring().remove(instance);
        self.removed.notify_waiters();
    }

    /// `ids` were created under the gate and are being started outside it.
    pub(super) fn starting(&self, ids: &[String]) {
        self.starts().extend(ids.iter().cloned());
    }

    /// `ids` are started, or gone.
    pub(super) fn started(&self, ids: &[String]) {
        let mut starts = self.starts();
        for id in ids {
            starts.remove(id);
        }
    }

    /// Whether container `id` is being started by a launch.
    pub(super) fn is_starting(&self, id: &str) -> bool {
        self.starts().contains(id)
    }

    fn starts(&self) -> MutexGuard<'_, HashSet<String>> {
        self.starting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retiring(&self) -> MutexGuard<'_, HashSet<InstanceId>> {
        self.retiring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_launch_waits_for_a_retirement_under_way() {
        let gate = Arc::new(LaunchGate::default());
        let old = InstanceId("old".into());
        gate.retiring_begins(&old).await;
        let waiting = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _launch = gate.launch(true).await;
                tokio::time::Instant::now()
            })
        };
        let start = tokio::time::Instant::now();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "the launch waits for the removal");
        gate.retired(&old);
        let launched = waiting.await.unwrap();
        assert_eq!(launched - start, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_does_not_wait_for_a_removal_under_way() {
        let gate = LaunchGate::default();
        gate.retiring_begins(&InstanceId("old".into())).await;
        let start = tokio::time::Instant::now();
        drop(gate.launch(false).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        // A launch through Compose still does.
        let counted = tokio::time::timeout(Duration::from_secs(1), gate.launch(true)).await;
        assert!(counted.is_err(), "a counting launch waits for the removal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retirement_that_never_ends_holds_a_launch_for_retire_wait_at_most() {
        let gate = LaunchGate::default();
        gate.retiring_begins(&InstanceId("stuck".into())).await;
        let start = tokio::time::Instant::now();
        drop(gate.launch(true).await);
        assert_eq!(start.elapsed(), RETIRE_WAIT);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retirement_begins_while_a_launch_runs() {
        let gate = Arc::new(LaunchGate::default());
        let launch = gate.launch(false).await;
        let stopping = {
            let gate = gate.clone();
            tokio::spawn(async move { gate.retiring_begins(&InstanceId("a".into())).await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!stopping.is_finished());
        drop(launch);
        stopping.await.unwrap();
        assert!(gate.retiring().contains(&InstanceId("a".into())));
    }
}
