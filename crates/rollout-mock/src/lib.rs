//! A whole rollout environment in memory, for tests, benchmarks and dry runs.
//!
//! A strategy needs an engine that runs instances, a proxy that routes to
//! them, and a journal. [`MockCluster`] is the first two, [`MemoryJournal`]
//! the third; together they let a strategy run a rollout of ten simulated
//! minutes in milliseconds on tokio's paused clock, with no Docker and no
//! nginx. Every wait is a `tokio::time` sleep to the next transition the mock
//! knows is due; nothing sleeps in real time.
//!
//! What makes it a test bed rather than a stub:
//!
//! - **Faults per revision** ([`Faults`]): never healthy, crash after a time,
//!   slow start, unhealthy during the monitor window, launch failure, and an
//!   error rate that an [`ErrorRateAnalysis`] can see.
//! - **Requests in flight** ([`RequestModel`]): a routed instance always has
//!   requests in flight, some long; when it leaves the routes they finish a
//!   little later, so a stop before the drain is over is visible.
//! - **Service routes resolved at apply time**, as nginx resolves a service
//!   name at reload: routing a service by name while one of its instances is
//!   not ready yet puts that instance in the routes, and the checker sees it.
//! - **A timeline** ([`Timeline`]) written from what the mock itself saw, not
//!   from the strategy's events: after every change, per revision, how many
//!   instances run, are ready, routed, draining, and their weights. Counts
//!   are kept incrementally, so 10,000 instances stay cheap; full sets only
//!   on request.
//! - **An invariant checker** ([`check`]) over that timeline, for
//!   invariants 1, 2, 4 and 5 of DESIGN.md.
//!
//! The edges: the mock models one proxy and one engine; it has no restart
//! policy (a crashed instance stays exited until a strategy removes it) and
//! no network. It never prints.
#![deny(missing_docs)]

mod analysis;
pub mod check;
mod cluster;
mod context;
mod journal;
pub mod timeline;

pub use analysis::{ErrorRateAnalysis, MockVerifier};
pub use cluster::{Faults, InstanceView, MockCluster, RequestModel};
pub use journal::MemoryJournal;
pub use timeline::{Change, Entry, RevCounts, Timeline};
