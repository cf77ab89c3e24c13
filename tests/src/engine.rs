//! The engine and the Compose tool: `docker` commands, the checks every engine test makes
//! first, and which Compose tool drives a project.

use std::process::{Command, Output};
use std::sync::OnceLock;

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

/// The variable that says which Compose tool the run brings projects up with: `v1`
/// (`docker-compose`) or `v2` (`docker compose`). `cargo xtask e2e` sets it for each pass.
pub const TOOL_ENV: &str = "ROLLOUT_E2E_COMPOSE";

/// The variable that says which Compose tools the run's machine has (`v2,v1`, `v1`, `v2`), set
/// by `cargo xtask e2e` after it checked them (with `CI=true` it requires both, so CI always
/// says `v2,v1`). Unset: both are expected.
pub const TOOLS_ENV: &str = "ROLLOUT_E2E_TOOLS";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComposeTool {
    /// Debian's `docker-compose` (Compose v1).
    V1,
    /// The `docker compose` CLI plugin (Compose v2).
    V2,
}

impl ComposeTool {
    /// Both tools, v2 first.
    pub const ALL: [ComposeTool; 2] = [ComposeTool::V2, ComposeTool::V1];

    /// The tools that work on this machine, v2 first (asked once per process).
    pub fn available() -> Vec<ComposeTool> {
        static AVAILABLE: OnceLock<Vec<ComposeTool>> = OnceLock::new();
        AVAILABLE
            .get_or_init(|| {
                ComposeTool::ALL
                    .into_iter()
                    .filter(|t| {
                        t.command()
                            .args(["version", "--short"])
                            .output()
                            .is_ok_and(|o| o.status.success())
                    })
                    .collect()
            })
            .clone()
    }

    /// The tools the run expects to work: those [`TOOLS_ENV`] names, else both.
    pub fn expected() -> Vec<ComposeTool> {
        match std::env::var(TOOLS_ENV) {
            Ok(list) if !list.trim().is_empty() => ComposeTool::ALL
                .into_iter()
                .filter(|t| list.split(',').any(|w| w.trim() == t.short()))
                .collect(),
            _ => ComposeTool::ALL.to_vec(),
        }
    }

    /// Under `CI=true`, panics unless `tool` works or the run says the machine lacks it
    /// ([`ComposeTool::expected`]): a missing tool never makes a test pass in CI. Returns
    /// whether it works.
    pub fn works_or_is_not_expected(tool: ComposeTool) -> bool {
        let works = ComposeTool::available().contains(&tool);
        if !works && std::env::var("CI").as_deref() == Ok("true") {
            assert!(
                !ComposeTool::expected().contains(&tool),
                "{} does not work here, and this run expects it ({TOOLS_ENV}, both when unset)\nhint: cargo xtask setup installs both Compose tools",
                tool.name()
            );
        }
        works
    }

    /// The tools every "for each tool" test runs with: those available, and under `CI=true`
    /// every one the run expects, or a panic saying which is missing.
    pub fn under_test() -> Vec<ComposeTool> {
        ComposeTool::ALL
            .into_iter()
            .filter(|t| ComposeTool::works_or_is_not_expected(*t))
            .collect()
    }

