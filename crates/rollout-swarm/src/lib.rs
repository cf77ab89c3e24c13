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
//! - [`api`]: what the backend asks a manager (services, tasks with their addresses read as
//!   JSON, the proxy's containers), through rollout-docker's `Engine`.
//! - [`standby`]: a rolling update of a stack's service by the standby approach of `PLAN.md`:
//!   a standby copy takes the traffic, Swarm's native update replaces the home's tasks, each
//!   new task is routed as it runs, and the standby is drained and removed at the end.
//! - [`steps`]: the steps a standby run is made of: its reports (lines and events), route
//!   changes and their drains, the waits for tasks to serve or settle.
//! - [`colours`]: blue-green and canary on a swarm: Swarm's own update of the idle colour of
//!   the seed's two colour services, then nginx moved to it at once or step by step.
//! - [`record`]: the run's lock and journal, kept with the swarm on the standby's labels, so
//!   that a rerun after a killed run takes the standby over and resumes.
#![deny(missing_docs)]

pub mod api;
mod checks;
pub mod colours;
pub mod record;
pub mod stack;
pub mod standby;
pub mod status;
pub mod steps;
pub mod update;

pub use checks::ProxyTask;
