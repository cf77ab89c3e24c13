//! `docker rollout status|history|abort|undo|promote|pause|resume SERVICE`: the command
//! line of the operator's verbs (run by `verbs.rs`, `promote.rs`, `steer.rs`). A service named like a verb is
//! rolled out with `docker rollout -- NAME`.

use super::*;

/// The words that select a verb.
pub const VERBS: &[&str] = &[
    "status", "history", "abort", "undo", "promote", "pause", "resume",
];

/// A parsed operator's verb.
#[derive(Debug, Clone, PartialEq)]
pub struct VerbRequest {
    /// The same request a rollout of the service would be (the project,
    /// the engine, the output format); `abort` with no rollout running
    /// runs it to finish the rollback.
    pub rollout: RolloutRequest,
    /// What to do.
    pub verb: Verb,
}

/// The operator's verbs.
#[derive(Debug, Clone, PartialEq)]
pub enum Verb {
    /// Where the service stands.
    Status {
        /// Print again every this long (`--watch`).
        watch: Option<Duration>,
        /// With `--watch`: stop after this many prints.
        count: Option<u32>,
    },
    /// The service's last rollouts, newest first.
    History {
        /// At most this many.
        limit: usize,
    },
    /// Back to the old revision.
    Abort {
        /// How long to wait for a running rollout to roll back.
        timeout: Duration,
    },
    /// Back to the revision that served before the last completed
    /// rollout (image and configuration), by a rollout to it.
    Undo,
    /// A canary to its next step, or with `full` to the last: a paused
    /// one by the rollout path, a running one told.
    Promote {
        /// `--full`: to 100 %, no step held between.
        full: bool,
        /// How long to wait for a running canary to act on it.
        timeout: Duration,
    },
    /// A rollout running in another process to hold at its next safe point.
    Pause {
        /// How long to wait for it to hold.
        timeout: Duration,
    },
    /// A rollout held by `pause` to go on.
    Resume {
        /// How long to wait for it to go on.
        timeout: Duration,
    },
}

/// The operator's verbs of `docker rollout`.
#[derive(Debug, Parser)]
#[command(name = "docker rollout", version, max_term_width = 100)]
pub(super) struct VerbCli {
    #[command(subcommand)]
    verb: VerbCommand,
}

#[derive(Debug, Subcommand)]
enum VerbCommand {
    /// Where SERVICE stands: revision and image per instance, the proxy's weights, the rollout under way or paused (its step, the last verdict), from what the engine keeps.
    Status {
        /// The service.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// Print again every --interval until interrupted (or --count prints).
        #[arg(long)]
        watch: bool,
        /// With --watch: how often.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2s")]
        interval: Duration,
        /// With --watch: stop after this many prints.
        #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u32).range(1..))]
        count: Option<u32>,
        #[command(flatten)]
        common: VerbFlags,
    },
    /// SERVICE's last rollouts, newest first: when, from, to, outcome, steps, exit code.
    History {
        /// The service.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// At most this many entries.
        #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
        #[command(flatten)]
        common: VerbFlags,
    },
    /// Back to the old revision: tells a running rollout to roll back, or rolls a paused or crashed one back itself (same protocol; exit 0 when the old revision serves).
    Abort {
        /// The service.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// How long to wait for a running rollout to finish its rollback.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "5m")]
        timeout: Duration,
        /// How long a change of the proxy's config waits for another rollout behind the same proxy.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2m")]
        lock_timeout: Duration,
        #[command(flatten)]
        common: VerbFlags,
    },
    /// Back to the revision that served before SERVICE's last completed rollout (image and configuration together, launched from its saved spec), by a rollout with the same protocol; the Compose file is not changed.
    Undo {
        /// The service.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// How long a change of the proxy's config waits for another rollout behind the same proxy.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2m")]
        lock_timeout: Duration,
        #[command(flatten)]
        common: VerbFlags,
    },
    /// A canary of SERVICE on to its next step (or with --full to 100 %): a paused one with the same protocol as the rollout (exit 0 when it completes, 4 when it pauses again); one running in another process is told, and its step's hold ends now (exit 0 once it moved on).
    Promote {
        /// The service.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// Straight to the last step (100 %), holding at no step between.
        #[arg(long)]
        full: bool,
        /// How long to wait for a running canary to move on.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2m")]
        timeout: Duration,
        /// How long a change of the proxy's config waits for another rollout behind the same proxy.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2m")]
        lock_timeout: Duration,
        #[command(flatten)]
        common: VerbFlags,
    },
    /// Holds the rollout of SERVICE running in another process at its next safe point: a canary at its step (the hold's clock stops), a rolling update before its next slot, blue-green before its switch; failures and the analysis are still watched. Exit 0 once it holds.
    Pause {
        /// The service.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// How long to wait for it to hold (a rolling slot in flight finishes first).
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2m")]
        timeout: Duration,
        #[command(flatten)]
        common: VerbFlags,
    },
    /// Lets the rollout of SERVICE held by `docker rollout pause` go on (a canary's hold resumes where it stopped). Exit 0 once it goes on.
    Resume {
        /// The service.
        #[arg(value_name = "SERVICE")]
        service: String,
        /// How long to wait for it to go on.
        #[arg(long, value_name = "DURATION", value_parser = positive_duration, default_value = "2m")]
        timeout: Duration,
        #[command(flatten)]
        common: VerbFlags,
    },
}

