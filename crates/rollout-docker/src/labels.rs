//! The labels we read (Compose's) and the labels we write (ours).

/// Compose: the project a container belongs to.
pub const PROJECT: &str = "com.docker.compose.project";
/// Compose: the service a container belongs to.
pub const SERVICE: &str = "com.docker.compose.service";
/// Compose: the hash of the service config the container was created from.
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
/// Compose: the replica number in the container's name.
pub const CONTAINER_NUMBER: &str = "com.docker.compose.container-number";
/// Compose: the version of the Compose tool that made the container
/// (`1.29.2`, `2.26.1`), which tells which tool the project is used with.
pub const COMPOSE_VERSION: &str = "com.docker.compose.version";
/// Compose: `True` on `docker compose run` containers, which are not replicas.
pub const ONEOFF: &str = "com.docker.compose.oneoff";

/// Ours: on every instance the tool launched (`true`), whether through the
/// Compose tool or as a copy. Only exited containers carrying it are the
/// tool's to remove; an exited container of the service without it (an
/// operator's crashed one, kept for a post-mortem) is left alone.
pub const LAUNCHED: &str = "io.rollout.launched";
/// Ours: the container a `retiring` keeper is about (its id).
pub const CONTAINER: &str = "io.rollout.container";
/// Ours: what a never-started container of ours keeps (`lock`, `journal`,
/// `revision`, `retiring`).
pub const KIND: &str = "io.rollout.kind";
/// Ours: the project of the service a container of ours is about.
pub const OUR_PROJECT: &str = "io.rollout.project";
/// Ours: the service a container of ours is about.
pub const OUR_SERVICE: &str = "io.rollout.service";
/// Ours: the revision (config hash) a saved spec creates.
pub const REVISION: &str = "io.rollout.revision";
/// Ours: the saved spec, JSON.
pub const SPEC: &str = "io.rollout.spec";
/// Ours: who holds a lock.
pub const HOLDER: &str = "io.rollout.holder";
/// Ours: since when, RFC 3339 UTC.
pub const SINCE: &str = "io.rollout.since";
/// Ours: a journal record, JSON.
pub const RECORD: &str = "io.rollout.record";
/// Ours: the generation of a journal record.
pub const GENERATION: &str = "io.rollout.generation";
