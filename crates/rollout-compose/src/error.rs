//! What can go wrong while loading a project, each error naming where.

use rollout_core::ServiceRef;
use rollout_core::StrategyKind;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Where a node was written: the file as the operator named it, and a
/// 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pos {
    /// The file, as given with `-f` or as found (relative to the working
    /// directory where it is below it).
    pub file: Arc<str>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl Pos {
    /// A position in `file`.
    pub fn new(file: Arc<str>, line: usize, column: usize) -> Self {
        Self { file, line, column }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A project could not be loaded, or a setting in it is wrong. Nothing was
/// changed; the plugin maps every variant to exit code 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComposeError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML itself is malformed.
    #[error("{pos}: {message}")]
    Syntax {
        /// Where the parser stopped.
        pos: Pos,
        /// What it said.
        message: String,
    },
    /// A field has a value that cannot be used.
    #[error("{pos}: {path}: {message}")]
    Field {
        /// Where the value was written (after merging: the file that won).
        pos: Pos,
        /// The field's path, such as `services.app.deploy.replicas`.
        path: String,
        /// What is wrong, quoting what was found.
        message: String,
    },
    /// A line of an env file (`.env`, `--env-file`) cannot be read.
    #[error("{}:{line}: {message}", path.display())]
    EnvFile {
        /// The env file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No `-f`, no `COMPOSE_FILE`, and no default file in the directory or
    /// its parents.
    #[error("no compose file found in {} or its parents\nhint: pass -f FILE, or run from the project's directory (looked for compose.yaml, compose.yml, docker-compose.yml and docker-compose.yaml)", dir.display())]
    NoComposeFile {
        /// Where the search began.
        dir: PathBuf,
    },
    /// The project name given cannot be a Compose project name.
    #[error("{origin} {name:?} is not a valid project name: {why}\nhint: use lowercase letters, digits, '-' and '_', starting with a letter or digit")]
    ProjectName {
        /// The name given.
        name: String,
        /// Where it came from (`-p`, `COMPOSE_PROJECT_NAME`, the `name` field, the directory).
        origin: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// The service asked for is not in the project.
    #[error("no service {name:?} in project {project}; its services are: {}", known.join(", "))]
    UnknownService {
        /// The name asked for.
        name: String,
        /// The project.
        project: String,
        /// The services the project has, sorted.
        known: Vec<String>,
    },
    /// A command-line setting is out of range.
    #[error("{flag}: {message}")]
    Override {
        /// The flag, such as `--parallelism`.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// Several nginx services could be the one in front, and none is named.
    #[error("several nginx services could be in front of {service}: {}\nhint: name the one that routes it with x-rollout.proxy", .candidates.join(", "))]
    SeveralProxies {
        /// The service rolled out.
        service: ServiceRef,
        /// The nginx services found, sorted.
        candidates: Vec<String>,
    },
    /// The service has no proxy in front, and the rollout needs one to move
    /// its traffic (blue-green, canary, two colours, the tool's own probe),
    /// or clients reach it directly through published ports.
    #[error("no proxy is in front of {service} in this project, and {why}\nhint: {hint}")]
    NeedsProxy {
        /// The service rolled out.
        service: ServiceRef,
        /// What needs the proxy.
        why: String,
        /// What to do.
        hint: String,
    },
    /// The service has no image to start new instances from (neither
    /// `image:` nor `build:`).
    #[error("service {} has no image: a rollout needs one to start new instances from\nhint: give it an image: tag, or a build: section, in the Compose file", service.service)]
    NoImage {
        /// The service rolled out.
        service: ServiceRef,
    },
    /// Old and new instances cannot run side by side (host ports,
    /// `container_name`), and the strategy needs them to.
    #[error("{service} cannot run old and new instances side by side ({why}), which {strategy} needs\nhint: remove the host port or container_name, or use --strategy rolling")]
    NotSideBySide {
        /// The service rolled out.
        service: ServiceRef,
        /// Why not, each reason apart by `; `.
        why: String,
        /// The strategy.
        strategy: StrategyKind,
    },
    /// Old and new instances cannot run side by side, and stop-first would
    /// stop every replica at once.
    #[error("{service} cannot run old and new instances side by side ({why}), and stop-first with {replicas} replica{} would leave none serving\nhint: remove the host port or container_name, or run more replicas than --parallelism", if *.replicas == 1 { "" } else { "s" })]
    NoneServing {
        /// The service rolled out.
        service: ServiceRef,
        /// Why not, each reason apart by `; `.
        why: String,
        /// Its desired replicas.
        replicas: usize,
    },
}

impl ComposeError {
    pub(crate) fn field(pos: &Pos, path: &str, message: impl Into<String>) -> Self {
        ComposeError::Field {
            pos: pos.clone(),
            path: path.to_string(),
            message: message.into(),
        }
    }
}
