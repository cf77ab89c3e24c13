//! The command line: docker's argv as a plugin receives it, or the
//! standalone binary's.
//!
//! Run by the docker CLI, the plugin gets docker's whole argv after its own
//! path: docker's global flags, then its name, then its arguments
//! (`--context prod -l debug rollout -f x.yml web`). The global flags are
//! read here (they say which engine to use, and docker does not pass them on
//! any other way), everything up to `rollout` is skipped, and the rest is
//! parsed by clap. Run as `docker-rollout ...`, the same arguments are
//! parsed directly, and docker's global flags are accepted among them.
//!
//! `docker-cli-plugin-metadata` is answered before anything else is looked
//! at: the docker CLI asks for it on every invocation, `docker help` and
//! `docker info` included, so it must be instant and print only the JSON.
//!
//! Flags that override the Compose settings are checked here (an
//! out-of-range value exits 2 naming the flag, through clap) and become a
//! [`rollout_compose::Overrides`].

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use rollout_compose::{Flavour, LoadOptions, Overrides};
use rollout_core::strategy::Hold;
use rollout_core::{FailureAction, Order, PullPolicy, StrategyKind, UnknownWord, Word};
use std::ffi::OsString;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The plugin's name: `docker rollout`.
pub const PLUGIN_NAME: &str = "rollout";

/// The subcommand the docker CLI runs to read a plugin's metadata.
pub const METADATA_SUBCOMMAND: &str = "docker-cli-plugin-metadata";

/// Set by the docker CLI when it runs a plugin.
pub const PLUGIN_ENV: &str = "DOCKER_CLI_PLUGIN_ORIGINAL_CLI_COMMAND";

/// The metadata JSON the docker CLI reads (`SchemaVersion` 0.1.0 is the one
/// every CLI version accepts; `Vendor` is required).
pub fn metadata_json() -> String {
    serde_json::json!({
        "SchemaVersion": "0.1.0",
        "Vendor": "rollout",
        "Version": env!("CARGO_PKG_VERSION"),
        "ShortDescription": "Zero-downtime rollouts of Compose services",
        "URL": env!("CARGO_PKG_REPOSITORY"),
    })
    .to_string()
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// Print [`metadata_json`] and exit 0.
    Metadata,
    /// Roll out a service.
    Rollout(Box<RolloutRequest>),
    /// `docker rollout migrate ...`.
    Migrate(Box<MigrateRequest>),
    /// `docker rollout init`: put nginx in front of a service.
    Init(Box<InitRequest>),
    /// `docker rollout status|history|abort SERVICE`.
    Verb(Box<VerbRequest>),
    /// The docker CLI's completion request (the words after `__complete`).
    Complete(Vec<OsString>),
}

/// The rollout's command, for its flags (completion).
pub fn command() -> clap::Command {
    Cli::command()
}

/// The word that selects the migration verbs (a service of that name is
/// rolled out with `docker rollout -- migrate`).
pub const MIGRATE: &str = "migrate";

mod analysis;
mod hooks;
mod migrate;
mod values;
mod verbs;

pub use migrate::{ContractScope, MigrateAround, MigrateRequest, MigrateVerb};
use migrate::{MigrateCli, MigrateFlags};
use values::{canary_steps, duration, hold, node_engine, positive_duration, ratio, Steps};
pub use verbs::{Verb, VerbRequest};

/// A parsed `docker rollout init` command.
#[derive(Debug, Clone, PartialEq)]
pub struct InitRequest {
    /// docker's global flags (where the engine is, to see which Compose
    /// tool runs the project).
    pub docker: DockerGlobals,
    /// The Compose project flags.
    pub compose: ComposeArgs,
    /// What to generate.
    pub options: rollout_compose::init::InitOptions,
    /// Replace existing files, keeping each as `NAME.bak`.
    pub force: bool,
    /// Print the files instead of writing them.
    pub dry_run: bool,
}

/// The word that makes the command `docker rollout init` (a service named
/// `init` is rolled out with flags before its name, as `docker rollout
/// --strategy rolling init`).
pub const INIT_SUBCOMMAND: &str = "init";

/// A parsed `docker rollout` command.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRequest {
    /// docker's global flags (where the engine is).
    pub docker: DockerGlobals,
    /// The Compose project flags.
    pub compose: ComposeArgs,
    /// The service to roll out.
    pub service: String,
    /// Settings that win over the Compose files.
    pub overrides: Overrides,
    /// Print the plan and its simulated timeline; touch nothing.
    pub dry_run: bool,
    /// How to report progress.
    pub output: OutputFormat,
    /// Run as `docker-rollout`, not through the docker CLI.
    pub standalone: bool,
    /// How long a change of the proxy's config waits for another rollout
    /// behind the same proxy (`--lock-timeout`, default 2m).
    pub lock_timeout: Duration,
    /// `docker rollout unlock SERVICE`: show and release the service's lock
    /// instead of rolling out; `Some(true)` with `--force` (no question).
    pub unlock: Option<bool>,
    /// `--migrate DIR --database URL`: the migration phases around the
    /// rollout (expand before, backfill and contract after).
    pub migrate: Option<MigrateAround>,
    /// `--stack NAME`: the service is one of a Swarm stack (`docker stack deploy`).
    pub stack: Option<String>,
    /// `--swarm-node NODE=ENGINE`: how to reach the engine of a node other than the manager
    /// (node by id, hostname or address; engine as a docker context or a host URL), for the
    /// nginx tasks that run there.
    pub swarm_nodes: Vec<(String, String)>,
}

