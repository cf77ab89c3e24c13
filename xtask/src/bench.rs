//! `cargo xtask bench [mock|nginx|rollout]`: figures printed side by side with
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
        "all" => {
            crate::bench_mock::run(rest)?;
            crate::nginx::bench(rest)
        }
        other => bail!("unknown benchmark {other:?}: expected mock, nginx or rollout"),
    }
}
