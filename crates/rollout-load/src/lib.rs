//! Load that tells the truth about a rollout.
//!
//! "Zero failed requests" is only a claim if the load is real and the client judges failures
//! the way its users' clients would. This crate sends HTTP/1.1 requests at a fixed rate (open
//! loop: a slow answer does not slow the sending down), mixes fast GETs, slow GETs (seconds)
//! and POSTs, on new connections and on reused keep-alive ones, and records for every request
//! when it started, how long it took, its status, and the version and instance that answered
//! (the demo app's `X-Demo-Version` and `X-Demo-Instance` headers).
//!
//! A request counts as failed when a standard client would report an error to its caller
//! (DESIGN.md, "What counts as a failed request"): a non-2xx status, a timeout (5 s beyond the
//! request's expected duration), a refused or reset connection, or a connection closed before
//! the whole answer came. Before that verdict the client makes the one retry that HTTP clients
//! make (RFC 9112 §9.3.1): when a reused keep-alive connection is closed before any byte of the
//! answer arrived, an idempotent request (GET) is sent again once on a new connection. Those
//! retries are counted apart ([`Report::stale_retries`]), POSTs are never retried, and like
//! hyper the client drops pooled connections that the server has already closed before it
//! reuses them.
//!
//! A proxy can hide failures from the client by retrying on another server, so the generator
//! also reads the proxy's error log over the run's window and counts the upstream errors in it
//! ([`errorlog`]).
//!
//! Edges: the crate knows HTTP/1.1 over plain TCP and nginx's error log format; it does not
//! know Docker (the caller says which file or container holds the log) nor any rollout tool.
//! It runs inside a caller's tokio runtime ([`run`]) or on its own thread ([`LoadHandle`]) so
//! that synchronous tests can drive Compose while it runs.
#![deny(missing_docs)]

mod client;
pub mod config;
pub mod errorlog;
mod generator;
pub mod report;

pub use config::{Class, LoadConfig};
pub use errorlog::{ErrorLogSource, UpstreamError, UpstreamErrorKind, UpstreamErrors};
pub use generator::{run, LoadHandle, Progress};
pub use report::{Bucket, ClassStats, InstanceStats, Mark, Outcome, Record, Report, Window};

use std::path::PathBuf;

/// What can go wrong with the load itself (not with the requests, which are data).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration cannot be run.
    #[error("invalid load configuration: {0}")]
    Config(String),
    /// The runtime or its thread could not be started.
    #[error("cannot start the load generator: {0}")]
    Start(#[source] std::io::Error),
    /// The generator's thread panicked.
    #[error("the load generator thread panicked")]
    Panicked,
    /// The proxy's error log could not be read: without it, "0 upstream errors" would be a guess.
    #[error("cannot read the proxy's error log {path}: {source}\nhint: check that the file exists and is readable, or run without an error log")]
    ErrorLogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `docker exec CONTAINER cat PATH` failed.
    #[error("cannot read the error log {path} in container {container}: {detail}")]
    ErrorLogContainer {
        /// The container.
        container: String,
        /// The file inside it.
        path: String,
        /// What docker said.
        detail: String,
    },
    /// The JSON report could not be written.
    #[error("cannot write the report to {path}: {source}")]
    WriteReport {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
