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
//! - [`lock`]: [`RuntimeLock`], the proxy lock every change is made under
//!   (the store is the caller's).
//!
//! It knows nothing of Docker: the plugin gives it a channel and a resolver.
//!
//! # Example
//!
//! ```no_run
//! use rollout_core::model::InstanceId;
//! use rollout_core::router::{Route, RouteChange, Target, TrafficRouter};
//! use rollout_haproxy::{HaproxyConfig, HaproxyRouter, StaticResolver, UnixChannel};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let text = std::fs::read_to_string("/etc/haproxy/haproxy.cfg")?;
//! let config = HaproxyConfig::parse("/etc/haproxy/haproxy.cfg", &text)?;
//! let router = HaproxyRouter::open(
//!     "haproxy",
//!     &config,
//!     "app",
//!     Arc::new(UnixChannel::new("/run/haproxy/admin.sock")),
//!     Arc::new(StaticResolver::new(8000)), // hosts are IPs, on port 8000
//! )
//! .await?;
//! let green = Target::instance(InstanceId::from("10.0.0.12"), "10.0.0.12");
//! let blue = Target::instance(InstanceId::from("10.0.0.11"), "10.0.0.11");
//! let ticket = router
//!     .apply(&RouteChange {
//!         set: vec![Route { target: green, weight: 1 }],
//!         remove: vec![blue],
//!     })
//!     .await?;
//! let report = router.drain(&ticket, Duration::from_secs(30)).await?;
//! println!("drained {:?} in {:?}", report.waited_for, report.elapsed);
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

pub mod channel;
pub mod command;
pub mod config;
pub mod error;
pub mod lock;
pub mod resolve;
pub mod router;
pub mod state;

pub use channel::{AtRest, ChannelError, RuntimeChannel, TcpChannel, UnixChannel};
pub use config::HaproxyConfig;
pub use error::HaproxyError;
pub use lock::RuntimeLock;
pub use resolve::{Resolve, StaticResolver};
pub use router::HaproxyRouter;
