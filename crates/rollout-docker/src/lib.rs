//! The Docker engine as a rollout backend.
//!
//! `rollout-core` says what a rollout needs from the place instances run:
//! list them, launch some, tell when one is healthy or has failed, stop and
//! remove, and keep a journal. This crate answers those with one Docker
//! engine (API 1.41 and up, through bollard) and a Compose project on it.
//! It is the only crate of the workspace that talks to Docker.
//!
//! The engine is found as the docker CLI finds it for a plugin ([`endpoint`]:
//! `--context`, `-H`, `DOCKER_HOST`, `DOCKER_CONTEXT`, the config's current
//! context), and the API version is negotiated, since the engine may be
//! older than the client ([`Engine`]). TLS and ssh endpoints go through the
//! docker CLI's `system dial-stdio` ([`dial`]), so no crypto stack is
//! compiled in.
//!
//! What it decides, and why:
//!
//! - **Instances are Compose's containers.** A service's instances are the
//!   containers labelled `com.docker.compose.project` and
//!   `com.docker.compose.service`; an instance's revision is its
//!   `com.docker.compose.config-hash`, and its host is its container name,
//!   which Docker's DNS resolves on the project's networks.
//! - **Compose creates what Compose names.** New instances of the revision
//!   the Compose file names come from the operator's own Compose tool
//!   (`up --no-start --no-deps --no-recreate --scale`, see [`compose`]; which tool,
//!   v1 or v2: the one that made the project's running containers, see
//!   [`choose_tool`]), so names, labels, networks, volumes and the config
//!   hash are exactly Compose's, and a later `up -d` with that tool leaves
//!   them alone. An older revision
//!   (a rollback) is created from the saved create-config of one of its
//!   containers ([`spec`]), with the same labels and hash. Compose scales
//!   to a total and starts every stopped container it scales, so launches
//!   run one at a time and never while an instance is being retired (the
//!   launch gate of [`backend`]): every user of [`DockerBackend`] gets it.
//! - **Health comes from the engine's events**, not from polling: a
//!   `health_status` or `die` event ends the wait, bounded by the start
//!   timeout. A container with no healthcheck and no configured probe is an
//!   error, not a blind wait.
//! - **State lives with the engine.** The journal, the per-service lock and
//!   the saved specs are never-started containers ([`keeper`]), so a second
//!   client, or the next run after a crash, finds them.
//! - **Images are pulled through the engine**, before the target revision
//!   is formed ([`pull`]), with the credentials of the docker config
//!   ([`auth`]: `auths`, `credsStore`, `credHelpers`), when the pull policy
//!   asks; a service Compose builds is built by the Compose tool
//!   ([`ComposeCli::build`]).
//! - **The proxy is reached through the engine too**: commands through a
//!   shell kept for the run (else by exec), its
//!   config file written in the source of its mount by a short-lived
//!   container of the proxy's image, so the engine's own file is edited
//!   even when the engine is remote, and the journal of its commits kept
//!   with the engine ([`proxy`], [`proxyfiles`]); an
//!   HAProxy's runtime API by exec of our relay in its container, and its
//!   servers' addresses from the containers' networks ([`haproxy`]).
//!
//! What it does not do: parse or generate nginx configuration (that is
//! `rollout-nginx`), choose the order of operations (`rollout-strategies`),
//! or read Compose files (`rollout-compose`).
#![deny(missing_docs)]

pub mod addresses;
pub mod auth;
pub mod backend;
pub mod compose;
pub mod dial;
pub mod endpoint;
pub mod engine;
pub mod haproxy;
pub mod history;
pub mod journal;
pub mod keeper;
pub mod kept_shell;
pub mod labels;
pub mod lock;
pub mod proxy;
pub mod proxyfiles;
pub mod pull;
mod relay_session;
pub mod running;
pub mod spec;
mod tar;
mod writer;

pub use addresses::ContainerAddresses;
pub use backend::{DockerBackend, HealthProbe};
pub use compose::{choose_tool, ComposeCli, ComposeError, Flavour, ToolChoice, ToolLookup};
pub use dial::DockerCli;
pub use endpoint::{resolve, Endpoint, GlobalFlags};
pub use engine::Engine;
pub use haproxy::{DockerResolver, ExecChannel};
pub use journal::DockerJournal;
pub use lock::DockerProxyLock;
pub use proxy::{ProxyContainer, ProxyServiceError};
pub use proxyfiles::{remove_dead_writers_of, revive, EngineJournal};
pub use pull::{ensure_image, PullError, PullProgress, Pulled, Reference};
