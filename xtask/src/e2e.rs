//! `cargo xtask e2e [FILTER] [--package PKG]... [--compose v1|v2] [--list]`: the end-to-end
//! tests against the real engine, one at a time, as CI runs them.
//!
//! An end-to-end test is a test marked `#[ignore = "needs docker: run with cargo xtask e2e"]`
//! (every ignored test of the workspace counts: an ignored test that nothing runs would be a
//! silent skip). The task builds the images first (`cargo xtask images`), builds every binary
//! of the workspace (tests install the plugin from the target folder), lists the ignored
//! tests of every test executable, runs each alone with `--ignored --exact` and `CI=true`,
//! and fails when one failed, or when fewer ran than exist (FILTER selects by substring of
//! the test's name or of its test target, such as `strategies` for `tests/suites/strategies.rs`).
//!
//! Both Compose tools are under test, in passes: every selected test under the default tool
//! (`docker compose` where it works, else `docker-compose`), then, when both work, the
//! selected tests of [`V1_SUBSET`] under `docker-compose`. The harness reads the pass's tool
//! from `ROLLOUT_E2E_COMPOSE` (`v1`, `v2`); `--compose v1|v2` runs one pass with that tool.
//! It also reads which tools the machine has (`ROLLOUT_E2E_TOOLS`), so that on a machine with
//! one tool (allowed without `CI=true`) a test that needs both is not taken for a failure.
//! Each pass is reported on its own (passed, failed, flaky, wall time). With `CI=true`, both
//! tools must work (`cargo xtask setup` installs them).

use crate::util::{cargo, show};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One end-to-end test: the executable that holds it and its name.
struct E2eTest {
    exe: PathBuf,
    package_dir: PathBuf,
    target: String,
    name: String,
}

/// Longest a single test may run (`ROLLOUT_E2E_TIMEOUT` seconds overrides it).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The tests also run under Compose v1 when the default pass ran under v2 (`target name`): the
/// seed's rolling values, blue-green and switch-back, canary, a kill and resume, Compose coherence
/// after a rollout, an operator's exited container left alone, the Compose tool's own tests, a
/// worker with no proxy, and the Docker backend's launch through Compose (every network of a new
/// instance: v1 connects all but the first only when it starts a container). A name here that is
/// no test fails the run, so a rename cannot drop a test from the pass unseen.
pub const V1_SUBSET: &[&str] = &[
    "strategies rolling_with_the_seeds_own_values",
    "strategies blue_green_switches_to_green_and_back_to_the_same_blue",
    "strategies canary_steps_match_their_weights",
    "interrupts sigkill_after_a_launch_then_the_next_run_completes",
    "operators compose_stays_coherent_after_a_rollout",
    "operators an_operators_exited_container_is_left_alone_by_a_rollout",
    "compose_tools the_tool_that_made_the_project_rolls_it_out_and_up_leaves_it_alone",
    "compose_tools a_project_made_by_a_tool_that_is_not_installed_is_refused",
    "workers a_worker_with_no_proxy_is_rolled_one_at_a_time_each_old_one_finishing_its_work",
    "init init_then_a_rolling_update_fails_no_request",
    "shared_proxy two_services_behind_one_nginx_roll_out_at_once",
    "shared_proxy proxy_file_torn_by_a_kill_stops_nginx_and_the_next_run_repairs_it",
    "shared_proxy proxy_file_on_a_remote_engine_is_edited_there_not_on_the_client",
    "images a_build_only_service_is_rolled_out_to_the_image_compose_built",
    "engine launch_through_compose_keeps_the_project_coherent_and_rollback_recreates_the_old_revision",
];

/// The variable the harness reads the pass's Compose tool from.
const TOOL_ENV: &str = "ROLLOUT_E2E_COMPOSE";

/// The variable that tells the harness which tools this machine has (`v2,v1`, `v2`, `v1`): a
/// test that needs a tool the run lacks fails only when the run expects it (with `CI=true`
/// the run requires both, so in CI every such test runs).
const TOOLS_ENV: &str = "ROLLOUT_E2E_TOOLS";

