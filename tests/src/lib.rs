//! The end-to-end harness: real Compose projects on the real Docker engine, real load through
//! a real nginx, and the plugin called through the real `docker` CLI.
//!
//! Every claim of the project ("no request failed during the rollout") is finally checked
//! here, so the harness must be hard to fool and must never leave anything behind:
//!
//! - [`Project`] is one Compose project in a temporary folder with a unique name. It runs the
//!   Compose tool the machine has ([`ComposeTool`]: Debian's `docker-compose` v1, or the `docker
//!   compose` plugin where it exists), labels what it creates (`io.rollout.test=<project>`),
//!   and removes everything of that project when dropped, also when the test panicked.
//! - [`DemoStack`] writes the seed's layout: the demo app behind nginx, nginx's log folder
//!   bind-mounted so that the load generator can read the upstream errors even after nginx was
//!   recreated, and nginx published on a random port of 127.0.0.1 (fixed in the file, so that
//!   it survives `down` and `up`).
//! - [`Project::start_load`] starts `rollout-load` in the background against nginx's
//!   container address on the project's network (not through the published port's userland
//!   proxy, see [`Project::container_address`]; a load that must outlive nginx's container uses
//!   the published port); the test marks instants ("update-start"), stops it and asserts on the
//!   report.
//! - [`PluginDir`] installs a plugin binary into a temporary `DOCKER_CONFIG/cli-plugins` and
//!   gives `docker --config DIR` commands, so that tests go through the Docker CLI's plugin
//!   protocol exactly as an operator's `docker rollout` does.
//!
//! Tests that need the engine are `#[ignore = "needs docker: run with cargo xtask e2e"]` and
//! run one at a time by `cargo xtask e2e`; they call [`require_engine`] first, which fails
//! loudly (never returns early) when the engine or the images are missing.
#![deny(missing_docs)]

mod project;
pub mod e2e_faults;
pub mod e2e_kills;
pub mod e2e_strategies;
mod engine;
mod plugin;
mod stack;

pub use project::{Container, Project};
pub use engine::{
    docker, require_engine, require_images, run_ok, wait_http, ComposeTool, HttpAnswer,
};
pub use plugin::{workspace_binary, PluginDir};
pub use stack::{free_port, DemoStack, NGINX_IMAGE, SEED_NGINX_CONF};

/// The demo app images `cargo xtask images` builds (`rollout-demo:<tag>`).
pub mod images {
    /// Version v1.
    pub const V1: &str = "rollout-demo:v1";
    /// Version v2.
    pub const V2: &str = "rollout-demo:v2";
    /// Version v3.
    pub const V3: &str = "rollout-demo:v3";
    /// v2 that drains on SIGTERM instead of exiting at once.
    pub const V2_DRAIN: &str = "rollout-demo:v2-drain";
    /// v2 whose health check always fails.
    pub const V2_UNHEALTHY: &str = "rollout-demo:v2-unhealthy";
    /// v2 that turns unhealthy 8 s after start.
    pub const V2_UNHEALTHY_LATER: &str = "rollout-demo:v2-unhealthy-later";
    /// v2 that exits 1 at once.
    pub const V2_CRASH: &str = "rollout-demo:v2-crash";
    /// v2 that exits 1 8 s after start.
    pub const V2_CRASH_LATER: &str = "rollout-demo:v2-crash-later";
    /// v2 that listens only 30 s after start.
    pub const V2_SLOW_START: &str = "rollout-demo:v2-slow-start";
    /// v2 that answers 500 to 30 % of requests.
    pub const V2_ERRORS: &str = "rollout-demo:v2-errors";
    /// v2 that adds 300 ms to every answer.
    pub const V2_SLOW: &str = "rollout-demo:v2-slow";
}

/// The reason every engine test gives to `#[ignore]`.
pub const IGNORE_REASON: &str = "needs docker: run with cargo xtask e2e";
