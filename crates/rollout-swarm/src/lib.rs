//! Docker Swarm for rollout: the first pieces of the Swarm backend (issue 13).
//!
//! - [`stack`]: how `docker stack deploy` names and labels a stack's services, so that a
//!   stack's services are found from the engine alone (from any manager).
//! - [`update`]: Compose's `deploy.update_config` and `rollback_config` as Swarm's own
//!   `UpdateConfig` and `RollbackConfig`, field by field, both ways, where Swarm's native
//!   update is driven; what Swarm cannot express is refused with the field's name.
//! - [`status`]: what a service's `UpdateStatus` says about a native update, and the exit
//!   code it is worth (an automatic rollback is exit 3, where `docker service update`
//!   exits 0: docker/cli#6752).
//!
//! The backend itself (tasks as instances, behind `rollout_core::Backend`) builds on these;
//! its design is in `PLAN.md` beside this crate's manifest.
#![deny(missing_docs)]

pub mod stack;
pub mod status;
pub mod update;
