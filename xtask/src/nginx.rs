//! nginx conformance, fuzzing and parse benchmark (being written).

use anyhow::{bail, Result};

/// `cargo xtask conformance nginx DIR`.
pub fn conformance(_args: &[String]) -> Result<()> {
    bail!("conformance: not built yet")
}

/// `cargo xtask fuzz nginx --time N`.
pub fn fuzz(_args: &[String]) -> Result<()> {
    bail!("fuzz: not built yet")
}

/// `cargo xtask bench nginx`.
pub fn bench(_args: &[String]) -> Result<()> {
    bail!("bench nginx: not built yet")
}
