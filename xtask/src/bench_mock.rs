//! `cargo xtask bench mock`: a rolling update of 10,000 mock instances with
//! parallelism 50 and a canary of 1,000, each in its own release-mode
//! process (`rollout-strategies`' `bench_mock` example) so that the CPU time
//! (utime + stime) and peak memory (VmHWM) it prints are its own. Each run
//! also checks the zero-downtime invariants over its whole timeline and
//! fails when one is broken.

use crate::util;
use anyhow::{bail, Context, Result};

/// Targets for the 10,000-instance rolling update.
const ROLLING_CPU_S: f64 = 1.0;
const ROLLING_PEAK_MB: f64 = 100.0;

/// Entry point of this task.
pub fn run(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        bail!("bench mock takes no argument, got {extra:?}");
    }
    util::run(util::cargo().args([
        "build",
        "--release",
        "-q",
        "-p",
        "rollout-strategies",
        "--example",
        "bench_mock",
    ]))?;
    for scenario in ["rolling", "canary"] {
        let mut cmd = util::cargo();
        cmd.args([
            "run",
            "--release",
            "-q",
            "-p",
            "rollout-strategies",
            "--example",
            "bench_mock",
            "--",
            scenario,
        ]);
        let out = cmd
            .output()
            .with_context(|| format!("cannot run {}", util::show(&cmd)))?;
        let text = String::from_utf8_lossy(&out.stdout);
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            bail!("the {scenario} benchmark failed: {}", out.status);
        }
        let line = text.lines().last().unwrap_or_default();
        println!("{line}");
        if scenario == "rolling" {
            let cpu = field(line, "cpu_s")?;
            let mb = field(line, "peak_mb")?;
            let verdict = if cpu < ROLLING_CPU_S && mb < ROLLING_PEAK_MB {
                "met"
            } else {
                "MISSED"
            };
            println!(
                "target for 10,000 instances: under {ROLLING_CPU_S} s CPU and {ROLLING_PEAK_MB} MB: {verdict} ({cpu:.3} s, {mb:.1} MB)"
            );
        }
    }
    Ok(())
}

fn field(line: &str, name: &str) -> Result<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {name}= in the benchmark output {line:?}"))
}
