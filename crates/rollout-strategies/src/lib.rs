//! The rollout strategies: rolling, blue-green and canary, written only
//! against the traits of `rollout-core`.
//!
//! A strategy decides the order of operations; it never knows whether the
//! instances are Docker containers or simulated ones, or whether the router
//! is nginx. That edge is what lets the same code run on the engine, on
//! Swarm later, and on `rollout-mock`'s paused clock, where every strategy
//! is proven against the zero-downtime invariants of DESIGN.md before it
//! touches a real service.
//!
//! Every strategy here keeps the same protocol:
//!
//! - a new instance joins the routes only after its health check passed
//!   (invariant 1);
//! - an old instance leaves the routes, is drained (the router says when no
//!   request is in flight to it), and only then is stopped and removed
//!   (invariant 2);
//! - during a rollout routes name instances; at rest they name the service
//!   again, once every running instance of it is the new revision and ready;
//! - each step is written to the [`Journal`](rollout_core::Journal) before it
//!   is taken, and a run that finds a record converges from what the
//!   backend and the router actually hold (a crash at any point is
//!   finished by the next run; an interrupted rollback runs to its end);
//! - one rollout per service at a time, through the journal's lock;
//! - Ctrl-C ([`Cancel`](rollout_core::strategy::Cancel)) stops at the next
//!   safe point and rolls back what was started; a second one stops there
//!   without rolling back;
//! - the operator's pause ([`Steer`](rollout_core::Steer), `docker rollout
//!   pause`) holds at the next safe point until resumed, failures still
//!   watched ([`PAUSED`]); a canary's step can be promoted while it holds;
//! - progress is reported as [`Event`](rollout_core::Event)s; nothing is
//!   printed.
//!
//! A service with no proxy in front (a queue worker) is rolled with the
//! [`NoTraffic`] router: the same protocol, with nothing to route or drain.
//!
//! [`built_in`] gives the strategy of a [`StrategyKind`] (what `--strategy`
//! and `x-rollout.strategy` name); anyone can add one by implementing
//! [`rollout_core::Strategy`] (see `examples/custom-strategy`).
//!
//! # Example
//!
//! A rolling update on the in-memory mock; swap the mock for the Docker
//! backend and the nginx router and the same code updates real containers.
//!
//! ```
//! use rollout_core::event::EventSink;
//! use rollout_core::{Plan, Revision, RolloutContext, ServiceRef, Strategy};
//! use rollout_mock::MockCluster;
//! use rollout_strategies::Rolling;
//!
//! #[tokio::main(flavor = "current_thread", start_paused = true)]
//! async fn main() {
//!     let mock = MockCluster::new();
//!     let app = ServiceRef::new("shop", "app");
//!     mock.seed(&app, "v1", 3, true); // three healthy instances, routed by name
//!
//!     let (events, mut progress) = EventSink::channel();
//!     let ctx = RolloutContext {
//!         events,
//!         ..mock.context()
//!     };
//!     let mut plan = Plan::new(app, Revision::new("v2", "shop/app:2"), 3);
//!     plan.update.parallelism = 2;
//!
//!     let outcome = Rolling.run(&ctx, &plan).await;
//!     while let Ok(event) = progress.try_recv() {
//!         println!("{}", serde_json::to_string(&event).unwrap());
//!     }
//!     assert_eq!(outcome.exit_code(), 0);
//! }
//! ```
#![deny(missing_docs)]

mod bluegreen;
mod canary;
mod held;
mod no_traffic;
mod ops;
mod rolling;

pub use bluegreen::BlueGreen;
pub use canary::{Canary, JUDGE_EVERY, OLD_WEIGHT, PROMOTE};
pub use held::PAUSED;
pub use no_traffic::NoTraffic;
pub use ops::{boot_id, lock_holder, process_start, this_process};
pub use rolling::Rolling;

use rollout_core::{BackendError, JournalError, RouterError, Strategy, StrategyKind};

/// Why a strategy could not take a step. It ends the rollout with
/// [`Outcome::Failed`](rollout_core::Outcome::Failed) (or `RollbackFailed`
/// during a rollback); the journal keeps what the next run needs.
#[derive(Debug, thiserror::Error)]
pub enum StrategyError {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The router failed; nothing was changed by the failing step.
    #[error(transparent)]
    Router(#[from] RouterError),
    /// The journal could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The built-in strategy of `kind`; its [`Strategy::name`] is the kind's
/// spelling.
pub fn built_in(kind: StrategyKind) -> Box<dyn Strategy> {
    match kind {
        StrategyKind::Rolling => Box::new(Rolling),
        StrategyKind::BlueGreen => Box::new(BlueGreen),
        StrategyKind::Canary => Box::new(Canary),
    }
}
