//! installing the plugin into ~/.docker/cli-plugins (being written).

use anyhow::{bail, Result};

/// Entry point of this task.
pub fn run(_args: &[String]) -> Result<()> {
    bail!("install: not built yet")
}
