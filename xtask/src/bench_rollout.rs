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
//!
//! `--runs N` (1 to 9) runs `docker rollout` N times on fresh stacks (behind HAProxy too, with
//! `--proxy haproxy`), prints every run and
//! the median overhead share against the target (under 5 % of the wall time; fast-request
//! p99 during the rollout within 1.5x the steady state). `--scale` adds the same bench with
//! 24 replicas at parallelism 4 (N runs too), printed beside the seed's 6 at 2, with the
//! overhead per slot, which should not grow with the replica count. `--rollout-only` skips
//! the naive `down`/`up` and the Compose recreate. Every `docker rollout` run also prints
//! what it asked of the engine, counted from the engine's events: commands run in the proxy
//! (`exec_start`), reloads among them, and the helper containers it created by kind
//! (journal records, proxy journals, the proxy file's writer, retiring markers).
//!
//! `--switch-back-only` runs just three switch-backs behind each proxy and prints each and
//! the median.

use crate::util;
use anyhow::{bail, Result};

/// Entry point of this task: checks the flags (so a typo fails before the release build),
/// then hands them to the bench binary.
pub fn run(args: &[String]) -> Result<()> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--proxy" => match it.next().map(String::as_str) {
                Some("haproxy") => {}
                other => bail!("bench rollout: --proxy takes `haproxy`, got {other:?}"),
            },
            "--runs" => match it.next().map(|v| v.parse::<usize>()) {
                Some(Ok(1..=9)) => {}
                _ => bail!("bench rollout: --runs takes a number from 1 to 9"),
            },
            "--scale" | "--rollout-only" | "--switch-back-only" => {}
            other => bail!(
                "bench rollout takes `--proxy haproxy`, `--runs N`, `--scale`, `--rollout-only`, `--switch-back-only`, got {other:?}"
            ),
        }
    }
    let pass: Vec<&str> = args.iter().map(String::as_str).collect();
    release_run("bench-rollout", &pass)
}

/// `cargo xtask bench analysis`: a bad canary judged by the proxy's log and by Prometheus, side
/// by side (the `bench-analysis` binary of the same crate, release builds, the engine).
pub fn analysis(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        bail!("bench analysis takes no argument, got {extra:?}");
    }
    release_run("bench-analysis", &[])
}

/// `cargo xtask bench swarm [--runs N]`: Swarm's own `docker service update` and `docker
/// rollout --stack` of the same stack under the same load, side by side on a two-node swarm
/// (the `bench-swarm` binary of the same crate, release builds, the engine; the swarm is
/// undone afterwards). About two minutes per run.
pub fn swarm(args: &[String]) -> Result<()> {
    match args {
        [] => release_run("bench-swarm", &[]),
        [flag, n] if flag == "--runs" && matches!(n.parse::<usize>(), Ok(1..=5)) => {
            release_run("bench-swarm", &[flag, n])
        }
        _ => bail!("bench swarm takes `--runs N` (1 to 5), got {args:?}"),
    }
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
