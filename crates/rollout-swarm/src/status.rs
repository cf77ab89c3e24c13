//! What a service's `UpdateStatus` says about Swarm's native update, and the exit code it is
//! worth. `docker service update` exits 0 when the update it started was rolled back
//! automatically (docker/cli#6752); ours says 3, as the design's table does for every rolled
//! back rollout. A rollback that Swarm paused is a rollback that failed: a person must look.

use bollard::models::{ServiceUpdateStatus, ServiceUpdateStatusStateEnum};
use rollout_core::exit;

/// Where a native update stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateState {
    /// No update has run on this service (a new service, or one never updated).
    None,
    /// Tasks are being replaced.
    Updating,
    /// Every task runs the new spec.
    Completed,
    /// Swarm stopped the update (`failure_action: pause`, or a `docker service update` paused
    /// by hand); Swarm's message says why.
    Paused(String),
    /// Swarm rolls back to the previous spec (`failure_action: rollback`, or a rollback asked
    /// for by hand).
    RollingBack(String),
    /// The previous spec serves again.
    RolledBack(String),
    /// The rollback itself stopped.
    RollbackPaused(String),
}

impl UpdateState {
    /// The state of `status` (a service's `UpdateStatus`, absent when no update ran).
    pub fn of(status: Option<&ServiceUpdateStatus>) -> UpdateState {
        let Some(status) = status else {
            return UpdateState::None;
        };
        let message = status.message.clone().unwrap_or_default();
        match status.state {
            None | Some(ServiceUpdateStatusStateEnum::EMPTY) => UpdateState::None,
            Some(ServiceUpdateStatusStateEnum::UPDATING) => UpdateState::Updating,
            Some(ServiceUpdateStatusStateEnum::COMPLETED) => UpdateState::Completed,
            Some(ServiceUpdateStatusStateEnum::PAUSED) => UpdateState::Paused(message),
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_STARTED) => {
                UpdateState::RollingBack(message)
            }
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED) => {
                UpdateState::RolledBack(message)
            }
            Some(ServiceUpdateStatusStateEnum::ROLLBACK_PAUSED) => {
                UpdateState::RollbackPaused(message)
            }
        }
    }

    /// Whether Swarm is still at work (wait for the next state).
    pub fn in_progress(&self) -> bool {
        matches!(self, UpdateState::Updating | UpdateState::RollingBack(_))
    }

    /// The exit code of a rollout that ended in this state; `None` while in progress.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            UpdateState::Updating | UpdateState::RollingBack(_) => None,
            UpdateState::None | UpdateState::Completed => Some(exit::SUCCESS),
            UpdateState::Paused(_) => Some(exit::PAUSED),
            UpdateState::RolledBack(_) => Some(exit::ROLLED_BACK),
            UpdateState::RollbackPaused(_) => Some(exit::ROLLBACK_FAILED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: ServiceUpdateStatusStateEnum, message: &str) -> ServiceUpdateStatus {
        ServiceUpdateStatus {
            state: Some(state),
            message: Some(message.into()),
            ..Default::default()
        }
    }

    #[test]
    fn an_automatic_rollback_is_exit_3_not_0() {
        let s = status(
            ServiceUpdateStatusStateEnum::ROLLBACK_COMPLETED,
            "rollback completed",
        );
        let state = UpdateState::of(Some(&s));
        assert_eq!(state, UpdateState::RolledBack("rollback completed".into()));
        assert_eq!(state.exit_code(), Some(3));
    }

    #[test]
    fn each_state_has_its_code() {
        use ServiceUpdateStatusStateEnum as S;
        let code = |s| UpdateState::of(Some(&status(s, "m"))).exit_code();
        assert_eq!(code(S::UPDATING), None);
        assert_eq!(code(S::ROLLBACK_STARTED), None);
        assert_eq!(code(S::COMPLETED), Some(0));
        assert_eq!(code(S::PAUSED), Some(4));
        assert_eq!(code(S::ROLLBACK_PAUSED), Some(5));
        assert_eq!(UpdateState::of(None).exit_code(), Some(0));
        assert!(UpdateState::of(Some(&status(S::UPDATING, ""))).in_progress());
        assert!(!UpdateState::of(Some(&status(S::PAUSED, ""))).in_progress());
    }
}
