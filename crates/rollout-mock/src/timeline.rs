//! What the mock saw, change by change.
//!
//! Every change the mock makes or observes (a launch, a health transition, a
//! crash, a routing change, the end of a drain, a stop, a removal) appends
//! one [`Entry`] holding, per revision, the counts after the change. The
//! counts are kept incrementally, so an entry costs a few words per revision
//! whatever the number of instances; full instance sets are recorded only
//! when asked for ([`MockCluster::record_sets`](crate::MockCluster::record_sets)).
//!
//! The timeline is written by the mock from its own state, never from a
//! strategy's events: it is the evidence the invariant checker
//! ([`crate::check`]) judges.

use rollout_core::InstanceId;
use std::fmt;
use std::time::Duration;

/// Counts of one revision after a change. The first six are the state now;
/// the rest are cumulative since the mock was created, so that a checker
/// sees a violation as a counter going up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevCounts {
    /// Instances whose process runs.
    pub running: u32,
    /// Running and healthy.
    pub ready: u32,
    /// In the routes (directly, or resolved from a service route).
    pub routed: u32,
    /// Routed, running and healthy: the capacity that serves.
    pub routed_ready: u32,
    /// Out of the routes with requests still in flight.
    pub draining: u32,
    /// Sum of the routed instances' weights.
    pub weight: u64,
    /// Cumulative: instances that joined the routes while not ready
    /// (invariant 1).
    pub joined_unready: u32,
    /// Cumulative: instances stopped while routed (invariant 2).
    pub stopped_routed: u32,
    /// Cumulative: instances stopped with requests in flight (invariant 2).
    pub stopped_in_flight: u32,
    /// Cumulative: drains cut by their timeout.
    pub drain_cut: u32,
    /// Cumulative: injected faults that struck (launch failed, never
    /// healthy, crashed, turned unhealthy).
    pub faults: u32,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The timeline began.
    Start,
    /// An instance was created and started.
    Launched(InstanceId),
    /// A launch of this revision failed (fault); no instance was left.
    LaunchFailed(String),
    /// An instance's health check passed.
    Healthy(InstanceId),
    /// An instance's health check failed.
    Unhealthy(InstanceId),
    /// An instance's process exited by itself.
    Crashed(InstanceId),
    /// The routes changed (one atomic change).
    Routed {
        /// The router's generation after it.
        generation: u64,
        /// Targets added or reweighted.
        set: usize,
        /// Targets taken out.
        removed: usize,
    },
    /// The last request in flight to an unrouted instance finished.
    Drained(InstanceId),
    /// A drain timed out and cut the requests still in flight.
    DrainCut(InstanceId),
    /// An instance was stopped.
    Stopped(InstanceId),
    /// An instance was removed.
    Removed(InstanceId),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Start => write!(f, "start"),
            Change::Launched(i) => write!(f, "launched {i}"),
            Change::LaunchFailed(r) => write!(f, "launch of {r} failed"),
            Change::Healthy(i) => write!(f, "healthy {i}"),
            Change::Unhealthy(i) => write!(f, "unhealthy {i}"),
            Change::Crashed(i) => write!(f, "crashed {i}"),
            Change::Routed {
                generation,
                set,
                removed,
            } => write!(f, "routes #{generation}: +{set} -{removed}"),
            Change::Drained(i) => write!(f, "drained {i}"),
            Change::DrainCut(i) => write!(f, "drain cut {i}"),
            Change::Stopped(i) => write!(f, "stopped {i}"),
            Change::Removed(i) => write!(f, "removed {i}"),
        }
    }
}

/// One change and the state after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Time since the mock was created, on tokio's clock.
    pub at: Duration,
    /// What changed.
    pub change: Change,
    /// Counts per revision, indexed like [`Timeline::revisions`].
    pub counts: Vec<RevCounts>,
    /// The routed instances and their weights, only when recording sets.
    pub routed_set: Option<Vec<(InstanceId, u32)>>,
}

impl Entry {
    /// Capacity serving now: routed, running and healthy, all revisions.
    pub fn serving(&self) -> u32 {
        self.counts.iter().map(|c| c.routed_ready).sum()
    }

    /// Faults struck so far, all revisions.
    pub fn faults(&self) -> u32 {
        self.counts.iter().map(|c| c.faults).sum()
    }

    /// The counts of revision index `rev` (zero when it did not exist yet).
    pub fn rev(&self, rev: usize) -> RevCounts {
        self.counts.get(rev).copied().unwrap_or_default()
    }
}

/// The changes the mock saw, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Revision ids in the order the mock first saw them.
    pub revisions: Vec<String>,
    /// The entries.
    pub entries: Vec<Entry>,
}

impl Timeline {
    /// The index of a revision id.
    pub fn rev_index(&self, id: &str) -> Option<usize> {
        self.revisions.iter().position(|r| r == id)
    }

    /// One line per entry from `from` on: time, change, and per revision
    /// `ready/routed/draining w=weight`.
    pub fn render(&self, from: usize) -> String {
        let mut out = String::new();
        for e in self.entries.iter().skip(from) {
            out.push_str(&format!(
                "{:>9.3}s  {:<28}",
                e.at.as_secs_f64(),
                e.change.to_string()
            ));
            for (i, c) in e.counts.iter().enumerate() {
                if c.running == 0 && c.routed == 0 && c.draining == 0 {
                    continue;
                }
                let short: String = self.revisions[i].chars().take(8).collect();
                out.push_str(&format!(
                    "  {short}: ready {} routed {} draining {} w={}",
                    c.ready, c.routed, c.draining, c.weight
                ));
            }
            out.push('\n');
        }
        out
    }
}
