//! The order of operations: the [`Strategy`] trait and what it is given.

use crate::backend::Backend;
use crate::config::{RollbackConfig, Timeouts, UpdateConfig};
use crate::event::{EventSink, Outcome};
use crate::journal::Journal;
use crate::model::{Instance, Revision, ServiceRef};
use crate::router::TrafficRouter;
use crate::word::{UnknownWord, Word};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The built-in strategies, by name: what `x-rollout.strategy` and
/// `--strategy` choose, and what `rollout-strategies` runs. A strategy of
/// your own has no kind; it implements [`Strategy`] and names itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// Replace instances a batch at a time (`deploy.update_config`).
    Rolling,
    /// Start the new set, then switch all traffic at once.
    BlueGreen,
    /// Shift traffic in weighted steps.
    Canary,
}

impl Word for StrategyKind {
    const ALL: &'static [Self] = &[
        StrategyKind::Rolling,
        StrategyKind::BlueGreen,
        StrategyKind::Canary,
    ];

    fn as_str(self) -> &'static str {
        match self {
            StrategyKind::Rolling => "rolling",
            StrategyKind::BlueGreen => "blue-green",
            StrategyKind::Canary => "canary",
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = UnknownWord;

    fn from_str(s: &str) -> Result<Self, UnknownWord> {
        Self::parse_word(s)
    }
}

impl StrategyKind {
    /// The capacity floor (invariant 4) this strategy keeps while it
    /// updates `plan`: rolling, its update config's; blue-green and canary
    /// never drop below the desired count.
    pub fn update_floor(self, plan: &Plan) -> usize {
        match self {
            StrategyKind::Rolling => plan.update.capacity_floor(plan.replicas),
            StrategyKind::BlueGreen | StrategyKind::Canary => plan.replicas,
        }
    }

    /// The same during a rollback: rolling, its rollback config's.
    pub fn rollback_floor(self, plan: &Plan) -> usize {
        match self {
            StrategyKind::Rolling => plan.rollback.capacity_floor(plan.replicas),
            StrategyKind::BlueGreen | StrategyKind::Canary => plan.replicas,
        }
    }

    /// The floor over a whole run, update and rollback: the lower of the two.
    pub fn floor(self, plan: &Plan) -> usize {
        self.update_floor(plan).min(self.rollback_floor(plan))
    }
}

/// How the service's traffic is laid out in the proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "layout")]
pub enum TrafficLayout {
    /// One service: old and new instances run side by side, and at rest the
    /// proxy names the service again.
    Single,
    /// The seed's two colour services behind one upstream. The plan's service
    /// is the colour to make live; `other` is the colour live now (or idle),
    /// which is left running for an instant switch-back.
    Colours {
        /// The other colour.
        other: ServiceRef,
        /// Stop the other colour once this one is live.
        stop_other: bool,
    },
}

/// How long a canary step holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hold {
    /// For this long, then on to the next step.
    For(#[serde(with = "crate::duration::serde_duration")] Duration),
    /// Until promoted: the rollout pauses (exit code 4) and the next run
    /// goes on from this step.
    UntilPromoted,
}

/// One canary step: a share of requests to the new revision, then a hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryStep {
    /// Percent of requests to the new revision, 1 to 100.
    pub percent: u32,
    /// How long to hold before the next step.
    pub hold: Hold,
}

/// Canary settings (`x-rollout.canary`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanaryConfig {
    /// The steps, in order; the last is normally 100.
    pub steps: Vec<CanaryStep>,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            steps: [10, 25, 50, 75, 100]
                .into_iter()
                .map(|percent| CanaryStep {
                    percent,
                    hold: Hold::For(Duration::from_secs(30)),
                })
                .collect(),
        }
    }
}

/// Blue-green settings (`x-rollout.blue_green`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BlueGreenConfig {
    /// Check each new instance directly before the switch.
    pub verify: Option<Verification>,
    /// How long to keep the old set after the switch, for an instant
    /// switch-back, before removing it. `None` keeps it (two-colour layout).
    #[serde(default, with = "crate::duration::serde_duration_opt")]
    pub keep_old_for: Option<Duration>,
}

/// An HTTP request sent to a new instance before it gets traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The path, such as `/health`.
    pub path: String,
    /// The status expected.
    pub status: u16,
    /// Text the body must contain, if any.
    pub body_contains: Option<String>,
}

/// Everything a strategy needs to know about one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The service to update.
    pub service: ServiceRef,
    /// The revision to go to.
    pub target: Revision,
    /// How many instances the service should have.
    pub replicas: usize,
    /// The update's pace and failure policy.
    pub update: UpdateConfig,
    /// The rollback's pace and failure policy.
    pub rollback: RollbackConfig,
    /// Start, drain and stop bounds.
    pub timeouts: Timeouts,
    /// How the proxy routes the service.
    pub layout: TrafficLayout,
    /// Canary steps.
    pub canary: CanaryConfig,
    /// Blue-green settings.
    pub blue_green: BlueGreenConfig,
}