/// docker's global flags (`cli/flags/options.go`), as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerGlobals {
    /// `--config DIR`.
    pub config: Option<PathBuf>,
    /// `-c/--context NAME`.
    pub context: Option<String>,
    /// `-H/--host` (each one given).
    pub hosts: Vec<String>,
    /// `-D/--debug`.
    pub debug: bool,
    /// `-l/--log-level`.
    pub log_level: Option<String>,
    /// `--tls`.
    pub tls: bool,
    /// `--tlsverify` (`Some(false)` for `--tlsverify=false`).
    pub tls_verify: Option<bool>,
    /// `--tlscacert`.
    pub tls_ca_cert: Option<PathBuf>,
    /// `--tlscert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tlskey`.
    pub tls_key: Option<PathBuf>,
}

/// The Compose project flags, as `docker compose` takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComposeArgs {
    /// `-f/--file`, in order.
    pub files: Vec<PathBuf>,
    /// `-p/--project-name`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<PathBuf>,
    /// `--env-file`, in order.
    pub env_files: Vec<PathBuf>,
    /// `--profile`, in order.
    pub profiles: Vec<String>,
}

impl ComposeArgs {
    /// The options that load the project as `flavour` would.
    pub fn load_options(&self, flavour: Flavour) -> LoadOptions {
        LoadOptions {
            files: self.files.clone(),
            project_name: self.project_name.clone(),
            project_directory: self.project_directory.clone(),
            env_files: self.env_files.clone(),
            profiles: self.profiles.clone(),
            flavour,
            ..Default::default()
        }
    }
}

/// How progress is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    /// Live progress on a terminal, one line per change elsewhere.
    #[default]
    Text,
    /// One JSON event per line on stdout.
    Json,
}

/// A value parser for one of `rollout-core`'s words: clap offers, checks
/// and lists in `--help` the spellings the Compose loader accepts too, and
/// reads them with the same `FromStr`.
fn word<W>() -> impl TypedValueParser<Value = W>
where
    W: Word + FromStr<Err = UnknownWord> + Clone + Send + Sync,
{
    PossibleValuesParser::new(W::spellings()).try_map(|s| s.parse::<W>())
}

/// Zero-downtime rollout of a Compose service.
///
/// Updates SERVICE to the image its Compose file names, honouring
/// deploy.update_config (rolling), switching colours behind nginx
/// (blue-green) or shifting traffic in weighted steps (canary).
///
/// A service with no proxy yet: `docker rollout init SERVICE` writes an nginx
/// service and its config in front of it (`docker rollout init --help`).
#[derive(Debug, Parser)]
#[command(
    name = "docker rollout",
    version,
    max_term_width = 100,
    after_help = crate::environ::ENVIRONMENT
)]
struct Cli {
    /// The service to roll out.
    #[arg(value_name = "SERVICE")]
    service: String,
    /// After `unlock`: the service whose lock to show and release.
    #[arg(value_name = "UNLOCK_SERVICE", hide = true)]
    unlock_service: Option<String>,

    /// Compose configuration files (repeatable; default: COMPOSE_FILE, else compose.yaml and its override).
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILE",
        help_heading = "Compose project"
    )]
    files: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, else the directory's name).
    #[arg(
        short = 'p',
        long = "project-name",
        value_name = "NAME",
        help_heading = "Compose project"
    )]
    project_name: Option<String>,
    /// Project directory (default: the first file's directory).
    #[arg(long, value_name = "DIR", help_heading = "Compose project")]
    project_directory: Option<PathBuf>,
    /// Env files (repeatable; default: .env in the project directory).
    #[arg(
        long = "env-file",
        value_name = "FILE",
        help_heading = "Compose project"
    )]
    env_files: Vec<PathBuf>,
    /// Profiles to enable (repeatable; default: COMPOSE_PROFILES).
    #[arg(
        long = "profile",
        value_name = "PROFILE",
        help_heading = "Compose project"
    )]
    profiles: Vec<String>,

    /// Strategy (default: x-rollout.strategy, else blue-green for a colour, else rolling).
    #[arg(long, value_parser = word::<StrategyKind>(), help_heading = "Rollout")]
    strategy: Option<StrategyKind>,
    /// Print the plan and its simulated timeline without changing anything.
    #[arg(long, help_heading = "Rollout")]
    dry_run: bool,
    /// Progress format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, help_heading = "Rollout")]
    output: OutputFormat,
    /// How long a change of the proxy's config waits for another rollout behind the same proxy.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2m", help_heading = "Rollout")]
    lock_timeout: Duration,
    /// With `unlock`: release the lock without asking.
    #[arg(long, help_heading = "Rollout")]
    force: bool,
    /// The service is one of this Swarm stack (docker stack deploy): Swarm updates it.
    #[arg(long, value_name = "NAME", help_heading = "Rollout")]
    stack: Option<String>,
    /// On a Swarm stack: the engine of a node where an nginx task runs, other than the manager
    /// (NODE: its id, hostname or address; ENGINE: a docker context, or a host URL reached with
    /// the same TLS flags as the manager). Repeatable.
    #[arg(long = "swarm-node", value_name = "NODE=ENGINE", value_parser = node_engine, help_heading = "Rollout")]
    swarm_nodes: Vec<(String, String)>,
    #[command(flatten)]
    migrations: MigrateFlags,

    #[command(flatten)]
    tuning: Tuning,

    #[command(flatten)]
    analysis: analysis::AnalysisFlags,

    #[command(flatten)]
    hooks: hooks::HookFlags,

    #[command(flatten)]
    docker: DockerFlags,
}

