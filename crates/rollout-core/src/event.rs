//! What a rollout reports, as it happens.
//!
//! A strategy sends [`Event`]s to an [`EventSink`]; the caller renders them
//! (progress bars, one line per change, or JSON lines). The JSON form of an
//! event is `{"v":1,"event":"instance-healthy",...}`; `v` is
//! [`EVENT_SCHEMA_VERSION`], raised only when a field changes meaning or goes
//! away (new events and new fields do not raise it).

use crate::backend::{Diagnostics, Failure};
use crate::exit;
use crate::model::{InstanceId, Revision, ServiceRef};
use crate::router::{DrainReport, Route, Target};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// The version of the JSON event schema.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// One thing that happened during a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
#[non_exhaustive]
pub enum Event {
    /// The rollout began (or resumed from the journal).
    RolloutStarted {
        /// The service.
        service: ServiceRef,
        /// The strategy's name.
        strategy: String,
        /// What runs now, if anything.
        from: Option<Revision>,
        /// What it goes to.
        to: Revision,
        /// Slots (instances) to update.
        slots: usize,
        /// Whether it continues a journaled rollout.
        resumed: bool,
    },
    /// The image the rollout goes to is being pulled from its registry
    /// (before the target revision is formed): one event per state a layer
    /// (or the pull as a whole, `layer` absent) reaches, such as
    /// `Pulling fs layer`, `Download complete`, `Pull complete`, and, last,
    /// the engine's `Status: ...` line.
    ImagePull {
        /// The image reference pulled (`127.0.0.1:5000/app:latest`).
        image: String,
        /// The registry it comes from (`127.0.0.1:5000`, `docker.io`).
        registry: String,
        /// The layer (short id) the status is about, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layer: Option<String>,
        /// What the engine said, as it said it.
        status: String,
    },
    /// A batch (rolling) or a step (canary) began.
    BatchStarted {
        /// 1-based index.
        index: usize,
        /// How many instances it replaces.
        size: usize,
    },
    /// An instance was created and started.
    InstanceLaunched {
        /// Its id.
        instance: InstanceId,
        /// Its host name.
        host: String,
        /// Its revision id.
        revision: String,
    },
    /// An instance's health check passed.
    InstanceHealthy {
        /// Its id.
        instance: InstanceId,
    },
    /// Traffic changed: routes added or reweighted, targets taken out.
    TrafficChanged {
        /// The router's generation after the change.
        generation: u64,
        /// Added or reweighted.
        set: Vec<Route>,
        /// Taken out.
        removed: Vec<Target>,
    },
    /// In-flight requests to removed targets finished (or were cut).
    Drained {
        /// What was drained.
        removed: Vec<Target>,
        /// What the router waited for.
        report: DrainReport,
    },
    /// An instance was stopped.
    InstanceStopped {
        /// Its id.
        instance: InstanceId,
    },
    /// An instance was removed.
    InstanceRemoved {
        /// Its id.
        instance: InstanceId,
    },
    /// The share of traffic per revision changed (canary, blue-green).
    WeightsChanged {
        /// Percent of requests going to the new revision.
        new_percent: u32,
    },
    /// A canary step is holding; `for_secs` is `None` when indefinite.
    StepPaused {
        /// 1-based step index.
        step: usize,
        /// The hold, in seconds; `None` until promoted.
        for_secs: Option<f64>,
    },
    /// The running rollout holds at a safe point (`docker rollout pause`):
    /// a canary at its step (the hold's clock stopped), a rolling update
    /// before its next slot, blue-green before its switch. Analysis and
    /// failure watches go on; a failure still rolls back.
    Paused {
        /// Who asked: `operator`.
        reason: String,
        /// Where it holds, for people (`canary step 2 at 50%`).
        at: String,
    },
    /// A held rollout goes on (`docker rollout resume`, or a promotion).
    Resumed {
        /// Who asked: `operator`.
        reason: String,
        /// How long it held, in seconds.
        held_secs: f64,
    },
    /// The operator promoted a running canary (`docker rollout promote`):
    /// the hold of `step` ended early.
    Promoted {
        /// 1-based step index whose hold ended.
        step: usize,
        /// `--full`: straight to the last step, no hold between.
        full: bool,
    },
    /// The analysis judged a step.
    Analysis {
        /// 1-based step index.
        step: usize,
        /// Its verdict.
        verdict: crate::strategy::Verdict,
    },
    /// A failure was counted toward max_failure_ratio.
    FailureCounted {
        /// The instance.
        instance: InstanceId,
        /// Why.
        failure: Failure,
        /// Failures so far.
        failures: usize,
        /// Slots to update.
        slots: usize,
        /// What it left for a person to read.
        diagnostics: Diagnostics,
    },
    /// Rolling back began.
    RollbackStarted {
        /// Why.
        reason: String,
    },
    /// A migration phase began (`--migrate`: expand before the strategy,
    /// backfill and contract after a completed rollout).
    MigrationStarted {
        /// `expand`, `backfill` or `contract`.
        phase: String,
        /// Files of the phase not applied yet.
        pending: usize,
    },
    /// A long backfill's progress, after each batch.
    MigrationProgress {
        /// The file (`version_name`).
        file: String,
        /// Rows filled so far (an interrupted earlier run's included).
        rows: i64,
        /// Rows per second in this run.
        rows_per_second: f64,
        /// Rows still to fill, when the file says how to count them.
        remaining: Option<i64>,
        /// Seconds left at this rate, when `remaining` is known.
        eta_secs: Option<f64>,
    },
    /// A migration phase ended.
    MigrationFinished {
        /// `expand`, `backfill` or `contract`.
        phase: String,
        /// Files applied.
        applied: usize,
        /// Rows backfilled in this run.
        rows: i64,
        /// Lock timeouts retried.
        retries: u32,
        /// Seconds it took.
        secs: f64,
    },
    /// The rollout ended.
    Finished {
        /// How.
        outcome: Outcome,
    },
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "outcome", content = "detail")]
pub enum Outcome {
    /// Every instance runs the new revision.
    Completed,
    /// The service already ran the revision.
    NoChange,
    /// Some slots failed, under max_failure_ratio or past it with
    /// failure_action continue; says which, and what the service runs now.
    CompletedWithFailures(String),
    /// Failed and rolled back: the old revision serves.
    RolledBack(String),
    /// Paused; the next run continues.
    Paused(String),
    /// The rollback failed: a person must look.
    RollbackFailed(String),
    /// Interrupted; `true` when what it started was rolled back.
    Interrupted(bool),
    /// An error stopped it.
    Failed(String),
    /// Not started: another rollout of the service holds its lock (who and
    /// since when); nothing was changed.
    Busy(String),
}

