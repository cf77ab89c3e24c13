//! the mock rollout benchmark (rollout-core issue) (being written).

use anyhow::{bail, Result};

/// Entry point of this task.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("bench_mock: not built yet")
}