    /// The tool the run brings projects up with, chosen in this one place and said once on
    /// stderr: [`TOOL_ENV`] when set; else `docker compose` where it works, else
    /// `docker-compose` (but under `CI=true`, Compose v2 missing is a failure). Panics when the
    /// tool asked for does not work.
    pub fn detect() -> ComposeTool {
        static CHOSEN: OnceLock<ComposeTool> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let setting = std::env::var(TOOL_ENV).ok().filter(|v| !v.is_empty());
            let (tool, why) = choose(
                setting.as_deref(),
                &ComposeTool::available(),
                std::env::var("CI").as_deref() == Ok("true"),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            eprintln!(
                "compose: projects of this run come up with {} ({why})",
                tool.name()
            );
            tool
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

    /// `v1` or `v2`, as [`TOOL_ENV`] names it.
    pub fn short(&self) -> &'static str {
        match self {
            ComposeTool::V1 => "v1",
            ComposeTool::V2 => "v2",
        }
    }

    /// The separator in the container names it gives (`p_app_1`, `p-app-1`).
    pub fn separator(&self) -> char {
        match self {
            ComposeTool::V1 => '_',
            ComposeTool::V2 => '-',
        }
    }

    /// Whether a `com.docker.compose.version` label says this tool made the container.
    pub fn made(&self, version_label: &str) -> bool {
        let major = version_label.trim_start_matches('v').split('.').next();
        match (self, major.and_then(|m| m.parse::<u32>().ok())) {
            (ComposeTool::V1, Some(m)) => m == 1,
            (ComposeTool::V2, Some(m)) => m >= 2,
            _ => false,
        }
    }
}

/// The run's tool from [`TOOL_ENV`]'s value, what works here and whether this is CI; with why.
fn choose(
    setting: Option<&str>,
    available: &[ComposeTool],
    ci: bool,
) -> Result<(ComposeTool, String), String> {
    let works = |t: ComposeTool| available.contains(&t);
    match setting {
        Some(value) => {
            let tool = ComposeTool::ALL
                .into_iter()
                .find(|t| t.short() == value)
                .ok_or_else(|| {
                    format!("{TOOL_ENV}={value:?} names no Compose tool: expected v1 or v2")
                })?;
            if !works(tool) {
                return Err(format!(
                    "{TOOL_ENV}={value} asks for {}, which does not work here\nhint: cargo xtask setup installs both Compose tools",
                    tool.name()
                ));
            }
            Ok((tool, format!("{TOOL_ENV}={value}")))
        }
        None if works(ComposeTool::V2) => Ok((
            ComposeTool::V2,
            format!("{TOOL_ENV} unset: Compose v2 works here"),
        )),
        None if ci => Err(format!(
            "Compose v2 (docker compose) does not work here, and CI=true runs the suite under it\nhint: cargo xtask setup installs it, or set {TOOL_ENV}=v1"
        )),
        None if works(ComposeTool::V1) => Ok((
            ComposeTool::V1,
            format!("{TOOL_ENV} unset: Compose v2 does not work here"),
        )),
        None => Err(
            "neither docker compose nor docker-compose works here\nhint: cargo xtask setup installs them"
                .to_string(),
        ),
    }
}

/// The lines in which a Compose tool said it created or recreated a container (`Creating`,
/// `Recreating` under v1; `Created`, `Recreate`, `Recreated` under v2).
pub fn creations(said: &str) -> Vec<&str> {
    said.lines()
        .filter(|l| l.contains("Creat") || l.contains("Recreat"))
        .collect()
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

    #[test]
    fn the_runs_tool_is_chosen_in_one_place() {
        use ComposeTool::{V1, V2};
        let tool = |s, a: &[ComposeTool], ci| choose(s, a, ci).map(|(t, _)| t);
        assert_eq!(tool(None, &[V2, V1], true), Ok(V2));
        assert_eq!(tool(None, &[V1], false), Ok(V1));
        assert_eq!(tool(Some("v1"), &[V2, V1], true), Ok(V1));
        assert_eq!(tool(Some("v2"), &[V2], false), Ok(V2));
        // Under CI, v2 missing is a failure unless v1 is asked for.
        assert!(tool(None, &[V1], true).unwrap_err().contains("\nhint: "));
        assert_eq!(tool(Some("v1"), &[V1], true), Ok(V1));
        assert!(tool(Some("v2"), &[V1], false)
            .unwrap_err()
            .contains("asks for docker compose, which does not work here"));
        assert!(tool(Some("docker-compose"), &[V1], false)
            .unwrap_err()
            .contains("names no Compose tool"));
        assert!(tool(None, &[], false).is_err());
    }

    #[test]
    fn labels_and_words_of_both_tools_are_read() {
        assert!(ComposeTool::V1.made("1.29.2"));
        assert!(!ComposeTool::V1.made("2.26.1-4"));
        assert!(ComposeTool::V2.made("2.26.1-4"));
        assert!(!ComposeTool::V2.made(""));
        let v1 =
            "Recreating p_app_1 ... done\nCreating p_app_2 ... done\nStarting p_nginx_1 ... done\n";
        assert_eq!(creations(v1).len(), 2);
        let v2 = " Container p-app-1  Recreate\n Container p-app-1  Recreated\n Container p-nginx-1  Running\n";
        assert_eq!(creations(v2).len(), 2);
        assert!(creations(" Container p-app-1  Running\n").is_empty());
    }
}
