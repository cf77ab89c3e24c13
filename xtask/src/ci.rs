//! `cargo xtask test` (the whole suite) and `cargo xtask ci` (the lint gate).

use crate::util::{cargo, ensure_debian_packages, run, HOST_PACKAGES};
use anyhow::Result;

/// fmt --check and clippy -D warnings over the whole workspace.
pub fn lint() -> Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

/// The whole suite: tidy (the architecture's rules, cheap), lint, unit and
/// mock tests, then the tests that need real components.
pub fn test(_args: &[String]) -> Result<()> {
    ensure_debian_packages(HOST_PACKAGES)?;
    crate::tidy::run(&[])?;
    lint()?;
    run(cargo().args(["test", "--workspace"]))?;
    // The tests that need the engine: images first, then every #[ignore]d test, one at a time.
    crate::images::build_all(false)?;
    crate::e2e::run(&[])
}