impl Plan {
    /// A plan with the defaults of Compose and Swarm: single layout, the
    /// default canary steps, no blue-green verification.
    pub fn new(service: ServiceRef, target: Revision, replicas: usize) -> Self {
        Self {
            service,
            target,
            replicas,
            update: UpdateConfig::default(),
            rollback: RollbackConfig::default(),
            timeouts: Timeouts::default(),
            layout: TrafficLayout::Single,
            canary: CanaryConfig::default(),
            blue_green: BlueGreenConfig::default(),
        }
    }
}

/// A verdict of the analysis of a canary step (or of a monitor window).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "reason")]
pub enum Verdict {
    /// Go on.
    Pass,
    /// Abort and roll back.
    Fail(String),
    /// Not enough data yet; keep holding (the step's hold still bounds it).
    Inconclusive(String),
}

/// Judges a canary step (error rate, latency) while it holds.
#[async_trait]
pub trait Analysis: Send + Sync {
    /// Judges the new revision now, at `percent` percent of traffic.
    async fn judge(&self, plan: &Plan, step: usize, percent: u32) -> Verdict;
}

/// Sends a verification request to one instance from inside its network.
#[async_trait]
pub trait Verifier: Send + Sync {
    /// `Ok(())` when the instance answered as `check` expects, else why not.
    async fn verify(&self, instance: &Instance, check: &Verification) -> Result<(), String>;
}

/// How hard the operator asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CancelLevel {
    /// Keep going.
    None,
    /// First Ctrl-C (or the plugin socket closed): stop at the next safe
    /// point and roll back what was started.
    Abort,
    /// Second Ctrl-C: stop at the next safe point without rolling back.
    Halt,
}

/// The reading side of a cancellation signal. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cancel {
    rx: watch::Receiver<CancelLevel>,
}

/// The writing side of a cancellation signal.
#[derive(Debug)]
pub struct CancelHandle {
    tx: watch::Sender<CancelLevel>,
}

impl Cancel {
    /// A signal and the handle that raises it.
    pub fn new() -> (CancelHandle, Cancel) {
        let (tx, rx) = watch::channel(CancelLevel::None);
        (CancelHandle { tx }, Cancel { rx })
    }

    /// A signal that is never raised.
    pub fn never() -> Cancel {
        let (tx, rx) = watch::channel(CancelLevel::None);
        // The receiver keeps the last value once the sender is gone.
        drop(tx);
        Cancel { rx }
    }

    /// The level now.
    pub fn level(&self) -> CancelLevel {
        *self.rx.borrow()
    }