/// Flags that override deploy.update_config and x-rollout.
#[derive(Debug, Args)]
#[command(next_help_heading = "Overrides of the Compose settings")]
struct Tuning {
    /// Instances replaced at once (0: all at once).
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    parallelism: Option<u64>,
    /// Wait between batches, such as 10s.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    delay: Option<Duration>,
    /// What to do when failures cross the ratio.
    #[arg(long, value_parser = word::<FailureAction>())]
    failure_action: Option<FailureAction>,
    /// How long a new instance is watched for failure, such as 30s.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    monitor: Option<Duration>,
    /// Failures tolerated, as a share of the instances (0 to 1).
    #[arg(long, value_name = "RATIO", allow_negative_numbers = true, value_parser = ratio)]
    max_failure_ratio: Option<f32>,
    /// Start the new instance before stopping the old, or after.
    #[arg(long, value_parser = word::<Order>())]
    order: Option<Order>,
    /// How long a new instance may take to be healthy.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    start_timeout: Option<Duration>,
    /// How long in-flight requests may take to finish after unrouting.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    drain_timeout: Option<Duration>,
    /// Canary steps: percents, each with an optional hold (10,25:1m,50:until-promoted,100).
    #[arg(long, value_name = "STEPS", value_parser = canary_steps)]
    canary_steps: Option<Steps>,
    /// Hold of canary steps that name none (a duration, or until-promoted).
    #[arg(long, value_name = "HOLD", value_parser = hold)]
    canary_hold: Option<Hold>,
    /// Stop the other colour once this one is live (blue-green).
    #[arg(long)]
    stop_old: bool,
    /// Pull the image from its registry first: always, when missing on the engine, or never (default: the service's pull_policy, else missing).
    #[arg(long, value_name = "POLICY", value_parser = word::<PullPolicy>())]
    pull: Option<PullPolicy>,
    /// Build the service's image first (compose build SERVICE); needs a build section.
    #[arg(long)]
    build: bool,
}

/// Puts nginx in front of a service that publishes its port itself.
///
/// Writes, beside the Compose file, an override (compose.rollout.yaml) with an
/// nginx service that takes over SERVICE's published port, and the nginx.conf
/// it mounts, whose upstream names SERVICE. Nothing is overwritten unless
/// --force is given (the old file is kept as NAME.bak).
#[derive(Debug, Parser)]
#[command(
    name = "docker rollout init",
    version,
    max_term_width = 100,
    after_help = crate::environ::ENVIRONMENT
)]
struct InitCli {
    /// The service to put behind nginx.
    #[arg(value_name = "SERVICE")]
    service: String,
    /// The port SERVICE serves HTTP on inside the project's network (default: its one published TCP port's target, or x-rollout.port).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// The host port nginx publishes (default: the port SERVICE published, else 80).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    proxy_port: Option<u16>,
    /// The strategy `docker rollout SERVICE` will use (written as x-rollout.strategy).
    #[arg(long, value_parser = word::<StrategyKind>(), default_value = "rolling")]
    strategy: StrategyKind,
    /// The proxy's image.
    #[arg(long, value_name = "IMAGE", default_value = rollout_compose::init::DEFAULT_PROXY_IMAGE)]
    proxy_image: String,
    /// The override's file name, written beside the Compose file.
    #[arg(short = 'o', long = "override", value_name = "NAME", default_value = rollout_compose::init::DEFAULT_OVERRIDE)]
    override_name: String,
    /// Replace files that exist (each kept as NAME.bak).
    #[arg(long)]
    force: bool,
    /// Print the files instead of writing them.
    #[arg(long)]
    dry_run: bool,

    #[command(flatten)]
    project: ProjectFlags,

    #[command(flatten)]
    docker: DockerFlags,
}

/// The Compose project flags of `init` (the same as the rollout's).
#[derive(Debug, Args)]
#[command(next_help_heading = "Compose project")]
struct ProjectFlags {
    /// Compose configuration files (repeatable; default: COMPOSE_FILE, else compose.yaml and its override).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Project name (default: COMPOSE_PROJECT_NAME, else the directory's name).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    project_name: Option<String>,
    /// Project directory (default: the first file's directory).
    #[arg(long, value_name = "DIR")]
    project_directory: Option<PathBuf>,
    /// Env files (repeatable; default: .env in the project directory).
    #[arg(long = "env-file", value_name = "FILE")]
    env_files: Vec<PathBuf>,
    /// Profiles to enable (repeatable; default: COMPOSE_PROFILES).
    #[arg(long = "profile", value_name = "PROFILE")]
    profiles: Vec<String>,
}

