//! The engine and the Compose tool: `docker` commands, the checks every engine test makes
//! first, and which Compose tool drives a project.

use std::process::{Command, Output};

/// A `docker` command.
pub fn docker() -> Command {
    Command::new("docker")
}

fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` and panics with its output unless it exits 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", show(cmd)));
    if !out.status.success() {
        panic!(
            "{} failed ({}):\n{}{}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Panics, loudly and with a hint, unless the Docker engine answers. Every engine test calls
/// it first: a test never passes by returning early.
pub fn require_engine() {
    if let Some(problem) = engine_problem(None) {
        panic!("{problem}");
    }
}

/// What is wrong with the engine at `docker_host` (default: the CLI's own choice), if anything.
pub(crate) fn engine_problem(docker_host: Option<&str>) -> Option<String> {
    let mut cmd = docker();
    cmd.args(["version", "--format", "{{.Server.Version}}"]);
    if let Some(host) = docker_host {
        cmd.env("DOCKER_HOST", host);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "the docker engine does not answer: {}\n\
             hint: start dockerd (or set DOCKER_HOST); these tests run with cargo xtask e2e",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!(
            "the docker CLI cannot be run: {e}\n\
             hint: install docker.io; these tests run with cargo xtask e2e"
        )),
    }
}

/// Panics unless every image exists locally (nothing can be pulled here).
pub fn require_images(images: &[&str]) {
    let missing: Vec<&str> = images
        .iter()
        .copied()
        .filter(|i| {
            !docker()
                .args(["image", "inspect", "--format", "{{.Id}}", i])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing images: {}\nhint: cargo xtask images (cargo xtask e2e builds them first)",
        missing.join(", ")
    );
}

/// The id (`sha256:...`) of the local image `image`; panics when it is not here.
pub fn image_id(image: &str) -> String {
    let out = run_ok(docker().args(["image", "inspect", "--format", "{{.Id}}", image]));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tag this test points at images of its choice (`docker tag`), removed when dropped
/// (also during a panic's unwinding; only the tag goes, the images it pointed at stay).
#[derive(Debug)]
pub struct Tag {
    name: String,
}

impl Tag {
    /// Points `name` (`rollout-demo:latest`) at the image `image` names now.
    pub fn point(name: &str, image: &str) -> Tag {
        let tag = Tag { name: name.into() };
        tag.move_to(image);
        tag
    }

    /// Moves the tag to the image `image` names now, as a `docker build` or `docker pull`
    /// of the same tag does.
    pub fn move_to(&self, image: &str) {
        run_ok(docker().args(["tag", image, &self.name]));
    }

    /// The tag.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Tag {
    fn drop(&mut self) {
        let _ = docker().args(["image", "rm", &self.name]).output();
    }
}

/// The Compose tool a project is driven with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComposeTool {
    /// Debian's `docker-compose` (Compose v1).
    V1,
    /// The `docker compose` CLI plugin (Compose v2).
    V2,
}

impl ComposeTool {
    /// The tools that work on this machine, v1 first.
    pub fn available() -> Vec<ComposeTool> {
        let works = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
        let mut tools = Vec::new();
        if works(Command::new("docker-compose").arg("version")) {
            tools.push(ComposeTool::V1);
        }
        if works(docker().args(["compose", "version"])) {
            tools.push(ComposeTool::V2);
        }
        tools
    }

    /// The tool to use: `ROLLOUT_COMPOSE` (`docker-compose` or `docker compose`) when set, else
    /// the first available. Panics when there is none.
    pub fn detect() -> ComposeTool {
        match std::env::var("ROLLOUT_COMPOSE").as_deref() {
            Ok("docker-compose") => return ComposeTool::V1,
            Ok("docker compose") => return ComposeTool::V2,
            Ok(other) => panic!(
                "ROLLOUT_COMPOSE={other:?} is not a compose tool: expected \"docker-compose\" or \"docker compose\""
            ),
            Err(_) => {}
        }
        ComposeTool::available().into_iter().next().unwrap_or_else(|| {
            panic!("neither docker-compose nor docker compose works here\nhint: apt-get install docker-compose")
        })
    }

    /// A command of this tool, without arguments.
    pub fn command(&self) -> Command {
        match self {
            ComposeTool::V1 => Command::new("docker-compose"),
            ComposeTool::V2 => {
                let mut c = docker();
                c.arg("compose");
                c
            }
        }
    }

    /// How an operator types it.
    pub fn name(&self) -> &'static str {
        match self {
            ComposeTool::V1 => "docker-compose",
            ComposeTool::V2 => "docker compose",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_engine_is_named_with_a_hint() {
        let problem = engine_problem(Some("unix:///nonexistent/docker.sock"))
            .expect("no engine answers on a socket that does not exist");
        assert!(
            problem.starts_with("the docker engine does not answer"),
            "{problem}"
        );
        assert!(problem.contains("/nonexistent/docker.sock"), "{problem}");
        assert!(problem.contains("\nhint: "), "{problem}");
    }
}
