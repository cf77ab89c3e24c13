//! `deploy.update_config` and `deploy.rollback_config` with Swarm's meaning.
//!
//! The defaults are the engine's, not the Compose specification's text: when
//! the section or a field is absent, parallelism is 1, delay 0, failure_action
//! `pause`, monitor 5 s, max_failure_ratio 0 and order `stop-first`
//! (swarmkit `api/defaults/service.go`). An explicit `monitor: 0` is honoured.
//!
//! Where Swarm is known to be wrong we do better, and say so here:
//! - Swarm has no start timeout, so a task that never starts blocks a worker
//!   forever; [`Timeouts::start`] bounds it (60 s by default) and a start
//!   that runs out counts as a failed task.
//! - Swarm exits 0 after an automatic rollback; we report
//!   [`Outcome::RolledBack`](crate::event::Outcome::RolledBack), exit code 3.
//! - Swarm overwrites its previous spec when a paused update is resumed, so
//!   the rollback target is lost; our journal keeps the revision the
//!   service ran before the first attempt until the rollout completes.

use crate::word::{UnknownWord, Word};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What to do when the failure ratio is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// Stop dispatching new slots; replaced slots stay new (exit code 4).
    #[default]
    Pause,
    /// Ignore failures and go on.
    Continue,
    /// Roll every updated slot back with the rollback config (exit code 3).
    Rollback,
}

impl Word for FailureAction {
    const ALL: &'static [Self] = &[
        FailureAction::Pause,
        FailureAction::Continue,
        FailureAction::Rollback,
    ];

    fn as_str(self) -> &'static str {
        match self {
            FailureAction::Pause => "pause",
            FailureAction::Continue => "continue",
            FailureAction::Rollback => "rollback",
        }
    }
}

impl fmt::Display for FailureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for FailureAction {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Self::parse_word(s)
    }
}

/// Whether the old instance of a slot stops before or after the new starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Unroute, drain and stop the old instance, then start the new one.
    #[default]
    StopFirst,
    /// Start the new instance, route it once healthy, then retire the old.
    StartFirst,
}

impl Word for Order {
    const ALL: &'static [Self] = &[Order::StopFirst, Order::StartFirst];

    fn as_str(self) -> &'static str {
        match self {
            Order::StopFirst => "stop-first",
            Order::StartFirst => "start-first",
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Order {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Self::parse_word(s)
    }
}

/// When the image a rollout goes to is pulled from its registry first
/// (`--pull`, else the service's Compose `pull_policy`, else `missing`).
/// The pull happens before the target revision is formed, so a new image
/// under an unchanged tag is what the rollout goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Pull every time, even when the engine has an image under the tag.
    Always,
    /// Pull only when the engine has no image under the tag.
    #[default]
    Missing,
    /// Never pull: the image must be on the engine already.
    Never,
}

impl PullPolicy {
    /// Whether to pull, given whether the engine has an image under the
    /// reference now.
    pub fn pulls(self, present: bool) -> bool {
        match self {
            PullPolicy::Always => true,
            PullPolicy::Missing => !present,
            PullPolicy::Never => false,
        }
    }
}

impl Word for PullPolicy {
    const ALL: &'static [Self] = &[PullPolicy::Always, PullPolicy::Missing, PullPolicy::Never];

    fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::Missing => "missing",
            PullPolicy::Never => "never",
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for PullPolicy {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Self::parse_word(s)
    }
}

/// What `max_failure_ratio` accepts, in words, for messages that quote the
/// value as it was written.
pub const RATIO_EXPECTED: &str = "a ratio from 0 to 1";

/// `ratio` as a `max_failure_ratio`, if it is one: from 0 to 1, both
/// included (NaN is none). Every reader of the field checks through here.
pub fn failure_ratio(ratio: f64) -> Option<f32> {
    (0.0..=1.0).contains(&ratio).then_some(ratio as f32)
}

/// The pace and failure policy of an update (Compose `deploy.update_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// How many slots are replaced at once: the number of workers. 0 means
    /// all slots at once.
    pub parallelism: u64,
    /// How long each worker waits after replacing a slot before taking the next.
    #[serde(with = "crate::duration::serde_duration")]
    pub delay: Duration,
    /// What to do once failures cross `max_failure_ratio`.
    pub failure_action: FailureAction,
    /// How long after an instance runs a failure of it still counts.
    #[serde(with = "crate::duration::serde_duration")]
    pub monitor: Duration,
    /// Failures tolerated, as a share of all slots to update; the action
    /// fires when `failures / slots` is strictly greater.
    pub max_failure_ratio: f32,
    /// Stop-first or start-first.
    pub order: Order,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            parallelism: 1,
            delay: Duration::ZERO,
            failure_action: FailureAction::Pause,
            monitor: Duration::from_secs(5),
            max_failure_ratio: 0.0,
            order: Order::StopFirst,
        }
    }
}

impl UpdateConfig {
    /// The number of workers for `slots` slots to update (0 means all).
    pub fn workers(&self, slots: usize) -> usize {
        if self.parallelism == 0 {
            slots.max(1)
        } else {
            (self.parallelism as usize).min(slots.max(1))
        }
    }

    /// The capacity floor of invariant 4 while `replicas` desired instances
    /// are updated: the desired count with start-first, the desired count
    /// minus the workers with stop-first.
    pub fn capacity_floor(&self, replicas: usize) -> usize {
        match self.order {
            Order::StartFirst => replicas,
            Order::StopFirst => self.stop_first_floor(replicas, replicas),
        }
    }

    /// The stop-first floor when `slots` of the `replicas` desired instances
    /// are to be replaced: the desired count minus the workers for those
    /// slots (a run resumed after a crash has fewer slots than replicas).
    pub fn stop_first_floor(&self, replicas: usize, slots: usize) -> usize {
        replicas.saturating_sub(self.workers(slots))
    }