/// docker's global flags, accepted here for the standalone binary (as a
/// plugin, docker passes them before `rollout`).
#[derive(Debug, Args)]
#[command(next_help_heading = "Docker (standalone use; as a plugin, give them to docker)")]
struct DockerFlags {
    /// Location of client config files.
    #[arg(long, value_name = "DIR")]
    config: Option<PathBuf>,
    /// Name of the context to use.
    #[arg(short = 'c', long, value_name = "NAME")]
    context: Option<String>,
    /// Daemon socket to connect to.
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Enable debug mode.
    #[arg(short = 'D', long)]
    debug: bool,
    /// Logging level (debug, info, warn, error, fatal).
    #[arg(short = 'l', long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Use TLS; implied by --tlsverify.
    #[arg(long)]
    tls: bool,
    /// Use TLS and verify the remote.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    tlsverify: Option<bool>,
    /// Trust certs signed only by this CA.
    #[arg(long, value_name = "FILE")]
    tlscacert: Option<PathBuf>,
    /// Path to TLS certificate file.
    #[arg(long, value_name = "FILE")]
    tlscert: Option<PathBuf>,
    /// Path to TLS key file.
    #[arg(long, value_name = "FILE")]
    tlskey: Option<PathBuf>,
}

/// Parses the process's own argv and environment.
pub fn parse_env() -> Result<Invocation, clap::Error> {
    parse(
        std::env::args_os().collect(),
        std::env::var_os(PLUGIN_ENV).is_some(),
    )
}

/// Parses `argv` (with the program in `argv[0]`); `as_plugin` says the
/// docker CLI ran us (it sets [`PLUGIN_ENV`]). Errors are clap's: print
/// them with `.exit()`, which exits 2 (0 for `--help` and `--version`).
pub fn parse(argv: Vec<OsString>, as_plugin: bool) -> Result<Invocation, clap::Error> {
    let args: Vec<OsString> = argv.into_iter().skip(1).collect();
    if args.first().is_some_and(|a| a == METADATA_SUBCOMMAND) {
        return Ok(Invocation::Metadata);
    }
    if args.first().is_some_and(|a| a == crate::complete::COMPLETE) {
        return Ok(Invocation::Complete(args.into_iter().skip(1).collect()));
    }
    let (globals, rest) = if as_plugin {
        split_plugin_argv(&args)?
    } else {
        (DockerGlobals::default(), args)
    };
    if rest.first().is_some_and(|a| a == MIGRATE) {
        let name = if as_plugin {
            "docker rollout migrate"
        } else {
            "docker-rollout migrate"
        };
        let matches = MigrateCli::command()
            .name(name)
            .bin_name(name)
            .try_get_matches_from(
                std::iter::once(OsString::from(name)).chain(rest.into_iter().skip(1)),
            )?;
        let cli = MigrateCli::from_arg_matches(&matches)?;
        let mut request = cli.into_request();
        request.docker = globals;
        return Ok(Invocation::Migrate(Box::new(request)));
    }
    if let Some(at) = verbs::verb_position(&rest) {
        return verbs::parse_verb(globals, rest, at, as_plugin);
    }
    if rest.first().is_some_and(|a| a == INIT_SUBCOMMAND) {
        return parse_init(globals, rest.into_iter().skip(1), as_plugin);
    }
    let mut cmd = Cli::command().after_help(AFTER_HELP.as_str());
    if !as_plugin {
        cmd = cmd.name("docker-rollout").bin_name("docker-rollout");
    } else {
        cmd = cmd.bin_name("docker rollout");
    }
    let matches = cmd.try_get_matches_from(
        std::iter::once(OsString::from(if as_plugin {
            "docker rollout"
        } else {
            "docker-rollout"
        }))
        .chain(rest),
    )?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    // `docker rollout unlock SERVICE`: the same flags, another job (a
    // service named `unlock` alone is still rolled out).
    let unlock = match cli.unlock_service.take() {
        None => false,
        Some(service) if cli.service == "unlock" => {
            cli.service = service;
            true
        }
        Some(extra) => {
            return Err(Cli::command().error(
                ErrorKind::UnknownArgument,
                format!(
                    "unexpected argument '{extra}' (one service at a time, or `unlock SERVICE`)"
                ),
            ))
        }
    };
    let force = cli.force;
    let mut request = cli.into_request(globals, !as_plugin);
    request.unlock = unlock.then_some(force);
    Ok(Invocation::Rollout(Box::new(request)))
}

/// The end of `--help`: the other command, the exit codes, the environment.
static AFTER_HELP: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "Other commands:\n  docker rollout init SERVICE    put an nginx in front of SERVICE (init --help)\n  docker rollout migrate lint|status|apply|contract DIR\n                           schema migrations in phases (migrate --help)\n  docker rollout unlock SERVICE [--force]\n                           show who holds SERVICE's lock and release it (asks unless\n                           --force; refused while the holder runs on this machine)\n  docker rollout status SERVICE [--watch] [--output json]\n                           instances, weights, the rollout under way or paused\n  docker rollout history SERVICE [--limit N]   the last rollouts, newest first\n  docker rollout abort SERVICE   back to the old revision (running or paused rollout)\n  (a service named like a command: docker rollout -- NAME)\n\n\
         Exit codes:\n  0 done or nothing to change   1 unexpected error   2 bad input (nothing changed)\n  3 failed, rolled back   4 paused   5 the rollback failed\n  6 engine, proxy, registry or database unreachable\n  7 busy: another run holds the lock (nothing changed)   130 interrupted\n\n{}",
        crate::environ::ENVIRONMENT
    )
});