/// A Compose tool the end-to-end tests run under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    V1,
    V2,
}

impl Tool {
    fn short(self) -> &'static str {
        match self {
            Tool::V1 => "v1",
            Tool::V2 => "v2",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tool::V1 => "docker-compose",
            Tool::V2 => "docker compose",
        }
    }

    /// `version --short`, when the tool works.
    fn version(self) -> Option<String> {
        let mut cmd = match self {
            Tool::V1 => Command::new("docker-compose"),
            Tool::V2 => {
                let mut c = Command::new("docker");
                c.arg("compose");
                c
            }
        };
        let out = cmd
            .args(["version", "--short"])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// One pass: the tool and the tests it runs.
struct Pass<'a> {
    tool: Tool,
    tests: Vec<&'a E2eTest>,
    /// The tools that work on this machine, as [`TOOLS_ENV`] says them.
    machine: String,
}

/// How a pass went.
#[derive(Default)]
struct PassResult {
    passed: Vec<String>,
    failed: Vec<String>,
    flaky: Vec<String>,
    wall: Duration,
}

/// Entry point of `cargo xtask e2e`.
pub fn run(args: &[String]) -> Result<()> {
    let mut filter: Option<String> = None;
    let mut packages: Vec<String> = Vec::new();
    let mut list_only = false;
    let mut only: Option<Tool> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--package" | "-p" => packages.push(
                it.next()
                    .context("--package needs a package name")?
                    .to_string(),
            ),
            "--list" => list_only = true,
            "--compose" => {
                only = Some(match it.next().map(String::as_str) {
                    Some("v1") => Tool::V1,
                    Some("v2") => Tool::V2,
                    other => bail!("--compose takes v1 or v2, not {other:?}"),
                })
            }
            flag if flag.starts_with('-') => {
                bail!("unknown flag {flag:?}\nusage: cargo xtask e2e [FILTER] [--package PKG]... [--compose v1|v2] [--list]")
            }
            f if filter.is_none() => filter = Some(f.to_string()),
            extra => bail!("only one FILTER is allowed, got {extra:?} too"),
        }
    }
    let selection: Vec<String> = if packages.is_empty() {
        vec!["--workspace".into()]
    } else {
        packages
            .iter()
            .flat_map(|p| ["--package".to_string(), p.clone()])
            .collect()
    };
    if !list_only {
        crate::images::build_all(false)?;
        crate::util::run(cargo().args(["build", "--bins"]).args(&selection))?;
    }
    let all = list_tests(&selection)?;
    let total = all.len();
    let names: Vec<String> = all
        .iter()
        .map(|t| format!("{} {}", t.target, t.name))
        .collect();
    if packages.is_empty() {
        for wanted in V1_SUBSET {
            if !names.iter().any(|n| n == wanted) {
                bail!("the v1 subset names {wanted:?}, which is no end-to-end test (xtask/src/e2e.rs)");
            }
        }
    }
    let selected: Vec<&E2eTest> = all
        .iter()
        .filter(|t| {
            filter
                .as_deref()
                .is_none_or(|f| t.name.contains(f) || t.target.contains(f))
        })
        .collect();
    eprintln!(
        "end-to-end tests: {} of {total}{}",
        selected.len(),
        filter
            .as_deref()
            .map(|f| format!(" (matching {f:?})"))
            .unwrap_or_default()
    );
    if list_only {
        for t in &selected {
            let v1 = V1_SUBSET.contains(&format!("{} {}", t.target, t.name).as_str());
            println!(
                "{} {}{}",
                t.target,
                t.name,
                if v1 { " (also under v1)" } else { "" }
            );
        }
        return Ok(());
    }
    if selected.is_empty() {
        bail!("no end-to-end test to run: the filter matches none, or no test is #[ignore]d");
    }
    let passes = passes(&selected, only)?;
    let timeout = std::env::var("ROLLOUT_E2E_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    // A test that fails is run once more before the run fails (`ROLLOUT_E2E_RETRIES` sets how
    // many times): these tests share two cores with a Docker engine, and a stall of the machine
    // can cost a test its timing. A pass on a retry is reported as flaky, never hidden.
    let retries: usize = std::env::var("ROLLOUT_E2E_RETRIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut results = Vec::new();
    for (n, pass) in passes.iter().enumerate() {
        eprintln!(
            "\n##### pass {}/{}: {} test{} under {} ({TOOL_ENV}={})",
            n + 1,
            passes.len(),
            pass.tests.len(),
            if pass.tests.len() == 1 { "" } else { "s" },
            pass.tool.name(),
            pass.tool.short()
        );
        results.push(run_pass(pass, timeout, retries));
    }
    let mut failed = Vec::new();
    eprintln!();
    for (pass, r) in passes.iter().zip(&results) {
        if !r.flaky.is_empty() {
            eprintln!(
                "end-to-end tests under {} that failed once and passed on a retry (look at them):\n  {}",
                pass.tool.name(),
                r.flaky.join("\n  ")
            );
        }
    }
    for (pass, r) in passes.iter().zip(&results) {
        eprintln!(
            "end-to-end under {} ({}): {} passed, {} failed, {} flaky, {} selected, {total} exist, in {:.0} s",
            pass.tool.name(),
            pass.tool.short(),
            r.passed.len(),
            r.failed.len(),
            r.flaky.len(),
            pass.tests.len(),
            r.wall.as_secs_f64()
        );
        failed.extend(
            r.failed
                .iter()
                .map(|f| format!("{f} (under {})", pass.tool.name())),
        );
    }
    if !failed.is_empty() {
        bail!("end-to-end tests failed:\n  {}", failed.join("\n  "));
    }
    for (pass, r) in passes.iter().zip(&results) {
        if r.passed.len() < pass.tests.len() {
            bail!(
                "only {} of {} end-to-end tests ran under {}",
                r.passed.len(),
                pass.tests.len(),
                pass.tool.name()
            );
        }
    }
    Ok(())
}

/// The passes for `selected`: under the default tool, then the v1 subset under v1 when both
/// tools work; or one pass under `only`. Fails when a tool needed does not work, and with
/// `CI=true` when not both do.
fn passes<'a>(selected: &[&'a E2eTest], only: Option<Tool>) -> Result<Vec<Pass<'a>>> {
    let v2 = Tool::V2.version();
    let v1 = Tool::V1.version();
    eprintln!(
        "compose tools: docker compose {}, docker-compose {}",
        v2.as_deref().unwrap_or("(missing)"),
        v1.as_deref().unwrap_or("(missing)")
    );
    let works = |t: Tool| match t {
        Tool::V1 => v1.is_some(),
        Tool::V2 => v2.as_deref().is_some_and(|v| !v.starts_with('1')),
    };
    if std::env::var("CI").as_deref() == Ok("true") && !(works(Tool::V1) && works(Tool::V2)) {
        bail!("CI=true runs the end-to-end tests under both Compose tools, and not both work here\nhint: cargo xtask setup installs them");
    }
    let machine = [Tool::V2, Tool::V1]
        .into_iter()
        .filter(|t| works(*t))
        .map(Tool::short)
        .collect::<Vec<_>>()
        .join(",");
    if let Some(tool) = only {
        if !works(tool) {
            bail!("--compose {} asks for {}, which does not work here\nhint: cargo xtask setup installs it", tool.short(), tool.name());
        }
        return Ok(vec![Pass {
            tool,
            tests: selected.to_vec(),
            machine,
        }]);
    }
    let default = if works(Tool::V2) {
        Tool::V2
    } else if works(Tool::V1) {
        eprintln!("note: Compose v2 does not work here: every test runs under docker-compose only (cargo xtask setup installs Compose v2)");
        Tool::V1
    } else {
        bail!("neither docker compose nor docker-compose works here\nhint: cargo xtask setup installs them");
    };
    let mut passes = vec![Pass {
        tool: default,
        tests: selected.to_vec(),
        machine: machine.clone(),
    }];
    if default == Tool::V2 && works(Tool::V1) {
        let subset: Vec<&E2eTest> = selected
            .iter()
            .copied()
            .filter(|t| V1_SUBSET.contains(&format!("{} {}", t.target, t.name).as_str()))
            .collect();
        if !subset.is_empty() {
            passes.push(Pass {
                tool: Tool::V1,
                tests: subset,
                machine,
            });
        }
    }
    Ok(passes)
}

