//! The end-to-end harness: real Compose projects on the real Docker engine, real load through
//! a real nginx, and the plugin called through the real `docker` CLI. The suites that use it
//! are in `suites/` (one test executable each); a benchmark built on it lives in
//! `xtask/bench-rollout`.
//!
//! Every claim of the project ("no request failed during the rollout") is finally checked
//! here, so the harness must be hard to fool and must never leave anything behind. Its rooms,
//! in the order a test meets them:
//!
//! - [`engine`] and [`http`]: `docker` commands, the checks every engine test makes first
//!   ([`require_engine`], [`require_images`]: loud failures, never an early return), the
//!   Compose tool a project is brought up with ([`ComposeTool`]: Debian's `docker-compose`
//!   v1, or the `docker compose` plugin; the run's tool is chosen in one place,
//!   [`ComposeTool::detect`], from `ROLLOUT_E2E_COMPOSE=v1|v2`, else v2 where it works, and
//!   said on stderr), image ids and tags a test moves ([`image_id`], [`Tag`]), and plain GETs
//!   from the host ([`wait_http`]).
//! - [`project`]: [`Project`] is one Compose project in a temporary folder with a unique name.
//!   It labels what it creates (`io.rollout.test=<project>`) and removes everything of that
//!   project when dropped, also when the test panicked.
//! - [`stack`]: [`DemoStack`] writes the seed's layout (the demo app behind nginx, nginx's log
//!   folder bind-mounted so that the load generator can read the upstream errors even after
//!   nginx was recreated, nginx published on a random port of 127.0.0.1 fixed in the file) and
//!   brings it up until it serves ([`DemoStack::serve`]).
//! - [`plugin`]: [`PluginDir`] installs a plugin binary into a temporary
//!   `DOCKER_CONFIG/cli-plugins`, so that tests go through the Docker CLI's plugin protocol
//!   exactly as an operator's `docker rollout` does, finding the Compose tools the operator's
//!   docker finds (or with one hidden, as if it were not installed: [`PluginDir::hide`]).
//! - [`registry`]: a real image registry ([`Registry`]: Debian's distribution 2.8 on a
//!   loopback port, storage in a temporary folder, ended by its pid when dropped) that the pull
//!   tests push to.
//! - [`swarm`]: a real two-node swarm ([`swarm::Swarm`]): the host's engine as manager and a
//!   worker engine the test starts in a network namespace of its own, undone when dropped.
//! - [`swarm_stack`]: the demo stack deployed on that swarm behind nginx
//!   ([`swarm_stack::Deployed`]), `docker rollout --stack` and Swarm's own update run under
//!   load (the swarm suite's and `cargo xtask bench swarm`'s).
//! - [`load`]: the mix every run sends ([`load::mix`]) through nginx's container address on
//!   the project's network ([`Project::start_load`]; a load that must outlive nginx's
//!   container uses the published port), and the load's [`Clock`], on which everything else is
//!   stamped.
//! - [`run`]: `docker rollout` as a child process ([`Running`]): its `--output json` events
//!   stamped as they arrive, waits for an event, signals to the plugin, the CLI or the process
//!   group, and how it [`Ended`].
//! - [`rig`]: the runner of the rollout suites: [`Rig`] is a stack serving with the plugin
//!   installed, and runs `docker rollout app` under the load between the marks the verdict
//!   reads.
//! - [`nginx`]: nginx seen from outside the tool: its processes, `nginx -t`, the files the
//!   router may leave, the upstream's servers in the config file, watched during a run.
//! - [`haproxy`]: a project with HAProxy in front, its load, and HAProxy's own runtime state
//!   (`show servers state` through the relay in its container).
//! - [`keepers`]: what the rollout keeps with the engine (lock, journal, saved revisions).
//! - [`replay`]: the routes after each traffic change, replayed from the events.
//! - [`verdict`]: no failed request, no upstream error, the load real, every old instance
//!   answering until it was taken out; and the report, printed and written as JSON.
//!
//! Tests that need the engine are `#[ignore = "needs docker: run with cargo xtask e2e"]` and
//! run one at a time by `cargo xtask e2e`.
#![deny(missing_docs)]

pub mod engine;
pub mod haproxy;
pub mod http;
pub mod keepers;
pub mod load;
pub mod nginx;
pub mod plugin;
pub mod project;
pub mod prometheus;
pub mod registry;
pub mod replay;
pub mod rig;
pub mod run;
pub mod stack;
pub mod swarm;
pub mod swarm_stack;
pub mod verdict;

pub use engine::{
    creations, docker, image_id, require_engine, require_images, run_ok, ComposeTool, Tag, TOOL_ENV,
};
pub use http::{wait_http, HttpAnswer};
pub use load::Clock;
pub use plugin::{workspace_binary, PluginDir};
pub use project::{Container, ExecWatch, Project};
pub use registry::Registry;
pub use rig::{Rig, ROLLOUT_TIMEOUT};
pub use run::{run_rollout, Ended, Running, Stamped, Whom};
pub use stack::{
    blue_green_example, blue_green_example_with, canary_example, free_port,
    judged_blue_green_example, DemoStack, DEMO_PORT, NGINX_IMAGE, SEED_NGINX_CONF,
};

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
