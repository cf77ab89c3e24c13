//! The Compose tool the operator runs, called as a child process.
//!
//! New instances of the revision the Compose file names are created by the
//! Compose tool itself (`up --no-start --no-deps --no-recreate --scale`), so that
//! their labels, names, networks, aliases, volumes and config hash are
//! exactly what `docker compose ps`, `up` and `down` expect: we never guess
//! Compose's hash algorithm, which differs between v1 and v2. Every call is
//! an argument vector, never a shell line.
//!
//! Which tool, v1 or v2, is the one that made the project ([`choice`]),
//! among those installed where the operator's own commands find them
//! ([`installed`]).

pub mod choice;
pub mod installed;

pub use choice::{
    choose_tool, decide, project_containers, Evidence, Made, Reason, ToolChoice, ToolRefusal,
};
pub use installed::{Installed, ToolLookup};

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

pub use rollout_compose::Flavour;

/// How to run the operator's Compose tool on the operator's project.
#[derive(Debug, Clone)]
pub struct ComposeCli {
    program: OsString,
    leading: Vec<OsString>,
    project: Vec<OsString>,
    current_dir: Option<PathBuf>,
    flavour: Flavour,
    timeout: Duration,
}

/// The Compose tool failed or could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    /// The program could not be started.
    #[error("cannot run {program}: {reason}\nhint: install Compose, or pass the command the project uses (docker-compose or docker compose)")]
    Spawn {
        /// The command line, without arguments.
        program: String,
        /// What went wrong.
        reason: String,
    },
    /// It exited with an error.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// The exit status.
        status: String,
        /// The end of what it wrote to standard error.
        stderr: String,
    },
    /// It did not finish in time and was killed.
    #[error("{command} did not finish within {seconds} s and was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit.
        seconds: u64,
    },
    /// It printed something we do not understand.
    #[error("{command} printed {output:?}, which is not what it should print")]
    Output {
        /// The command line.
        command: String,
        /// What it printed.
        output: String,
    },
}

impl ComposeCli {
    /// Debian's `docker-compose` 1.x.
    pub fn v1() -> Self {
        Self::with_program("docker-compose", Vec::<OsString>::new(), Flavour::V1)
    }

    /// `docker compose` 2.x through `docker` (pass the docker CLI's global
    /// flags, such as `--context prod`, as `docker_flags`).
    pub fn v2<I, S>(docker_flags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut leading: Vec<OsString> = docker_flags.into_iter().map(Into::into).collect();
        leading.push("compose".into());
        Self::with_program("docker", leading, Flavour::V2)
    }