/// Runs a pass's tests one at a time, each retried up to `retries` times.
fn run_pass(pass: &Pass, timeout: Duration, retries: usize) -> PassResult {
    let started = Instant::now();
    let mut r = PassResult::default();
    for (i, t) in pass.tests.iter().enumerate() {
        eprintln!(
            "\n=== e2e {}/{} ({}): {} {}",
            i + 1,
            pass.tests.len(),
            pass.tool.short(),
            t.target,
            t.name
        );
        let mut attempt = 0;
        let mut why = Vec::new();
        loop {
            attempt += 1;
            let began = Instant::now();
            match run_one(t, pass, timeout) {
                Ok(()) => {
                    eprintln!(
                        "=== passed in {:.1} s: {}",
                        began.elapsed().as_secs_f64(),
                        t.name
                    );
                    if attempt > 1 {
                        eprintln!(
                            "=== FLAKY: {} failed, then passed on attempt {attempt}",
                            t.name
                        );
                        r.flaky
                            .push(format!("{} {}\n{}", t.target, t.name, why.join("\n")));
                    }
                    r.passed.push(t.name.clone());
                    break;
                }
                Err(e) => {
                    eprintln!(
                        "=== FAILED after {:.1} s (attempt {attempt} of {}): {}: {e:#}",
                        began.elapsed().as_secs_f64(),
                        retries + 1,
                        t.name
                    );
                    why.push(indented(&format!("attempt {attempt}: {e:#}")));
                    if attempt > retries {
                        r.failed
                            .push(format!("{} {}\n{}", t.target, t.name, why.join("\n")));
                        break;
                    }
                }
            }
        }
    }
    r.wall = started.elapsed();
    r
}

