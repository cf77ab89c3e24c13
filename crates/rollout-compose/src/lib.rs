//! A Compose project, read the way `docker compose` reads it, for a tool
//! that rolls out one of its services.
//!
//! `docker rollout` is a Docker CLI plugin, not a Compose subcommand, yet it
//! must see the same project the operator's `docker compose` sees: the same
//! files (`-f`, `COMPOSE_FILE`, the default names and the override file),
//! merged by the same rules (with each file's `extends` followed first), the same variables (`.env`, `--env-file`, the
//! process environment) interpolated with the same syntax, the same project
//! name (it is the `com.docker.compose.project` label that finds the
//! containers) and the same profiles. [`Project::load`] does that, for
//! either Compose tool ([`Flavour`]): Compose 1.29 and 2.x differ in default
//! file names, in how strictly a project name is checked, and in container
//! names.
//!
//! From a loaded project, [`Project::settings`] gives what a rollout of one
//! service needs, in `rollout-core`'s types: the `deploy.update_config` and
//! `rollback_config` with Swarm's defaults (which plain Compose ignores),
//! the health check and `stop_grace_period`, the traffic layout (one
//! service, or the seed's two colours `blue` and `green`), and what Compose
//! has no field for, from the `x-rollout` extension (strategy, proxy
//! service, upstream, port, canary steps and holds, start and drain
//! timeouts, the tool's own health probe, verification, `stop_old`). The
//! project's `x-rollout` applies to every service, a service's own wins
//! field by field, and [`Overrides`] from the command line win over both.
//!
//! Every bad input is an error that names the file, line and column of the
//! value and the field's path, after interpolation and merging (the file
//! that gave the value is the one named); the YAML is read by a parser that
//! keeps positions ([`yaml`]) rather than serde_yaml, whose values carry
//! none. No input panics: depth and alias expansion are bounded.
//!
//! [`init`] says what `docker rollout init` adds to a project whose
//! service has no proxy yet: an override file (serialized from typed
//! values) and what its nginx config must hold.
//!
//! Edges: this crate reads files and nothing else. It does not talk to
//! Docker, compute the config hash (the Compose tool does, with
//! `config --hash`) or validate fields it does not read; Compose does that
//! when the backend runs it.
#![deny(missing_docs)]

pub mod envfile;
pub mod error;
mod extends;
mod hooks;
pub mod init;
pub mod interpolate;
pub mod merge;
pub mod model;
pub mod project;
mod read;
pub mod settings;
pub mod yaml;

pub use error::{ComposeError, Pos};
pub use model::{Dependency, HealthTest, Healthcheck, Mount, MountKind, Port, RolloutExt, Service};
pub use project::{normalize_project_name, Flavour, LoadOptions, Project, ProjectNames};
pub use settings::{built_image, check_steps, Overrides, ProxyKind, Settings, StepOverride};