    /// Any program: `program leading... <project flags> <subcommand>`.
    pub fn with_program<I, S>(program: impl Into<OsString>, leading: I, flavour: Flavour) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self {
            program: program.into(),
            leading: leading.into_iter().map(Into::into).collect(),
            project: Vec::new(),
            current_dir: None,
            flavour,
            timeout: Duration::from_secs(300),
        }
    }

    /// Adds `-f FILE` (call once per file, in the operator's order).
    pub fn file(mut self, path: impl Into<OsString>) -> Self {
        self.project.push("-f".into());
        self.project.push(path.into());
        self
    }

    /// Adds `-p NAME`.
    pub fn project_name(mut self, name: impl Into<OsString>) -> Self {
        self.project.push("-p".into());
        self.project.push(name.into());
        self
    }

    /// Adds `--env-file PATH`.
    pub fn env_file(mut self, path: impl Into<OsString>) -> Self {
        self.project.push("--env-file".into());
        self.project.push(path.into());
        self
    }

    /// Adds `--profile NAME`.
    pub fn profile(mut self, name: impl Into<OsString>) -> Self {
        self.project.push("--profile".into());
        self.project.push(name.into());
        self
    }

    /// Runs the tool in `dir` (where `.env` and relative paths are found).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.current_dir = Some(dir.into());
        self
    }

    /// Bounds each call (5 minutes unless set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Which Compose it is.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    /// The config hash Compose puts on the service's containers now
    /// (`config --hash SERVICE`): the id of the revision the file names.
    pub async fn config_hash(&self, service: &str) -> Result<String, ComposeError> {
        let hash_arg = match self.flavour {
            Flavour::V1 => vec![format!("--hash={service}")],
            Flavour::V2 => vec!["--hash".to_string(), service.to_string()],
        };
        let mut args = vec!["config".to_string()];
        args.extend(hash_arg);
        let out = self.run(&args).await?;
        let text = String::from_utf8_lossy(&out);
        text.lines()
            .filter_map(|line| line.split_once(' '))
            .find(|(name, _)| *name == service)
            .map(|(_, hash)| hash.trim().to_string())
            .filter(|hash| !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()))
            .ok_or_else(|| ComposeError::Output {
                command: self.describe(&args),
                output: text.trim().chars().take(200).collect(),
            })
    }

    /// `up --no-start --no-deps --no-recreate --scale SERVICE=total
    /// SERVICE`: creates containers of what the file names until the
    /// service has `total`, and starts none of them. The existing ones stay
    /// as they are: `up` without `--no-start` starts every stopped container
    /// of the service it scales (both tools do), and one that exited may be
    /// an operator's, kept for a post-mortem.
    pub async fn create_more(&self, service: &str, total: usize) -> Result<(), ComposeError> {
        self.run(&create_args(service, total)).await.map(|_| ())
    }

    /// `build SERVICE`: the Compose tool builds the service's image, its
    /// output shown to the operator on standard error (standard output may
    /// carry JSON events), within `limit`.
    pub async fn build(&self, service: &str, limit: Duration) -> Result<(), ComposeError> {
        use std::os::fd::AsFd;
        let args = ["build".to_string(), service.to_string()];
        let to_stderr = |what: &str| {
            std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map(Stdio::from)
                .map_err(|e| ComposeError::Spawn {
                    program: self.program.to_string_lossy().into_owned(),
                    reason: format!("cannot hand it {what}: {e}"),
                })
        };
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.leading)
            .args(&self.project)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(to_stderr("standard output")?)
            .stderr(to_stderr("standard error")?)
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().map_err(|e| ComposeError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            reason: e.to_string(),
        })?;
        let status = match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => status,
            Ok(Err(e)) => {
                return Err(ComposeError::Spawn {
                    program: self.program.to_string_lossy().into_owned(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ComposeError::Timeout {
                    command: self.describe(&args),
                    seconds: limit.as_secs(),
                })
            }
        };
        if status.success() {
            return Ok(());
        }
        Err(ComposeError::Failed {
            command: self.describe(&args),
            status: status.to_string(),
            stderr: "its output is above".to_string(),
        })
    }

    fn describe(&self, args: &[String]) -> String {
        let mut words = vec![self.program.to_string_lossy().into_owned()];
        words.extend(
            self.leading
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        words.extend(
            self.project
                .iter()
                .map(|a| a.to_string_lossy().into_owned()),
        );
        words.extend(args.iter().cloned());
        words.join(" ")
    }

    async fn run(&self, args: &[String]) -> Result<Vec<u8>, ComposeError> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(&self.leading)
            .args(&self.project)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // In a process group of its own: a Ctrl-C at the terminal signals the
        // whole foreground group, and Compose would abort what it is creating
        // (and the abort be counted as the revision failing). The rollout
        // decides what an interrupt stops; kill_on_drop still ends this child
        // when the rollout drops it.
        #[cfg(unix)]
        command.process_group(0);
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let child = command.spawn().map_err(|e| ComposeError::Spawn {
            program: self.program.to_string_lossy().into_owned(),
            reason: e.to_string(),
        })?;
        let output = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                return Err(ComposeError::Spawn {
                    program: self.program.to_string_lossy().into_owned(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(ComposeError::Timeout {
                    command: self.describe(args),
                    seconds: self.timeout.as_secs(),
                })
            }
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .rev()
            .take(5)
            .collect();
        Err(ComposeError::Failed {
            command: self.describe(args),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        })
    }
}

/// The arguments of [`ComposeCli::create_more`]. No `-d`: Compose 1 refuses
/// it beside `--no-start`, and nothing is started to detach from.
fn create_args(service: &str, total: usize) -> Vec<String> {
    [
        "up",
        "--no-start",
        "--no-deps",
        "--no-recreate",
        "--no-build",
        "--scale",
    ]
    .into_iter()
    .map(String::from)
    .chain([format!("{service}={total}"), service.to_string()])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_creates_and_starts_nothing() {
        let args = create_args("web", 4);
        assert_eq!(
            args.join(" "),
            "up --no-start --no-deps --no-recreate --no-build --scale web=4 web"
        );
        // Without --no-start, `up` would start the service's stopped
        // containers, an operator's exited one among them.
        assert!(!args.iter().any(|a| a == "-d" || a == "--detach"));
    }

    #[test]
    fn the_command_line_keeps_the_operators_order() {
        let cli = ComposeCli::v2(["--context", "prod"])
            .file("a.yml")
            .file("b.yml")
            .project_name("shop")
            .env_file(".env.prod")
            .profile("web");
        assert_eq!(
            cli.describe(&["up".into()]),
            "docker --context prod compose -f a.yml -f b.yml -p shop --env-file .env.prod --profile web up"
        );
        assert_eq!(cli.flavour().separator(), '-');
        assert_eq!(ComposeCli::v1().flavour().separator(), '_');
    }

    #[tokio::test]
    async fn a_missing_program_says_so() {
        let cli =
            ComposeCli::with_program("/nonexistent/compose", Vec::<String>::new(), Flavour::V1);
        let err = cli.create_more("app", 2).await.unwrap_err();
        assert!(matches!(err, ComposeError::Spawn { .. }), "{err}");
        assert!(err.to_string().contains("hint:"));
    }

    #[tokio::test]
    async fn hash_output_is_read_per_service() {
        // `echo` stands in for Compose: it prints its arguments, which are not
        // a hash line, so the call must fail rather than invent a hash.
        let cli = ComposeCli::with_program("echo", Vec::<String>::new(), Flavour::V1);
        let err = cli.config_hash("app").await.unwrap_err();
        assert!(matches!(err, ComposeError::Output { .. }), "{err}");
        let cli = ComposeCli::with_program("printf", ["db 0123abcd\napp 89abcdef\n"], Flavour::V1);
        assert_eq!(cli.config_hash("app").await.unwrap(), "89abcdef");
    }
}
