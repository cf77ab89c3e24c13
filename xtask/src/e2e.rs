//! `cargo xtask e2e [FILTER] [--package PKG]... [--list]`: the end-to-end tests against the
//! real engine, one at a time, as CI runs them.
//!
//! An end-to-end test is a test marked `#[ignore = "needs docker: run with cargo xtask e2e"]`
//! (every ignored test of the workspace counts: an ignored test that nothing runs would be a
//! silent skip). The task builds the images first (`cargo xtask images`), builds every binary
//! of the workspace (tests install the plugin from the target folder), lists the ignored
//! tests of every test executable, runs each alone with `--ignored --exact` and `CI=true`,
//! and fails when one failed, or when fewer ran than exist (FILTER selects by substring of
//! the test's name or of its test target, such as `strategies` for `tests/suites/strategies.rs`).

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

/// Entry point of `cargo xtask e2e`.
pub fn run(args: &[String]) -> Result<()> {
    let mut filter: Option<String> = None;
    let mut packages: Vec<String> = Vec::new();
    let mut list_only = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--package" | "-p" => packages.push(
                it.next()
                    .context("--package needs a package name")?
                    .to_string(),
            ),
            "--list" => list_only = true,
            flag if flag.starts_with('-') => {
                bail!("unknown flag {flag:?}\nusage: cargo xtask e2e [FILTER] [--package PKG]... [--list]")
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
            println!("{} {}", t.target, t.name);
        }
        return Ok(());
    }
    if selected.is_empty() {
        bail!("no end-to-end test to run: the filter matches none, or no test is #[ignore]d");
    }
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
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut flaky = Vec::new();
    for (i, t) in selected.iter().enumerate() {
        eprintln!(
            "\n=== e2e {}/{}: {} {}",
            i + 1,
            selected.len(),
            t.target,
            t.name
        );
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            match run_one(t, timeout) {
                Ok(()) => {
                    eprintln!(
                        "=== passed in {:.1} s: {}",
                        started.elapsed().as_secs_f64(),
                        t.name
                    );
                    if attempt > 1 {
                        eprintln!(
                            "=== FLAKY: {} failed, then passed on attempt {attempt}",
                            t.name
                        );
                        flaky.push(format!("{} {}", t.target, t.name));
                    }
                    passed.push(t.name.clone());
                    break;
                }
                Err(e) => {
                    eprintln!(
                        "=== FAILED after {:.1} s (attempt {attempt} of {}): {}: {e:#}",
                        started.elapsed().as_secs_f64(),
                        retries + 1,
                        t.name
                    );
                    if attempt > retries {
                        failed.push(format!("{} {}", t.target, t.name));
                        break;
                    }
                }
            }
        }
    }
    if !flaky.is_empty() {
        eprintln!(
            "\nend-to-end tests that failed once and passed on a retry (look at them):\n  {}",
            flaky.join("\n  ")
        );
    }
    eprintln!(
        "\nend-to-end: {} passed, {} failed, {} flaky, {} selected, {total} exist",
        passed.len(),
        failed.len(),
        flaky.len(),
        selected.len()
    );
    if !failed.is_empty() {
        bail!("end-to-end tests failed:\n  {}", failed.join("\n  "));
    }
    if passed.len() < selected.len() {
        bail!(
            "only {} of {} end-to-end tests ran",
            passed.len(),
            selected.len()
        );
    }
    Ok(())
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

/// Runs one test alone; Ok when libtest says exactly one passed.
fn run_one(t: &E2eTest, timeout: Duration) -> Result<()> {
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
        .env("CARGO_MANIFEST_DIR", &t.package_dir)
        .env(
            "CARGO",
            std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", t.exe.display()))?;
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
    if !status.success() {
        bail!("{status}: {verdict}");
    }
    if !verdict.contains(" 1 passed;") {
        bail!("the test did not run: {verdict:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
