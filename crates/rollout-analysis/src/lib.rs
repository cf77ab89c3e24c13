//! rollout-analysis: judging a canary from what the proxy itself saw.
//!
//! # Why this crate exists
//!
//! A canary whose new revision answers 500 to a fifth of its requests, while
//! its health check passes, must be rolled back, not promoted. The proxy in
//! front (the operator's own nginx) sees every request; while a canary holds,
//! the traffic router has it write a log of the tool's own beside the
//! operator's ([`rollout_nginx::accesslog`], removed at rest). This crate
//! reads that log and judges the new revision against the old one.
//!
//! # The rooms
//!
//! - [`logline`]: one log line, parsed (pure).
//! - [`window`]: per-revision request count, error rate, p50/p95/p99 over a
//!   sliding window (pure).
//! - [`judge`]: the rules (`rollout_core::AnalysisRules`) applied to a window,
//!   and failing windows in a row (pure).
//! - [`proxylog`]: [`ProxyLogAnalysis`], the `rollout_core::Analysis` that
//!   reads the log from the proxies and maps addresses to revisions through
//!   an [`Addresses`] (the Docker backend's container addresses in the
//!   plugin).
//! - [`prometheus`]: [`PrometheusAnalysis`], PromQL queries asked of a
//!   Prometheus server, each with the highest value that passes.
//! - [`both`]: [`AllOf`], several analyses that must all pass.
//!
//! # Edges
//!
//! It knows neither Docker nor how the log is arranged in the config; it
//! reads a file in the proxy through rollout-nginx's `ProxyExec`.
#![deny(missing_docs)]

pub mod both;
pub mod judge;
pub mod logline;
pub mod prometheus;
pub mod proxylog;
pub mod window;

pub use both::AllOf;
pub use prometheus::PrometheusAnalysis;
pub use proxylog::{Addresses, FixedAddresses, ProxyLogAnalysis};
pub use window::Stats;
