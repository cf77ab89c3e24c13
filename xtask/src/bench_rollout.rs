//! `cargo xtask bench rollout`: the naive `down`/`up`, the Compose recreate
//! and `docker rollout` updating the seed's six replicas under the same load,
//! in one run, with failed requests, upstream errors, stale retries, p99 per
//! request class against the steady state, and the tool's overhead.
//!
//! The work is the `bench-rollout` crate (`xtask/bench-rollout`), built on the
//! end-to-end harness (`rollout-e2e`: the stacks, the load and the plugin
//! install); this task builds the images, the plugin and that binary, and runs
//! it, all in release builds. It needs the Docker engine and takes
//! about five minutes (more the first time, for the release build).
//!
//! `--proxy haproxy` adds, beside the nginx runs, `docker rollout` of the same stack behind
//! HAProxy, and the switch-back time of a blue-green pair behind each proxy (from the
//! command to the first answer from the old colour), about three minutes more.
//! `--switch-back-only` runs just three switch-backs behind each proxy and prints each and
//! the median.

use crate::util;
use anyhow::{bail, Result};

/// Entry point of this task.
pub fn run(args: &[String]) -> Result<()> {
    let pass: &[&str] = match args {
        [] => &[],
        [flag, proxy] if flag == "--proxy" && proxy == "haproxy" => &["--proxy", "haproxy"],
        [flag] if flag == "--switch-back-only" => &["--switch-back-only"],
        other => bail!(
            "bench rollout takes only `--proxy haproxy` or `--switch-back-only`, got {other:?}"
        ),
    };
    release_run("bench-rollout", pass)
}

/// `cargo xtask bench analysis`: a bad canary judged by the proxy's log and by Prometheus, side
/// by side (the `bench-analysis` binary of the same crate, release builds, the engine).
pub fn analysis(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        bail!("bench analysis takes no argument, got {extra:?}");
    }
    release_run("bench-analysis", &[])
}

/// Builds the images, then the plugin and the bench binaries in release builds, as operators
/// run the plugin (the tool's own CPU and the load generator's, which shares the machine, are
/// part of what is measured), and runs `bin` with `pass`.
fn release_run(bin: &str, pass: &[&str]) -> Result<()> {
    crate::images::build_all(false)?;
    util::run(util::cargo().args([
        "build",
        "-q",
        "--release",
        "-p",
        "docker-rollout",
        "-p",
        "bench-rollout",
        "--bins",
    ]))?;
    let mut run = util::cargo();
    run.args([
        "run",
        "-q",
        "--release",
        "-p",
        "bench-rollout",
        "--bin",
        bin,
    ]);
    if !pass.is_empty() {
        run.arg("--").args(pass);
    }
    util::run(&mut run)
}
