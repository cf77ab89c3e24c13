//! `cargo xtask bench mock`: a rolling update of 10,000 mock instances with
//! parallelism 50 and a canary of 1,000, each in its own release-mode
//! process (`rollout-strategies`' `bench_mock` example) so that the CPU time
//! (utime + stime) and peak memory (VmHWM) it prints are its own. Each run
//! also checks the zero-downtime invariants over its whole timeline and
//! fails when one is broken.
//!
//! Then the cost as work grows (`scale`): the seed's rolling settings at 6 replicas
//! (parallelism 2), 24 (4) and 1,000 (4 and 50), printed side by side with the traffic
//! changes (on nginx, one reload of each proxy replica per change), launches and stops the
//! strategy asks for. These are counts, not seconds: `cargo xtask bench rollout` measures the
//! time and the execs per change on the real engine.

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
    for scenario in ["rolling", "canary", "scale"] {
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
        if scenario == "scale" {
            print_scale(&text)?;
            continue;
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

/// The `scale` lines as one table, with the check that the changes per slot do not grow.
fn print_scale(text: &str) -> Result<()> {
    println!(
        "{:>9} {:>12} {:>16} {:>9} {:>6} {:>17}",
        "replicas", "parallelism", "traffic changes", "launches", "stops", "changes per slot"
    );
    let mut per_slot = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("bench mock scale:")) {
        let f = |name| field(line, name);
        println!(
            "{:>9} {:>12} {:>16} {:>9} {:>6} {:>17.2}",
            f("replicas")?,
            f("parallelism")?,
            f("traffic_changes")?,
            f("launches")?,
            f("stops")?,
            f("changes_per_slot")?
        );
        per_slot.push(f("changes_per_slot")?);
    }
    if per_slot.is_empty() {
        bail!("the scale benchmark printed no case:\n{text}");
    }
    let first = per_slot[0];
    let flat = per_slot.iter().all(|&c| c <= first + 1e-9);
    println!(
        "target: traffic changes per slot do not grow with the replica count: {} ({})",
        if flat { "met" } else { "MISSED" },
        per_slot
            .iter()
            .map(|c| format!("{c:.2}"))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!("(on nginx each traffic change is one reload of each proxy replica; the execs per change are measured by `cargo xtask bench rollout`)");
    Ok(())
}

fn field(line: &str, name: &str) -> Result<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {name}= in the benchmark output {line:?}"))
}