    /// Whether `failures` out of `slots` crosses the ratio (strictly greater,
    /// computed in `f32` as Swarm does).
    pub fn ratio_crossed(&self, failures: usize, slots: usize) -> bool {
        if slots == 0 {
            return failures > 0;
        }
        (failures as f32 / slots as f32) > self.max_failure_ratio
    }

    /// How long to keep watching after the last slot was dispatched: the
    /// monitor window, or `delay + 1s` when the delay is not shorter than the
    /// monitor (swarmkit#3003).
    pub fn final_watch(&self) -> Duration {
        if self.delay >= self.monitor && !self.delay.is_zero() {
            self.delay + Duration::from_secs(1)
        } else {
            self.monitor
        }
    }
}

/// The pace of a rollback (Compose `deploy.rollback_config`). Same fields and
/// defaults as [`UpdateConfig`]; its `failure_action` can only pause or
/// continue, because a rollback is never rolled back.
pub type RollbackConfig = UpdateConfig;

/// Bounds on waits that Compose has no field for (`x-rollout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    /// How long a new instance may take to become healthy.
    #[serde(with = "crate::duration::serde_duration")]
    pub start: Duration,
    /// How long a drain may take before what is left is cut.
    #[serde(with = "crate::duration::serde_duration")]
    pub drain: Duration,
    /// The grace between SIGTERM and SIGKILL (`stop_grace_period`).
    #[serde(with = "crate::duration::serde_duration")]
    pub stop_grace: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            start: Duration::from_secs(60),
            drain: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_defaults() {
        let c = UpdateConfig::default();
        assert_eq!(c.parallelism, 1);
        assert_eq!(c.monitor, Duration::from_secs(5));
        assert_eq!(c.failure_action, FailureAction::Pause);
        assert_eq!(c.order, Order::StopFirst);
    }

    #[test]
    fn ratio_is_strictly_greater_over_all_slots() {
        let c = UpdateConfig {
            max_failure_ratio: 0.2,
            ..Default::default()
        };
        assert!(!c.ratio_crossed(2, 10));
        assert!(c.ratio_crossed(3, 10));
        let zero = UpdateConfig::default();
        assert!(zero.ratio_crossed(1, 10));
        assert!(!zero.ratio_crossed(0, 10));
    }

    #[test]
    fn one_spelling_each_both_ways() {
        for a in FailureAction::ALL {
            assert_eq!(a.to_string().parse::<FailureAction>(), Ok(*a));
        }
        for o in Order::ALL {
            assert_eq!(o.to_string().parse::<Order>(), Ok(*o));
            // The same spelling as the JSON form.
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::json!(o.as_str())
            );
        }
        assert_eq!(
            "first".parse::<Order>().unwrap_err().to_string(),
            "expected stop-first or start-first, found \"first\""
        );
        assert_eq!(
            "explode".parse::<FailureAction>().unwrap_err().to_string(),
            "expected pause, continue or rollback, found \"explode\""
        );
    }

    #[test]
    fn a_pull_policy_pulls_when_it_says() {
        for p in PullPolicy::ALL {
            assert_eq!(p.to_string().parse::<PullPolicy>(), Ok(*p));
        }
        assert_eq!(PullPolicy::default(), PullPolicy::Missing);
        let pulls = |p: PullPolicy| (p.pulls(true), p.pulls(false));
        assert_eq!(pulls(PullPolicy::Always), (true, true));
        assert_eq!(pulls(PullPolicy::Missing), (false, true));
        assert_eq!(pulls(PullPolicy::Never), (false, false));
        assert_eq!(
            "sometimes".parse::<PullPolicy>().unwrap_err().to_string(),
            "expected always, missing or never, found \"sometimes\""
        );
    }

    #[test]
    fn a_ratio_is_from_0_to_1() {
        assert_eq!(failure_ratio(0.0), Some(0.0));
        assert_eq!(failure_ratio(0.3), Some(0.3));
        assert_eq!(failure_ratio(1.0), Some(1.0));
        assert_eq!(failure_ratio(1.5), None);
        assert_eq!(failure_ratio(-0.1), None);
        assert_eq!(failure_ratio(f64::NAN), None);
    }

    #[test]
    fn the_capacity_floor_follows_the_order() {
        let start = UpdateConfig {
            order: Order::StartFirst,
            parallelism: 2,
            ..Default::default()
        };
        assert_eq!(start.capacity_floor(6), 6);
        let stop = UpdateConfig {
            parallelism: 2,
            ..Default::default()
        };
        assert_eq!(stop.capacity_floor(6), 4);
        assert_eq!(stop.stop_first_floor(6, 1), 5);
        let all = UpdateConfig {
            parallelism: 0,
            ..Default::default()
        };
        assert_eq!(all.capacity_floor(3), 0);
    }

    #[test]
    fn workers_zero_means_all() {
        let c = UpdateConfig {
            parallelism: 0,
            ..Default::default()
        };
        assert_eq!(c.workers(6), 6);
        let two = UpdateConfig {
            parallelism: 2,
            ..Default::default()
        };
        assert_eq!(two.workers(6), 2);
        assert_eq!(two.workers(1), 1);
    }

    #[test]
    fn final_watch_follows_swarmkit_3003() {
        let c = UpdateConfig {
            delay: Duration::from_secs(10),
            monitor: Duration::from_secs(5),
            ..Default::default()
        };
        assert_eq!(c.final_watch(), Duration::from_secs(11));
        let d = UpdateConfig {
            delay: Duration::from_secs(1),
            monitor: Duration::from_secs(30),
            ..Default::default()
        };
        assert_eq!(d.final_watch(), Duration::from_secs(30));
    }
}
