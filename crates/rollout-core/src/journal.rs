//! The record a rollout keeps of itself, so that a killed run can be finished.
//!
//! A strategy writes the step it is about to take *before* taking it. After a
//! crash the next run reads the record, looks at what the backend and the
//! router actually hold, and converges: a rollout goes on toward `to`, an
//! interrupted rollback runs to its end. The record lives with the engine
//! (the Docker backend keeps it in labels or a volume), not on the client.

use crate::error::JournalError;
use crate::model::{Revision, ServiceRef};
use crate::router::{DrainTicket, RouteChange};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Which way the rollout is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Toward `to`.
    Updating,
    /// Back toward `from`, with the rollback config.
    RollingBack,
    /// Stopped by failure_action pause or an indefinite canary step; the next
    /// run continues toward `to`.
    Paused,
}

/// The operation a rollout is about to take.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "op")]
pub enum Step {
    /// Launch instances of a revision.
    Launch {
        /// The revision's id.
        revision: String,
        /// How many.
        count: usize,
    },
    /// Change the routes.
    Route {
        /// The change.
        change: RouteChange,
    },
    /// Wait for a drain.
    Drain {
        /// What is drained.
        ticket: DrainTicket,
    },
    /// Stop and remove instances.
    Retire {
        /// Their ids.
        instances: Vec<String>,
    },
    /// Anything a strategy needs to note (a canary step index).
    Note {
        /// Free-form, strategy-defined.
        detail: serde_json::Value,
    },
}

/// The whole record of one service's rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// Unique per rollout.
    pub rollout_id: String,
    /// The service.
    pub service: ServiceRef,
    /// The strategy's name.
    pub strategy: String,
    /// The revision serving before the first attempt; the rollback target.
    pub from: Option<Revision>,
    /// The revision the rollout goes to.
    pub to: Revision,
    /// Which way it goes.
    pub phase: Phase,
    /// The step about to be taken, or last taken.
    pub step: Option<Step>,
    /// Strategy-defined state (which canary step, failures counted so far).
    #[serde(default)]
    pub state: serde_json::Value,
}

/// Stores journal records and the per-service lock.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Takes the per-service lock for `holder` (`user@host pid 123`), or says
    /// who holds it and since when.
    async fn lock(&self, service: &ServiceRef, holder: &str) -> Result<(), JournalError>;

    /// Gives the lock back.
    async fn unlock(&self, service: &ServiceRef) -> Result<(), JournalError>;

    /// The record of an unfinished rollout of `service`, if any.
    async fn load(&self, service: &ServiceRef) -> Result<Option<JournalRecord>, JournalError>;

    /// Replaces the record.
    async fn save(&self, record: &JournalRecord) -> Result<(), JournalError>;

    /// Deletes the record: the rollout is over.
    async fn clear(&self, service: &ServiceRef) -> Result<(), JournalError>;
}