/// What every verb takes.
#[derive(Debug, Args)]
struct VerbFlags {
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    output: OutputFormat,
    #[command(flatten)]
    project: ProjectFlags,
    #[command(flatten)]
    docker: DockerFlags,
}

/// The flags before a verb that take a value (the project's, docker's and
/// the verbs' own), so that `-p shop status app` finds `status`.
const VALUE_FLAGS_BEFORE: &[&str] = &[
    "-f",
    "--file",
    "-p",
    "--project-name",
    "--project-directory",
    "--env-file",
    "--profile",
    "--output",
    "--config",
    "-c",
    "--context",
    "-H",
    "--host",
    "-l",
    "--log-level",
    "--tlscacert",
    "--tlscert",
    "--tlskey",
    "--interval",
    "--count",
    "--limit",
    "--timeout",
    "--lock-timeout",
];

/// Where the verb is in `rest`: the first word that is not a flag or a
/// flag's value, when it is one of [`VERBS`] (a service after `--` is not).
pub(super) fn verb_position(rest: &[OsString]) -> Option<usize> {
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].to_string_lossy();
        if a == "--" {
            return None;
        }
        if a.starts_with('-') {
            i += if VALUE_FLAGS_BEFORE.contains(&a.as_ref()) {
                2
            } else {
                1
            };
            continue;
        }
        return VERBS.contains(&a.as_ref()).then_some(i);
    }
    None
}

