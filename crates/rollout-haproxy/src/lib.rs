//! rollout-haproxy: a traffic router over HAProxy's runtime API.
//!
//! # Why this crate exists
//!
//! Every nginx reload closes idle keep-alive client connections, so each
//! traffic change costs clients a retry. HAProxy changes a server's
//! address, weight and state live through its runtime API (the stats
//! socket), with no reload and no connection closed, and it reports each
//! server's current sessions, so a drain can be measured per server. This
//! crate implements the core crate's
//! [`TrafficRouter`](rollout_core::router::TrafficRouter) that way, for one
//! backend whose `server-template` line gives it server slots to fill.
//!
//! # Where its edges are
//!
//! - [`config`]: reads the operator's `haproxy.cfg` (never writes it): the
//!   admin stats socket and the backend's slots; a config lacking either is
//!   refused with what to add.
//! - [`command`]: the only place command text is written, from checked
//!   names, addresses, ports and weights.
//! - [`channel`]: how a command reaches HAProxy, a trait with direct unix
//!   and TCP socket implementations.
//! - [`state`]: the answers of `show servers state` and `show stat`, read by
//!   pure functions.
//! - [`resolve`]: route targets to addresses and back.
//! - [`router`]: [`HaproxyRouter`], the plan, the commands, the read back,
//!   the undo and the drain.
//!
//! It knows nothing of Docker: the plugin gives it a channel and a resolver.

#![deny(missing_docs)]

pub mod channel;
pub mod command;
pub mod config;
pub mod error;
pub mod resolve;
pub mod router;
pub mod state;

pub use channel::{ChannelError, RuntimeChannel, TcpChannel, UnixChannel};
pub use config::HaproxyConfig;
pub use error::HaproxyError;
pub use resolve::{Resolve, StaticResolver};
pub use router::HaproxyRouter;
