//! `cargo xtask <task>`: everything a developer runs that is not `cargo build`
//! or `cargo test`. Each task lives in its own module; this file only
//! dispatches.

mod ci;
mod util;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  test                     the whole suite, as CI runs it (installs what it needs)
  ci                       the lint gate only: fmt --check and clippy -D warnings
";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((task, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        std::process::exit(2);
    };
    match task.as_str() {
        "test" => ci::test(rest),
        "ci" => ci::lint(),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task {other:?}\n{USAGE}"),
    }
}
