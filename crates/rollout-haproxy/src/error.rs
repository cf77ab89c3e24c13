//! The crate's errors, and what they become for the core crate.

use crate::channel::ChannelError;
use rollout_core::error::RouterError;

/// What went wrong between the router and HAProxy.
#[derive(Debug, thiserror::Error)]
pub enum HaproxyError {
    /// The config has no stats socket.
    #[error("{file} has no `stats socket`: the router changes servers through HAProxy's runtime API\nhint: add `stats socket /run/haproxy/admin.sock mode 600 level admin` to the global section (a restart of haproxy is needed once)")]
    NoStatsSocket {
        /// The config file.
        file: String,
    },
    /// The stats socket does not allow changes.
    #[error("the stats socket at {location} has level {level}, and changing servers needs level admin\nhint: write `level admin` on that `stats socket` line")]
    StatsLevel {
        /// `file:line`.
        location: String,
        /// The level it has.
        level: String,
    },
    /// The backend is not in the config.
    #[error("{file} has no backend {backend}\nhint: name the backend that routes the service (`backend NAME` or `listen NAME`)")]
    NoBackend {
        /// The config file.
        file: String,
        /// The backend asked for.
        backend: String,
    },
    /// The backend has no server slots.
    #[error("backend {backend} in {file} has no `server-template`: instances are added without a reload only into server slots\nhint: add `server-template {backend} 1-10 0.0.0.0:0 disabled` to backend {backend}, with at least twice as many slots as the service has instances")]
    NoTemplate {
        /// The config file.
        file: String,
        /// The backend.
        backend: String,
    },
    /// The change needs more free slots than the backend has.
    #[error("backend {backend} has {free} free server slots of {total}, and the change needs {needed}; nothing was changed\nhint: raise the count of the backend's `server-template` line (at least {needed} free at once: twice the instances for blue-green) and reload haproxy once at a quiet time")]
    NoFreeSlot {
        /// The backend.
        backend: String,
        /// Slots the change needs.
        needed: usize,
        /// Slots free now.
        free: usize,
        /// All the backend's slots.
        total: usize,
    },
    /// The live backend lacks slots the config names (the file and the
    /// running process disagree).
    #[error("backend {backend} in the running haproxy has no server {server}, which the config's `server-template` names\nhint: reload haproxy so that it runs the config on disk")]
    SlotMissing {
        /// The backend.
        backend: String,
        /// The slot.
        server: String,
    },
    /// A config line the router needs could not be read.
    #[error("{location}: {message}")]
    Config {
        /// `file:line`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A name that could not go into a command.
    #[error(
        "invalid {what} name `{value}`: HAProxy names hold only letters, digits and `_ . : -`"
    )]
    InvalidName {
        /// `backend` or `server`.
        what: &'static str,
        /// The name, escaped.
        value: String,
    },
    /// A weight HAProxy cannot take.
    #[error("weight {weight} is above HAProxy's largest, 256")]
    Weight {
        /// The weight asked for.
        weight: u32,
    },
    /// A route target could not be turned into addresses.
    #[error("cannot resolve {target}: {reason}")]
    Resolve {
        /// The target.
        target: String,
        /// Why.
        reason: String,
    },
    /// The runtime API cannot be reached.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// HAProxy refused a command.
    #[error("haproxy refused `{command}`: {answer}")]
    Refused {
        /// The command line.
        command: String,
        /// Its answer.
        answer: String,
    },
    /// An answer could not be read.
    #[error("cannot read haproxy's answer to `{command}`: {reason}")]
    Answer {
        /// The command.
        command: String,
        /// What is wrong with the answer.
        reason: String,
    },
    /// A change failed and could not be undone on some servers.
    #[error("{cause}\nundoing the change failed on {servers}: their address, weight or state may be the change's\nhint: look with `show servers state {backend}` on the stats socket; the next rollout reads the routes as they are")]
    Torn {
        /// Why the change failed.
        cause: Box<HaproxyError>,
        /// The backend.
        backend: String,
        /// `backend/server` of each slot not put back.
        servers: String,
    },
    /// A change was accepted but reading back shows something else.
    #[error("after the change, haproxy shows server {server} {found}, not {expected}")]
    Verify {
        /// `backend/server`.
        server: String,
        /// What the change should have left.
        expected: String,
        /// What HAProxy shows.
        found: String,
    },
}

impl From<HaproxyError> for RouterError {
    fn from(e: HaproxyError) -> Self {
        match e {
            HaproxyError::NoStatsSocket { .. }
            | HaproxyError::StatsLevel { .. }
            | HaproxyError::NoBackend { .. }
            | HaproxyError::NoTemplate { .. }
            | HaproxyError::NoFreeSlot { .. }
            | HaproxyError::Config { .. }
            | HaproxyError::InvalidName { .. }
            | HaproxyError::Weight { .. } => RouterError::Config(e.to_string()),
            HaproxyError::Channel(_) => RouterError::Unreachable(e.to_string()),
            _ => RouterError::Other(e.to_string()),
        }
    }
}
