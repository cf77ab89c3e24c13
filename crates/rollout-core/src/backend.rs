//! Where instances run.

use crate::config::Timeouts;
use crate::error::BackendError;
use crate::model::{Instance, InstanceId, Revision, ServiceRef};
use async_trait::async_trait;
use std::time::Duration;

/// Why an instance is counted as failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "detail")]
pub enum Failure {
    /// Its process exited (crash, or exit 0: Swarm counts both).
    Exited(String),
    /// Its health check failed.
    Unhealthy(String),
    /// It did not become healthy within the start timeout.
    StartTimeout,
    /// It could not be created or started.
    LaunchFailed(String),
    /// The analysis judged its revision bad while it was in its monitor
    /// window (the reason, with the numbers).
    Analysis(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exited(s) => write!(f, "exited: {s}"),
            Failure::Unhealthy(s) => write!(f, "unhealthy: {s}"),
            Failure::StartTimeout => write!(f, "not healthy within the start timeout"),
            Failure::LaunchFailed(s) => write!(f, "launch failed: {s}"),
            Failure::Analysis(s) => write!(f, "analysis failed: {s}"),
        }
    }
}

/// What a failed instance left behind for a person to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostics {
    /// The last lines of its log.
    pub last_logs: Vec<String>,
    /// The output of its last health checks.
    pub health_log: Vec<String>,
}

/// Runs the instances of services.
///
/// Implementations: the Docker engine (`rollout-docker`), the in-memory mock
/// (`rollout-mock`). Wrap a backend to add behaviour (recording, dry run)
/// rather than adding flags to one.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The instances of `service` that exist now, any state, any revision.
    async fn instances(&self, service: &ServiceRef) -> Result<Vec<Instance>, BackendError>;

    /// Creates and starts `count` instances of `revision`. They are not
    /// routed and usually not healthy yet.
    async fn launch(
        &self,
        service: &ServiceRef,
        revision: &Revision,
        count: usize,
    ) -> Result<Vec<Instance>, BackendError>;

    /// Waits until the instance is healthy, or fails. `Ok(Err(failure))` is
    /// the instance failing (crash, unhealthy, timeout); `Err` is the backend
    /// failing.
    async fn wait_healthy(
        &self,
        instance: &InstanceId,
        timeouts: &Timeouts,
    ) -> Result<Result<(), Failure>, BackendError>;

    /// Waits up to `within` for the first of `instances` to fail, and says
    /// which and why; `None` when none failed in that time.
    async fn watch_failures(
        &self,
        instances: &[InstanceId],
        within: Duration,
    ) -> Result<Option<(InstanceId, Failure)>, BackendError>;

    /// Stops the instance: SIGTERM, then SIGKILL after `grace`. Returns once
    /// its process has exited; what the platform still tidies after that
    /// (Docker's network teardown) may go on until [`Backend::remove`].
    async fn stop(&self, instance: &InstanceId, grace: Duration) -> Result<(), BackendError>;

    /// Removes a stopped instance (once the platform has finished its stop).
    async fn remove(&self, instance: &InstanceId) -> Result<(), BackendError>;

    /// Logs and health output of an instance, for a failure report. Never
    /// includes environment values.
    async fn diagnostics(&self, instance: &InstanceId) -> Result<Diagnostics, BackendError>;

    /// Revision `id` of `service` as people read it: the image its
    /// instances run and, where the backend knows it, the image id. Used for
    /// the revision a rollout starts from, which the strategy knows only by
    /// the id its instances report. The default knows nothing but the id.
    async fn describe(&self, service: &ServiceRef, id: &str) -> Result<Revision, BackendError> {
        let _ = service;
        Ok(Revision::new(id, ""))
    }
}
