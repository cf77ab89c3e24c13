//! the test images, built FROM scratch (being written).

use anyhow::{bail, Result};

/// Entry point of this task.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("images: not built yet")
}
