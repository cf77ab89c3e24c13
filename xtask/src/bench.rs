//! `cargo xtask bench [mock|nginx|rollout|analysis|swarm|migrate]`: figures printed side by side with
//! the alternative measured in the same run. Without an argument, every
//! benchmark that needs no Docker engine.

use anyhow::{bail, Result};

/// Entry point of `cargo xtask bench`.
pub fn run(args: &[String]) -> Result<()> {
    let (which, rest) = match args.split_first() {
        Some((w, rest)) => (w.as_str(), rest),
        None => ("all", &[][..]),
    };
    match which {
        "mock" => crate::bench_mock::run(rest),
        "nginx" => crate::nginx::bench(rest),
        "rollout" => crate::bench_rollout::run(rest),
        "analysis" => crate::bench_rollout::analysis(rest),
        "swarm" => crate::bench_rollout::swarm(rest),
        "migrate" => migrate(rest),
        "all" => {
            crate::bench_mock::run(rest)?;
            crate::nginx::bench(rest)
        }
        other => {
            bail!("unknown benchmark {other:?}: expected mock, nginx, rollout, analysis, swarm or migrate")
        }
    }
}

/// A 1,000,000-row backfill in batches against one UPDATE, on a throwaway
/// PostgreSQL (rollout-migrate's `backfill` bench, a release build; no Docker).
fn migrate(args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        bail!("bench migrate takes no argument, got {extra:?}");
    }
    crate::util::run(crate::util::cargo().args([
        "bench",
        "-q",
        "-p",
        "rollout-migrate",
        "--bench",
        "backfill",
    ]))
}