/// Parses what follows `init`.
fn parse_init(
    globals: DockerGlobals,
    rest: impl Iterator<Item = OsString>,
    as_plugin: bool,
) -> Result<Invocation, clap::Error> {
    let name = if as_plugin {
        "docker rollout init"
    } else {
        "docker-rollout init"
    };
    let matches = InitCli::command()
        .name(name)
        .bin_name(name)
        .try_get_matches_from(std::iter::once(OsString::from(name)).chain(rest))?;
    let cli = InitCli::from_arg_matches(&matches)?;
    let p = cli.project;
    Ok(Invocation::Init(Box::new(InitRequest {
        docker: cli.docker.merge(globals),
        compose: ComposeArgs {
            files: p.files,
            project_name: p.project_name,
            project_directory: p.project_directory,
            env_files: p.env_files,
            profiles: p.profiles,
        },
        options: rollout_compose::init::InitOptions {
            service: cli.service,
            port: cli.port,
            proxy_port: cli.proxy_port,
            strategy: cli.strategy,
            proxy_image: cli.proxy_image,
            override_name: cli.override_name,
        },
        force: cli.force,
        dry_run: cli.dry_run,
    })))
}

impl DockerFlags {
    /// These flags over the ones given before the plugin's name.
    fn merge(self, before: DockerGlobals) -> DockerGlobals {
        let d = self;
        let mut hosts = before.hosts;
        hosts.extend(d.hosts);
        DockerGlobals {
            config: d.config.or(before.config),
            context: d.context.or(before.context),
            hosts,
            debug: d.debug || before.debug,
            log_level: d.log_level.or(before.log_level),
            tls: d.tls || before.tls,
            tls_verify: d.tlsverify.or(before.tls_verify),
            tls_ca_cert: d.tlscacert.or(before.tls_ca_cert),
            tls_cert: d.tlscert.or(before.tls_cert),
            tls_key: d.tlskey.or(before.tls_key),
        }
    }
}

impl Cli {
    fn into_request(self, before: DockerGlobals, standalone: bool) -> RolloutRequest {
        let docker = self.docker.merge(before);
        let t = self.tuning;
        let mut overrides = Overrides {
            strategy: self.strategy,
            parallelism: t.parallelism,
            delay: t.delay,
            failure_action: t.failure_action,
            monitor: t.monitor,
            max_failure_ratio: t.max_failure_ratio,
            order: t.order,
            start_timeout: t.start_timeout,
            drain_timeout: t.drain_timeout,
            canary_steps: t.canary_steps.map(|s| s.0),
            canary_hold: t.canary_hold,
            stop_old: t.stop_old.then_some(true),
            pull: t.pull,
            build: t.build.then_some(true),
            hooks: self.hooks.into_hooks(),
            ..Default::default()
        };
        self.analysis.apply(&mut overrides);
        RolloutRequest {
            docker,
            compose: ComposeArgs {
                files: self.files,
                project_name: self.project_name,
                project_directory: self.project_directory,
                env_files: self.env_files,
                profiles: self.profiles,
            },
            service: self.service,
            overrides,
            dry_run: self.dry_run,
            output: self.output,
            standalone,
            lock_timeout: self.lock_timeout,
            unlock: None,
            migrate: self.migrations.into_around(),
            stack: self.stack,
            swarm_nodes: self.swarm_nodes,
        }
    }
}

/// docker's global flags that take a value.
const VALUE_FLAGS: &[(&str, Option<char>)] = &[
    ("config", None),
    ("context", Some('c')),
    ("host", Some('H')),
    ("log-level", Some('l')),
    ("tlscacert", None),
    ("tlscert", None),
    ("tlskey", None),
];

