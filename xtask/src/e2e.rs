//! end-to-end tests against the real engine (being written).

use anyhow::{bail, Result};

/// Entry point of this task.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("e2e: not built yet")
}
