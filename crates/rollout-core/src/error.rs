//! The errors the traits return. Each carries what a person needs to act:
//! which instance, which file and line, and a hint where there is one.

use crate::model::InstanceId;

/// A backend operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The engine cannot be reached (exit code 6).
    #[error("cannot reach the engine at {endpoint}: {reason}")]
    Unreachable {
        /// Where we tried.
        endpoint: String,
        /// What went wrong.
        reason: String,
    },
    /// No such instance.
    #[error("no instance {0}")]
    NoSuchInstance(InstanceId),
    /// The image of a revision is not there.
    #[error("image {image} not found on the engine\nhint: build or pull it first, or pass --build (a service with build:) or --pull always")]
    MissingImage {
        /// The image reference.
        image: String,
    },
    /// The instance could not be created or started.
    #[error("cannot launch {service}: {reason}")]
    Launch {
        /// The service.
        service: String,
        /// What went wrong.
        reason: String,
    },
    /// Anything else the engine said.
    #[error("{0}")]
    Other(String),
}

/// A traffic router operation failed; nothing was changed unless it says so.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The proxy cannot be reached (exit code 6).
    #[error("cannot reach the proxy: {0}")]
    Unreachable(String),
    /// The candidate configuration was refused by validation; the live one is
    /// untouched. `location` is `file:line` where known.
    #[error("proxy configuration refused at {location}: {message}")]
    Invalid {
        /// `file:line` or `file:line:column`.
        location: String,
        /// What the validator said.
        message: String,
    },
    /// The reload was refused or did not take.
    #[error("proxy reload did not take: {0}")]
    Reload(String),
    /// The operator's configuration cannot be used (no such upstream, does not
    /// parse): bad input, exit code 2.
    #[error("{0}")]
    Config(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// The journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Another rollout of the service holds the lock.
    #[error("a rollout of {service} is already running: held by {holder} since {since}\nhint: wait for it; if its process is gone, `docker rollout unlock SERVICE` shows the holder and releases the lock, and the next rollout finishes what it started")]
    Locked {
        /// The service.
        service: String,
        /// Who holds it (user@host pid).
        holder: String,
        /// Since when (RFC 3339 or seconds since the epoch).
        since: String,
    },
    /// Storage failed.
    #[error("journal: {0}")]
    Storage(String),
}