impl Outcome {
    /// The exit code of DESIGN.md for this outcome.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Completed | Outcome::NoChange | Outcome::CompletedWithFailures(_) => {
                exit::SUCCESS
            }
            Outcome::RolledBack(_) => exit::ROLLED_BACK,
            Outcome::Paused(_) => exit::PAUSED,
            Outcome::RollbackFailed(_) => exit::ROLLBACK_FAILED,
            Outcome::Interrupted(true) => exit::INTERRUPTED,
            Outcome::Interrupted(false) => exit::PAUSED,
            Outcome::Failed(_) => exit::UNEXPECTED,
            Outcome::Busy(_) => exit::BUSY,
        }
    }
}

/// One event in its JSON envelope: `{"v":1,"event":...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// [`EVENT_SCHEMA_VERSION`].
    pub v: u32,
    /// Seconds since the rollout started.
    pub t: f64,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Where a strategy sends its events. Cheap to clone; sending never blocks
/// and never fails (a caller that stopped listening loses nothing it needs).
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl EventSink {
    /// A sink and the receiving end the caller reads.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx: Some(tx) }, rx)
    }

    /// A sink that drops every event.
    pub fn discard() -> Self {
        Self { tx: None }
    }

    /// Sends one event.
    pub fn send(&self, event: Event) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(event);
        }
    }
}
