//! What a run did, for the last line of `--output json`: the counts of
//! its events and how it ended.

use rollout_core::strategy::Plan;
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

impl Summary {
    /// The summary of a run that never started: bad input, an unreachable
    /// engine or proxy, or an interrupt before anything changed.
    pub fn not_started(dry_run: bool, exit_code: i32, error: &str) -> Self {
        Self {
            service: None,
            strategy: None,
            dry_run,
            outcome: None,
            exit_code,
            error: Some(error.to_string()),
            elapsed_secs: 0.0,
            from: None,
            to: None,
            counts: Tally::default(),
        }
    }

    /// The summary of a rollout of `plan` with `strategy` that ended with
    /// `outcome` after `elapsed` seconds, having done `counts`; not a dry
    /// run, and with no revision it came from (set those when they apply).
    pub fn finished(
        plan: &Plan,
        strategy: &str,
        outcome: &Outcome,
        elapsed: f64,
        counts: Tally,
    ) -> Self {
        Self {
            service: Some(plan.service.to_string()),
            strategy: Some(strategy.to_string()),
            dry_run: false,
            outcome: Some(outcome.clone()),
            exit_code: outcome.exit_code(),
            error: None,
            elapsed_secs: round_ms(elapsed),
            from: None,
            to: Some(plan.target.clone()),
            counts,
        }
    }
}

/// Seconds to the millisecond, as JSON carries times.
pub(crate) fn round_ms(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}