/// Builds the test executables and lists the ignored tests in each.
fn list_tests(selection: &[String]) -> Result<Vec<E2eTest>> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--no-run",
        "--message-format=json-render-diagnostics",
    ])
    .args(selection)
    .stderr(Stdio::inherit());
    eprintln!("$ {}", show(&cmd));
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {}", show(&cmd)))?;
    if !out.status.success() {
        bail!("{} failed: {}", show(&cmd), out.status);
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(exe) = field(line, "\"executable\":\"") else {
            continue;
        };
        // Test harnesses only (profile.test), never a plain binary: listing would run it.
        let profile_is_test = line
            .split_once("\"profile\":{")
            .and_then(|(_, rest)| rest.split_once('}'))
            .is_some_and(|(profile, _)| profile.contains("\"test\":true"));
        if !line.contains("\"reason\":\"compiler-artifact\"") || !profile_is_test {
            continue;
        }
        let manifest = field(line, "\"manifest_path\":\"").context("artifact without manifest")?;
        let target = field(line, "\"name\":\"").unwrap_or_default();
        let package_dir = PathBuf::from(&manifest)
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default();
        let list = Command::new(&exe)
            .args(["--list", "--ignored", "--format", "terse"])
            .current_dir(&package_dir)
            .output()
            .with_context(|| format!("cannot list the tests of {exe}"))?;
        if !list.status.success() {
            bail!(
                "{exe} --list failed: {}",
                String::from_utf8_lossy(&list.stderr)
            );
        }
        for l in String::from_utf8_lossy(&list.stdout).lines() {
            if let Some(name) = l.strip_suffix(": test") {
                tests.push(E2eTest {
                    exe: PathBuf::from(&exe),
                    package_dir: package_dir.clone(),
                    target: target.clone(),
                    name: name.to_string(),
                });
            }
        }
    }
    Ok(tests)
}

