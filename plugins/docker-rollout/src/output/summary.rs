//! What a run did, for the last line of `--output json`: the counts of
//! its events and how it ended.

use rollout_core::{Event, Outcome, Revision};
use serde::Serialize;

/// What a run did, counted from its events, for the final summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Instances launched.
    pub launched: usize,
    /// Instances that passed their health check.
    pub healthy: usize,
    /// Traffic changes applied (one proxy reload each).
    pub traffic_changes: usize,
    /// Drains waited for.
    pub drains: usize,
    /// Drains that ran out of time (requests were cut).
    pub drains_timed_out: usize,
    /// Instances stopped.
    pub stopped: usize,
    /// Instances removed.
    pub removed: usize,
    /// Failures counted toward max_failure_ratio.
    pub failures: usize,
    /// Whether a rollback ran.
    pub rolled_back: bool,
}

impl Tally {
    /// Counts one event.
    pub fn count(&mut self, event: &Event) {
        match event {
            Event::InstanceLaunched { .. } => self.launched += 1,
            Event::InstanceHealthy { .. } => self.healthy += 1,
            Event::TrafficChanged { .. } => self.traffic_changes += 1,
            Event::Drained { report, .. } => {
                self.drains += 1;
                if report.timed_out {
                    self.drains_timed_out += 1;
                }
            }
            Event::InstanceStopped { .. } => self.stopped += 1,
            Event::InstanceRemoved { .. } => self.removed += 1,
            Event::FailureCounted { .. } => self.failures += 1,
            Event::RollbackStarted { .. } => self.rolled_back = true,
            _ => {}
        }
    }
}

/// The last line of `--output json`: `{"v":1,"summary":{...}}`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `project/service`.
    pub service: Option<String>,
    /// The strategy's name.
    pub strategy: Option<String>,
    /// Whether this was `--dry-run` (nothing was touched).
    pub dry_run: bool,
    /// How the rollout ended; `None` when it never started.
    pub outcome: Option<Outcome>,
    /// The process's exit code.
    pub exit_code: i32,
    /// Why it never started (bad input, unreachable engine), if so.
    pub error: Option<String>,
    /// Seconds from start to end (simulated for a dry run).
    pub elapsed_secs: f64,
    /// The revision that served before.
    pub from: Option<Revision>,
    /// The revision rolled out.
    pub to: Option<Revision>,
    /// What the run did.
    pub counts: Tally,
}