/// Splits docker's argv into its global flags (read) and what follows the
/// plugin's name.
fn split_plugin_argv(args: &[OsString]) -> Result<(DockerGlobals, Vec<OsString>), clap::Error> {
    let mut g = DockerGlobals::default();
    let mut i = 0;
    let err = |m: String| {
        Cli::command()
            .bin_name("docker rollout")
            .error(ErrorKind::InvalidValue, m)
    };
    while i < args.len() {
        let arg = args[i].to_string_lossy().into_owned();
        i += 1;
        if arg == PLUGIN_NAME {
            return Ok((g, args[i..].to_vec()));
        }
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            let mut chars = short.chars();
            let c = chars.next().unwrap_or_default();
            let tail: String = chars.collect();
            let long = match c {
                'c' => "context",
                'H' => "host",
                'l' => "log-level",
                'D' => "debug",
                _ => {
                    return Err(err(format!(
                        "unknown docker flag {arg:?} before {PLUGIN_NAME:?}"
                    )))
                }
            };
            let inline = (!tail.is_empty()).then(|| tail.trim_start_matches('=').to_string());
            (long.to_string(), inline)
        } else {
            return Err(err(format!(
                "expected docker's global flags and then {PLUGIN_NAME:?}, found {arg:?}"
            )));
        };
        if VALUE_FLAGS.iter().any(|(n, _)| *n == name) {
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| err(format!("docker flag --{name} needs a value")))?;
                    i += 1;
                    v.to_string_lossy().into_owned()
                }
            };
            match name.as_str() {
                "config" => g.config = Some(value.into()),
                "context" => g.context = Some(value),
                "host" => g.hosts.push(value),
                "log-level" => g.log_level = Some(value),
                "tlscacert" => g.tls_ca_cert = Some(value.into()),
                "tlscert" => g.tls_cert = Some(value.into()),
                _ => g.tls_key = Some(value.into()),
            }
        } else {
            let on = match inline.as_deref() {
                None | Some("true") | Some("1") => true,
                Some("false") | Some("0") => false,
                Some(v) => {
                    return Err(err(format!(
                        "docker flag --{name}: expected true or false, found {v:?}"
                    )))
                }
            };
            match name.as_str() {
                "debug" => g.debug = on,
                "tls" => g.tls = on,
                "tlsverify" => g.tls_verify = Some(on),
                // A flag of a newer docker: it changes nothing we do.
                _ => {}
            }
        }
    }
    Err(err(format!(
        "the plugin's name {PLUGIN_NAME:?} is missing from the arguments docker passed"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_compose::StepOverride;

    fn argv(s: &str) -> Vec<OsString> {
        std::iter::once("/usr/lib/docker/cli-plugins/docker-rollout")
            .chain(s.split_whitespace())
            .map(OsString::from)
            .collect()
    }

    fn plugin(s: &str) -> RolloutRequest {
        match parse(argv(s), true).unwrap() {
            Invocation::Rollout(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn standalone(s: &str) -> RolloutRequest {
        match parse(argv(s), false).unwrap() {
            Invocation::Rollout(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    fn error(s: &str, as_plugin: bool) -> (i32, String) {
        let e = parse(argv(s), as_plugin).unwrap_err();
        (e.exit_code(), e.to_string())
    }

    #[test]
    fn swarm_nodes_are_named_node_equals_engine() {
        let r = plugin(
            "rollout --stack shop web --swarm-node 10.0.0.2=node2 --swarm-node box=ssh://admin@box",
        );
        assert_eq!(r.stack.as_deref(), Some("shop"));
        assert_eq!(
            r.swarm_nodes,
            [
                ("10.0.0.2".to_string(), "node2".to_string()),
                ("box".to_string(), "ssh://admin@box".to_string())
            ]
        );
        for bad in ["node2", "=node2", "10.0.0.2="] {
            let (code, text) = error(
                &format!("rollout --stack shop web --swarm-node {bad}"),
                true,
            );
            assert_eq!(code, 2, "{bad}: {text}");
            assert!(text.contains("expected NODE=ENGINE"), "{bad}: {text}");
        }
    }

    #[test]
    fn migrate_around_a_rollout_needs_a_database_and_never_shows_it() {
        let r = plugin("rollout web --migrate db/m --database postgres://u:hunter2@h/d");
        let m = r.migrate.clone().expect("--migrate");
        assert_eq!(m.dir, PathBuf::from("db/m"));
        assert_eq!(m.database, "postgres://u:hunter2@h/d");
        assert!(!format!("{r:?}").contains("hunter2"), "{r:?}");
        assert_eq!(
            (m.lock_timeout, m.attempts),
            (Duration::from_secs(1), 10),
            "rollout-migrate's defaults"
        );
        let m = plugin("rollout web --migrate db/m --database postgres://h/d --migrate-lock-timeout 300ms --migrate-attempts 3")
            .migrate
            .unwrap();
        assert_eq!(
            (m.lock_timeout, m.attempts),
            (Duration::from_millis(300), 3)
        );
        let (code, message) = error(
            "rollout web --migrate db/m --database postgres://h/d --migrate-attempts 0",
            true,
        );
        assert_eq!(code, 2);
        assert!(message.contains("--migrate-attempts"), "{message}");
        assert_eq!(plugin("rollout web").migrate, None);
        if std::env::var_os("ROLLOUT_DATABASE_URL").is_none() {
            let (code, message) = error("rollout web --migrate db/m", true);
            assert_eq!(code, 2);
            assert!(message.contains("--database"), "{message}");
        }
    }

    #[test]
    fn init_is_a_subcommand_with_its_own_flags() {
        let Invocation::Init(r) = parse(
            argv("--context prod rollout init web --port 8000 --proxy-port 8080 --strategy canary -o x.yaml --force -f c.yaml"),
            true,
        )
        .unwrap() else {
            panic!("not init")
        };
        assert_eq!(r.docker.context.as_deref(), Some("prod"));
        assert_eq!(r.options.service, "web");
        assert_eq!(
            (r.options.port, r.options.proxy_port),
            (Some(8000), Some(8080))
        );
        assert_eq!(r.options.strategy, StrategyKind::Canary);
        assert_eq!(r.options.override_name, "x.yaml");
        assert_eq!(r.options.proxy_image, "nginx:stable");
        assert!(r.force && !r.dry_run);
        assert_eq!(r.compose.files, vec![PathBuf::from("c.yaml")]);
        let (code, msg) = error("init web --port 0", false);
        assert_eq!(code, 2, "{msg}");
        // A service named init is rolled out with a flag before its name.
        assert_eq!(plugin("rollout --strategy rolling init").service, "init");
    }

    #[test]
    fn unlock_takes_the_next_word_as_the_service_and_the_lock_timeout_a_duration() {
        let r = plugin("rollout --project-name shop unlock app --force");
        assert_eq!((r.service.as_str(), r.unlock), ("app", Some(true)));
        assert_eq!(r.compose.project_name.as_deref(), Some("shop"));
        let r = plugin("rollout unlock web");
        assert_eq!((r.service.as_str(), r.unlock), ("web", Some(false)));
        // A service named unlock is rolled out.
        let r = plugin("rollout unlock");
        assert_eq!((r.service.as_str(), r.unlock), ("unlock", None));
        assert_eq!(r.lock_timeout, Duration::from_secs(120));
        let r = plugin("rollout app --lock-timeout 5s");
        assert_eq!(r.lock_timeout, Duration::from_secs(5));
        assert_eq!(error("rollout app web", true).0, 2);
        assert_eq!(error("rollout app --lock-timeout 0s", true).0, 2);
        let help = error("rollout --help", true).1;
        assert!(help.contains("7 busy"), "{help}");
        assert!(help.contains("docker rollout unlock SERVICE"), "{help}");
    }

    #[test]
    fn metadata_is_answered_first_and_is_the_json_docker_reads() {
        assert_eq!(
            parse(argv("docker-cli-plugin-metadata"), false).unwrap(),
            Invocation::Metadata
        );
        assert_eq!(
            parse(argv("docker-cli-plugin-metadata"), true).unwrap(),
            Invocation::Metadata
        );
        let v: serde_json::Value = serde_json::from_str(&metadata_json()).unwrap();
        assert_eq!(v["SchemaVersion"], "0.1.0");
        assert_eq!(v["Vendor"], "rollout");
        assert_eq!(v["Version"], env!("CARGO_PKG_VERSION"));
        assert!(v["ShortDescription"].as_str().unwrap().len() > 10);
        assert!(v["URL"].is_string());
        assert_eq!(v.as_object().unwrap().len(), 5);
    }

    #[test]
    fn docker_global_flags_come_before_the_plugin_name() {
        let r = plugin(
            "--context prod -l debug -D --tlsverify --tlscacert=/c/ca.pem -H tcp://h:1 --config /cfg rollout -f a.yml -f b.yml -p shop web",
        );
        assert_eq!(r.docker.context.as_deref(), Some("prod"));
        assert_eq!(r.docker.log_level.as_deref(), Some("debug"));
        assert!(r.docker.debug);
        assert_eq!(r.docker.tls_verify, Some(true));
        assert_eq!(r.docker.tls_ca_cert, Some(PathBuf::from("/c/ca.pem")));
        assert_eq!(r.docker.hosts, ["tcp://h:1"]);
        assert_eq!(r.docker.config, Some(PathBuf::from("/cfg")));
        assert_eq!(
            r.compose.files,
            [PathBuf::from("a.yml"), PathBuf::from("b.yml")]
        );
        assert_eq!(r.compose.project_name.as_deref(), Some("shop"));
        assert_eq!(r.service, "web");
        assert!(!r.standalone);

        let r = plugin("-cprod --tlsverify=false rollout web");
        assert_eq!(r.docker.context.as_deref(), Some("prod"));
        assert_eq!(r.docker.tls_verify, Some(false));

        // A service named like the plugin is fine after the plugin's name.
        assert_eq!(plugin("rollout rollout").service, "rollout");
    }

    #[test]
    fn standalone_takes_the_same_arguments_and_dockers_flags() {
        let r = standalone(
            "--context prod -H unix:///x.sock web --env-file a.env --profile p --profile q",
        );
        assert!(r.standalone);
        assert_eq!(r.docker.context.as_deref(), Some("prod"));
        assert_eq!(r.docker.hosts, ["unix:///x.sock"]);
        assert_eq!(r.compose.env_files, [PathBuf::from("a.env")]);
        assert_eq!(r.compose.profiles, ["p", "q"]);
        let o = r.compose.load_options(Flavour::V1);
        assert_eq!(o.profiles, ["p", "q"]);
        assert_eq!(o.flavour, Flavour::V1);
    }

    #[test]
    fn overrides_and_output() {
        let r = standalone(
            "app --strategy canary --parallelism 0 --delay 1m30s --failure-action rollback --monitor 30s \
             --max-failure-ratio 0.3 --order start-first --start-timeout 2m --drain-timeout 0s \
             --canary-steps 10,25:1m,50:until-promoted,100 --canary-hold 5s --stop-old --dry-run --output json \
             --pull always --build",
        );
        let o = &r.overrides;
        assert_eq!(o.strategy, Some(StrategyKind::Canary));
        assert_eq!(o.parallelism, Some(0));
        assert_eq!(o.delay, Some(Duration::from_secs(90)));
        assert_eq!(o.failure_action, Some(FailureAction::Rollback));
        assert_eq!(o.monitor, Some(Duration::from_secs(30)));
        assert_eq!(o.max_failure_ratio, Some(0.3));
        assert_eq!(o.order, Some(Order::StartFirst));
        assert_eq!(o.start_timeout, Some(Duration::from_secs(120)));
        assert_eq!(o.drain_timeout, Some(Duration::ZERO));
        assert_eq!(
            o.canary_steps.as_deref(),
            Some(
                &[
                    StepOverride {
                        percent: 10,
                        hold: None
                    },
                    StepOverride {
                        percent: 25,
                        hold: Some(Hold::For(Duration::from_secs(60)))
                    },
                    StepOverride {
                        percent: 50,
                        hold: Some(Hold::UntilPromoted)
                    },
                    StepOverride {
                        percent: 100,
                        hold: None
                    },
                ][..]
            )
        );
        assert_eq!(o.canary_hold, Some(Hold::For(Duration::from_secs(5))));
        assert_eq!(o.stop_old, Some(true));
        assert_eq!(o.pull, Some(PullPolicy::Always));
        assert_eq!(o.build, Some(true));
        assert!(r.dry_run);
        assert_eq!(r.output, OutputFormat::Json);

        let plain = standalone("app");
        assert_eq!(plain.overrides, Overrides::default());
        assert_eq!(plain.output, OutputFormat::Text);
        assert!(!plain.dry_run);
    }

    #[test]
    fn out_of_range_flags_exit_2_naming_the_flag() {
        let cases = [
            (
                "app --parallelism -1",
                "invalid value '-1' for '--parallelism <N>'",
            ),
            (
                "app --max-failure-ratio -0.5",
                "invalid value '-0.5' for '--max-failure-ratio <RATIO>'",
            ),
            ("app --parallelism two", "--parallelism"),
            (
                "app --max-failure-ratio 1.5",
                "expected a ratio from 0 to 1, found \"1.5\"",
            ),
            ("app --delay 10", "--delay"),
            ("app --start-timeout 0s", "must be longer than 0s"),
            ("app --strategy big-bang", "--strategy"),
            ("app --order first", "--order"),
            ("app --failure-action explode", "--failure-action"),
            (
                "app --canary-steps 10,5,100",
                "steps must increase, found 5 after 10",
            ),
            (
                "app --canary-steps 10,50",
                "the last step must be 100, found 50",
            ),
            (
                "app --canary-steps 0,100",
                "a step must be a percent from 1 to 100, found \"0\"",
            ),
            ("app --canary-steps 50:soon,100", "--canary-steps"),
            ("app --output yaml", "--output"),
            (
                "app --pull sometimes",
                "invalid value 'sometimes' for '--pull <POLICY>'",
            ),
            ("app --pull", "--pull"),
            ("", "SERVICE"),
            ("app other", "unexpected argument 'other'"),
        ];
        for (args, needle) in cases {
            let (code, msg) = error(args, false);
            assert_eq!(code, 2, "{args}: {msg}");
            assert!(msg.contains(needle), "{args}: {msg}");
        }
        let (code, msg) = error("--max-failure-ratio 2 rollout app", true);
        assert_eq!(code, 2);
        assert!(
            msg.contains("unknown docker flag") || msg.contains("docker"),
            "{msg}"
        );
        let (code, msg) = error("--context", true);
        assert_eq!(code, 2);
        assert!(msg.contains("docker flag --context needs a value"), "{msg}");
        let (code, msg) = error("--debug", true);
        assert_eq!(code, 2);
        assert!(msg.contains("is missing from the arguments"), "{msg}");
    }

    fn migrate(s: &str, as_plugin: bool) -> MigrateRequest {
        match parse(argv(s), as_plugin).unwrap() {
            Invocation::Migrate(r) => *r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn migrate_verbs_are_parsed_and_a_service_named_migrate_still_rolls_out() {
        let r = migrate("-H unix:///x.sock rollout migrate lint db/migrations", true);
        assert_eq!(r.dir, PathBuf::from("db/migrations"));
        assert_eq!(r.verb, MigrateVerb::Lint);
        let r = migrate(
            "migrate apply m --phase backfill --database postgres://a@h/db --release v2 --lock-timeout 500ms --attempts 3",
            false,
        );
        let MigrateVerb::Apply {
            database,
            phase,
            options,
            scope,
            force,
        } = r.verb
        else {
            panic!("{:?}", r.verb)
        };
        assert!(scope.services.is_empty() && !force);
        assert_eq!(database, "postgres://a@h/db");
        assert_eq!(phase, rollout_migrate::Phase::Backfill);
        assert_eq!(options.release, "v2");
        assert_eq!(options.lock_timeout, Duration::from_millis(500));
        assert_eq!(options.statement_timeout, Duration::from_secs(60));
        assert_eq!(options.attempts, 3);
        let r = migrate("migrate status m --database postgres://a@h/db", false);
        assert_eq!(
            r.verb,
            MigrateVerb::Status {
                database: "postgres://a@h/db".into()
            }
        );
        assert_eq!(plugin("rollout -- migrate").service, "migrate");
        for (args, needle) in [
            ("migrate contract m --database x", "<SERVICE>"),
            ("migrate apply m --phase later --database x", "--phase"),
            (
                "migrate apply m --phase expand --database x --attempts 0",
                "--attempts",
            ),
            (
                "migrate apply m --phase expand --database x --lock-timeout 0s",
                "must be longer than 0s",
            ),
            ("migrate frobnicate m", "frobnicate"),
        ] {
            let (code, msg) = error(args, false);
            assert_eq!(code, 2, "{args}: {msg}");
            assert!(msg.contains(needle), "{args}: {msg}");
        }
    }

    #[test]
    fn help_names_the_command_as_it_was_run() {
        let e = parse(argv("rollout --help"), true).unwrap_err();
        assert_eq!(e.exit_code(), 0);
        assert!(e.to_string().contains("Usage: docker rollout"), "{e}");
        let e = parse(argv("--help"), false).unwrap_err();
        assert!(e.to_string().contains("Usage: docker-rollout"), "{e}");
        assert!(e.to_string().contains("--max-failure-ratio <RATIO>"), "{e}");
        assert!(e.to_string().contains("--pull <POLICY>"), "{e}");
        assert!(e.to_string().contains("--build"), "{e}");
        for switch in [
            "ROLLOUT_COMPOSE",
            "ROLLOUT_NO_PROGRESS",
            "NO_COLOR",
            "CLICOLOR_FORCE",
        ] {
            assert!(
                e.to_string().contains(switch),
                "{switch} not in --help: {e}"
            );
        }
    }
}