    /// Resolves when the level reaches at least `level` (never, if it does not).
    pub async fn reached(&self, level: CancelLevel) {
        let mut rx = self.rx.clone();
        loop {
            if *rx.borrow_and_update() >= level {
                return;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl CancelHandle {
    /// Raises the level one step: None → Abort → Halt.
    pub fn escalate(&self) -> CancelLevel {
        self.tx.send_modify(|l| {
            *l = match *l {
                CancelLevel::None => CancelLevel::Abort,
                _ => CancelLevel::Halt,
            }
        });
        *self.tx.borrow()
    }
}

/// What the operator asks of a running rollout besides stopping it: `docker
/// rollout pause|resume|promote` from another shell. Cancellation
/// ([`Cancel`]) stays apart: it is the way out; steering only changes the
/// pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Steering {
    /// Hold at the next safe point until resumed: a canary stops its step's
    /// hold clock (its analysis and failure watch go on), a rolling update
    /// launches no next slot (slots in flight finish), a blue-green one
    /// waits before its switch. A rollback is never held.
    pub paused: bool,
    /// Promotions asked so far: a canary ends the hold of its step when
    /// this grows past the promotions it has acted on (a promotion lifts a
    /// pause too).
    pub promotions: u64,
    /// The value of `promotions` when the last promotion in full was asked
    /// (`promote --full`: straight to the last step, no hold between); 0
    /// when none was.
    pub full_at: u64,
}

impl Steering {
    /// Whether a promotion past `acted` (the promotions already acted on)
    /// was asked, and whether one of those was in full.
    pub fn promotion_since(&self, acted: u64) -> Option<bool> {
        (self.promotions > acted).then_some(self.full_at > acted)
    }
}

/// The reading side of the operator's steering. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Steer {
    rx: watch::Receiver<Steering>,
}

/// The writing side of the operator's steering.
#[derive(Debug)]
pub struct SteerHandle {
    tx: watch::Sender<Steering>,
}

impl Steer {
    /// A steering signal and the handle that moves it.
    pub fn new() -> (SteerHandle, Steer) {
        let (tx, rx) = watch::channel(Steering::default());
        (SteerHandle { tx }, Steer { rx })
    }

    /// A steering that never changes: never paused, never promoted.
    pub fn never() -> Steer {
        let (tx, rx) = watch::channel(Steering::default());
        drop(tx);
        Steer { rx }
    }

    /// The steering now.
    pub fn now(&self) -> Steering {
        *self.rx.borrow()
    }

    /// Resolves with the steering once it differs from `seen` (never, if it
    /// does not).
    pub async fn changed_from(&self, seen: Steering) -> Steering {
        let mut rx = self.rx.clone();
        loop {
            let now = *rx.borrow_and_update();
            if now != seen {
                return now;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl SteerHandle {
    /// Asks the rollout to hold at its next safe point.
    pub fn pause(&self) {
        self.tx.send_modify(|s| s.paused = true);
    }

    /// Lets a held rollout go on.
    pub fn resume(&self) {
        self.tx.send_modify(|s| s.paused = false);
    }

    /// Asks a canary to end its step's hold now (and lifts a pause); with
    /// `full`, to go straight to its last step.
    pub fn promote(&self, full: bool) {
        self.tx.send_modify(|s| {
            s.paused = false;
            s.promotions += 1;
            if full {
                s.full_at = s.promotions;
            }
        });
    }

    /// The steering now.
    pub fn now(&self) -> Steering {
        *self.tx.borrow()
    }
}

/// What a strategy works with.
#[derive(Clone)]
pub struct RolloutContext {
    /// Runs the instances.
    pub backend: Arc<dyn Backend>,
    /// Routes the traffic.
    pub router: Arc<dyn TrafficRouter>,
    /// Records each step before it is taken.
    pub journal: Arc<dyn Journal>,
    /// Judges canary steps, a rolling update's monitor windows and the
    /// monitor window after a blue-green switch; `None` passes them all.
    pub analysis: Option<Arc<dyn Analysis>>,
    /// Checks new instances before the switch (blue-green verify).
    pub verifier: Option<Arc<dyn Verifier>>,
    /// Where events go.
    pub events: EventSink,
    /// The operator's Ctrl-C (and `docker rollout abort`).
    pub cancel: Cancel,
    /// The operator's pause, resume and promote of the running rollout.
    pub steer: Steer,
}

/// Moves a service from the revision it runs to [`Plan::target`].
///
/// Implement this to add a strategy; `examples/custom-strategy` shows one
/// written outside this workspace's strategy crate. A strategy must keep the
/// zero-downtime invariants of DESIGN.md: route only ready instances, never
/// stop an instance before it is unrouted and drained, keep the capacity
/// floor, and follow failure_action.
///
/// The strategies of `rollout-strategies` also take the per-service lock
/// ([`Journal::lock`]) for the length of [`Strategy::run`], save the rollback
/// target, phase and their state before acting on them (and each step, in the
/// background, for people), and report the outcome both as the return
/// value and as a final [`Event::Finished`](crate::event::Event::Finished).
/// `rollout-mock`'s invariant checker tells whether a strategy of your own
/// keeps the invariants.
#[async_trait]
pub trait Strategy: Send + Sync {
    /// A short name: a built-in's is its [`StrategyKind`]'s spelling
    /// (`rolling`, `blue-green`, `canary`).
    fn name(&self) -> &str;

    /// Runs the rollout to its end and says how it ended. Progress goes to
    /// `ctx.events`, ending with [`Event::Finished`](crate::event::Event::Finished).
    async fn run(&self, ctx: &RolloutContext, plan: &Plan) -> Outcome;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Order;

    #[test]
    fn a_strategy_kind_has_one_spelling() {
        for k in StrategyKind::ALL {
            assert_eq!(k.to_string().parse::<StrategyKind>(), Ok(*k));
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                serde_json::json!(k.as_str())
            );
        }
        let e = "big-bang".parse::<StrategyKind>().unwrap_err();
        assert_eq!(e.accepted, ["rolling", "blue-green", "canary"]);
    }

    #[tokio::test]
    async fn steering_pauses_resumes_and_counts_promotions() {
        let (handle, steer) = Steer::new();
        let seen = steer.now();
        assert_eq!(seen, Steering::default());
        assert_eq!(seen.promotion_since(0), None);
        handle.pause();
        let now = steer.changed_from(seen).await;
        assert!(now.paused);
        handle.promote(false);
        let s = steer.now();
        assert!(!s.paused, "a promotion lifts the pause");
        assert_eq!(s.promotion_since(0), Some(false));
        assert_eq!(s.promotion_since(1), None);
        handle.promote(true);
        handle.promote(false);
        let s = steer.now();
        assert_eq!(s.promotion_since(1), Some(true), "a full one among them");
        assert_eq!(s.promotion_since(2), Some(false));
        handle.pause();
        handle.resume();
        assert!(!steer.now().paused);
        let never = Steer::never();
        assert_eq!(never.now(), Steering::default());
    }

    #[test]
    fn floors_by_strategy() {
        let mut plan = Plan::new(ServiceRef::new("p", "s"), Revision::new("v2", "s:2"), 6);
        plan.update.parallelism = 2;
        plan.rollback.parallelism = 3;
        plan.rollback.order = Order::StopFirst;
        assert_eq!(StrategyKind::Rolling.update_floor(&plan), 4);
        assert_eq!(StrategyKind::Rolling.rollback_floor(&plan), 3);
        assert_eq!(StrategyKind::Rolling.floor(&plan), 3);
        plan.update.order = Order::StartFirst;
        assert_eq!(StrategyKind::Rolling.update_floor(&plan), 6);
        for k in [StrategyKind::BlueGreen, StrategyKind::Canary] {
            assert_eq!(k.floor(&plan), 6);
        }
    }
}
