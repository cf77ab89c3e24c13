//! The vocabulary of a zero-downtime rollout, and nothing else.
//!
//! A rollout moves one service from the revision it runs to the revision its
//! Compose file names. Three parties take part, and this crate defines the
//! trait each one implements:
//!
//! - a [`Backend`] runs instances: it lists them, launches
//!   new ones, tells when they are healthy or have failed, stops and removes
//!   them (the Docker engine, Swarm, or the in-memory mock);
//! - a [`TrafficRouter`] decides which instances get
//!   requests, with which weights, and says when an instance taken out of
//!   rotation has no request left in flight (nginx, or the mock);
//! - a [`Strategy`] decides the order of those
//!   operations (rolling, blue-green, canary, or one of your own).
//!
//! A [`Journal`] records each step before it is taken so
//! that a rollout killed half-way can be finished by the next run, and an
//! [`Analysis`] judges a canary step.
//!
//! The values a person writes, a [`StrategyKind`], an [`Order`] or a
//! [`FailureAction`], have one spelling each ([`word`]), which the Compose
//! loader, the command line and the JSON events share.
//!
//! The crate does no I/O: every type here is data or a trait, so that the
//! strategies can be proven on a simulated clock and reused by other tools.
//! What a rollout reports is a stream of [`Event`]s ending in an
//! [`Outcome`], whose JSON form is versioned
//! ([`event::EVENT_SCHEMA_VERSION`]) and whose exit codes live in [`exit`].
#![deny(missing_docs)]

pub mod analysis;
pub mod backend;
pub mod busy;
pub mod config;
pub mod duration;
pub mod error;
pub mod event;
pub mod exit;
pub mod hooks;
pub mod journal;
pub mod model;
pub mod router;
pub mod strategy;
pub mod word;

pub use analysis::{AnalysisRules, Inconclusive, LatencyLimit};
pub use backend::Backend;
pub use config::{failure_ratio, FailureAction, Order, PullPolicy, RollbackConfig, UpdateConfig};
pub use duration::{format_duration, parse_duration, DurationError};
pub use error::{BackendError, JournalError, RouterError};
pub use event::{Event, Outcome};
pub use journal::Journal;
pub use model::{Health, Instance, InstanceId, InstanceState, Revision, ServiceRef};
pub use router::{DrainReport, DrainTicket, Route, RouteChange, Target, TrafficRouter};
pub use strategy::{
    Analysis, Cancel, CancelHandle, CancelLevel, Plan, RolloutContext, Steer, SteerHandle,
    Steering, Strategy, StrategyKind, TrafficLayout, Verdict, Verifier,
};
pub use word::{UnknownWord, Word};