/// Parses `rest`, whose word at `at` is the verb.
pub(super) fn parse_verb(
    globals: DockerGlobals,
    mut rest: Vec<OsString>,
    at: usize,
    as_plugin: bool,
) -> Result<Invocation, clap::Error> {
    let verb = rest.remove(at);
    rest.insert(0, verb);
    let name = if as_plugin {
        "docker rollout"
    } else {
        "docker-rollout"
    };
    let matches = VerbCli::command()
        .name(name)
        .bin_name(name)
        .try_get_matches_from(std::iter::once(OsString::from(name)).chain(rest))?;
    let cli = VerbCli::from_arg_matches(&matches)?;
    let (service, common, verb, lock_timeout) = match cli.verb {
        VerbCommand::Status {
            service,
            watch,
            interval,
            count,
            common,
        } => (
            service,
            common,
            Verb::Status {
                watch: watch.then_some(interval),
                count,
            },
            None,
        ),
        VerbCommand::History {
            service,
            limit,
            common,
        } => (
            service,
            common,
            Verb::History {
                limit: limit as usize,
            },
            None,
        ),
        VerbCommand::Abort {
            service,
            timeout,
            lock_timeout,
            common,
        } => (service, common, Verb::Abort { timeout }, Some(lock_timeout)),
        VerbCommand::Undo {
            service,
            lock_timeout,
            common,
        } => (service, common, Verb::Undo, Some(lock_timeout)),
        VerbCommand::Promote {
            service,
            full,
            timeout,
            lock_timeout,
            common,
        } => (
            service,
            common,
            Verb::Promote { full, timeout },
            Some(lock_timeout),
        ),
        VerbCommand::Pause {
            service,
            timeout,
            common,
        } => (service, common, Verb::Pause { timeout }, None),
        VerbCommand::Resume {
            service,
            timeout,
            common,
        } => (service, common, Verb::Resume { timeout }, None),
    };
    let p = common.project;
    let rollout = RolloutRequest {
        docker: common.docker.merge(globals),
        compose: ComposeArgs {
            files: p.files,
            project_name: p.project_name,
            project_directory: p.project_directory,
            env_files: p.env_files,
            profiles: p.profiles,
        },
        service,
        overrides: Overrides::default(),
        dry_run: false,
        output: common.output,
        standalone: !as_plugin,
        lock_timeout: lock_timeout.unwrap_or(Duration::from_secs(120)),
        unlock: None,
        migrate: None,
        stack: None,
        swarm_nodes: Vec::new(),
    };
    Ok(Invocation::Verb(Box::new(VerbRequest { rollout, verb })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verb(s: &str) -> Result<VerbRequest, clap::Error> {
        let argv: Vec<OsString> = s.split_whitespace().map(OsString::from).collect();
        match parse(argv, true)? {
            Invocation::Verb(r) => Ok(*r),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_verbs_take_a_service_and_the_project_flags() {
        let r = verb("docker-rollout rollout -p shop status app --watch --interval 1s --count 3")
            .unwrap();
        assert_eq!(r.rollout.service, "app");
        assert_eq!(r.rollout.compose.project_name.as_deref(), Some("shop"));
        assert_eq!(
            r.verb,
            Verb::Status {
                watch: Some(Duration::from_secs(1)),
                count: Some(3)
            }
        );
        let r = verb("docker-rollout rollout history web --limit 5 --output json").unwrap();
        assert_eq!(r.verb, Verb::History { limit: 5 });
        assert_eq!(r.rollout.output, OutputFormat::Json);
        let r = verb("docker-rollout rollout -p shop undo web --lock-timeout 5s").unwrap();
        assert_eq!(r.verb, Verb::Undo);
        assert_eq!(r.rollout.service, "web");
        assert_eq!(r.rollout.lock_timeout, Duration::from_secs(5));
        assert!(verb("docker-rollout rollout undo").is_err());
        let two_minutes = Duration::from_secs(120);
        let r = verb("docker-rollout rollout promote green --full").unwrap();
        assert_eq!(
            r.verb,
            Verb::Promote {
                full: true,
                timeout: two_minutes
            }
        );
        let r = verb("docker-rollout rollout promote green --timeout 10s").unwrap();
        assert_eq!(
            r.verb,
            Verb::Promote {
                full: false,
                timeout: Duration::from_secs(10)
            }
        );
        let r = verb("docker-rollout rollout -p shop pause green").unwrap();
        assert_eq!(
            r.verb,
            Verb::Pause {
                timeout: two_minutes
            }
        );
        assert_eq!(r.rollout.service, "green");
        let r = verb("docker-rollout rollout resume green --timeout 30s --output json").unwrap();
        assert_eq!(
            r.verb,
            Verb::Resume {
                timeout: Duration::from_secs(30)
            }
        );
        assert_eq!(r.rollout.output, OutputFormat::Json);
        let r = verb("docker-rollout rollout abort web").unwrap();
        assert_eq!(
            r.verb,
            Verb::Abort {
                timeout: Duration::from_secs(300)
            }
        );
    }

    #[test]
    fn bad_verb_input_is_a_usage_error() {
        // No service, a count without --watch, a zero limit.
        for bad in [
            "docker-rollout rollout status",
            "docker-rollout rollout status app --count 2",
            "docker-rollout rollout history app --limit 0",
            "docker-rollout rollout pause",
            "docker-rollout rollout resume app --timeout 0s",
            "docker-rollout rollout pause app --full",
        ] {
            let e = verb(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}: {e}");
        }
        // A service named like a verb is rolled out after `--`.
        let argv: Vec<OsString> = "docker-rollout rollout -- status"
            .split_whitespace()
            .map(OsString::from)
            .collect();
        assert!(
            matches!(parse(argv, true).unwrap(), Invocation::Rollout(r) if r.service == "status")
        );
    }
}