/// The string value of `key` (given with its opening quote) in a line of cargo's JSON: paths
/// and names here have no escaped characters worth decoding beyond `\\` and `\"`.
fn field(line: &str, key: &str) -> Option<String> {
    let start = line.find(key)? + key.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Runs one test alone under the pass's tool; Ok when libtest says exactly one passed.
fn run_one(t: &E2eTest, pass: &Pass, timeout: Duration) -> Result<()> {
    let mut child = Command::new(&t.exe)
        .args([
            &t.name,
            "--exact",
            "--ignored",
            "--test-threads",
            "1",
            "--nocapture",
        ])
        .current_dir(&t.package_dir)
        .env("CI", "true")
        .env(TOOL_ENV, pass.tool.short())
        .env(TOOLS_ENV, &pass.machine)
        .env("CARGO_MANIFEST_DIR", &t.package_dir)
        .env(
            "CARGO",
            std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", t.exe.display()))?;
    // Echo the test's error lines and keep its panic message: the run's summary repeats it, so
    // that a failure reads from the end of a long log.
    let stderr = child.stderr.take().context("no stderr")?;
    let panics = std::thread::spawn(move || {
        let lines = BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .inspect(|l| eprintln!("{l}"));
        panic_message(lines)
    });
    // Echo libtest's lines and keep its verdict.
    let stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut verdict = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            if line.starts_with("test result:") {
                verdict = line;
            }
        }
        verdict
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?} (ROLLOUT_E2E_TIMEOUT sets the limit in seconds)");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let verdict = reader.join().unwrap_or_default();
    let panicked = panics.join().unwrap_or_default();
    if !status.success() {
        bail!("{status}: {verdict}\n{panicked}");
    }
    if !verdict.contains(" 1 passed;") {
        bail!("the test did not run: {verdict:?}");
    }
    Ok(())
}

/// Longest panic message kept for the summary, in lines.
const PANIC_LINES: usize = 12;

/// The first panic's message in a test's error output: the `panicked at` line and what follows
/// it up to the backtrace note or a blank line, at most [`PANIC_LINES`] lines (the lines are
/// all read, so that the writer never blocks).
fn panic_message(lines: impl Iterator<Item = String>) -> String {
    let mut kept: Vec<String> = Vec::new();
    let mut open = false;
    for line in lines {
        if kept.is_empty() && line.contains("panicked at") {
            open = true;
        } else if open
            && (line.is_empty() || line.starts_with("note: ") || line == "stack backtrace:")
        {
            open = false;
        }
        if open && kept.len() < PANIC_LINES {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// `text` indented by four spaces on each line, to sit under a test's name.
fn indented(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_panic_message_up_to_the_backtrace_note() {
        let err = [
            "timing: launch 1.2s",
            "thread 'negative' panicked at tests/suites/negative_control.rs:48:5:",
            "no failed request: the harness is blind",
            "second line",
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
            "thread 'other' panicked at x.rs:1:1:",
        ];
        let kept = panic_message(err.iter().map(|s| s.to_string()));
        assert_eq!(
            kept,
            "thread 'negative' panicked at tests/suites/negative_control.rs:48:5:\n\
             no failed request: the harness is blind\nsecond line"
        );
        let long = std::iter::once("thread 'a' panicked at a.rs:1:1:".to_string())
            .chain((0..100).map(|i| format!("line {i}")));
        assert_eq!(panic_message(long).lines().count(), PANIC_LINES);
        assert_eq!(panic_message(["all fine".to_string()].into_iter()), "");
        assert_eq!(indented("a\nb"), "    a\n    b");
    }

    #[test]
    fn reads_fields_of_cargo_messages() {
        let line = r#"{"reason":"compiler-artifact","manifest_path":"/w/tests/Cargo.toml","target":{"name":"harness"},"profile":{"test":true},"executable":"/t/debug/deps/harness-1"}"#;
        assert_eq!(
            field(line, "\"executable\":\"").as_deref(),
            Some("/t/debug/deps/harness-1")
        );
        assert_eq!(field(line, "\"name\":\"").as_deref(), Some("harness"));
        assert_eq!(field(r#""p":"a\"b""#, "\"p\":\"").as_deref(), Some("a\"b"));
        assert_eq!(field(line, "\"nothing\":\""), None);
    }
}
