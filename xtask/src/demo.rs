//! the demo: a real rollout under load (being written).

use anyhow::{bail, Result};

/// Entry point of this task.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("demo: not built yet")
}
