//! `cargo xtask <task>`: everything a developer runs that is not `cargo build`
//! or `cargo test`. Each task lives in its own module; this file only
//! dispatches.

mod bench;
mod bench_mock;
mod bench_rollout;
mod ci;
mod demo;
mod e2e;
mod images;
mod install;
mod nginx;
mod setup;
mod tidy;
mod util;

use anyhow::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task> [args]

tasks:
  test                     the whole suite, as CI runs it (installs what it needs)
  setup [--plugins-dir DIR]
                           install what the tests need: nginx, busybox, docker-compose
                           (v1) and Compose v2 as a docker CLI plugin (from Debian trixie)
  ci                       the lint gate only: fmt --check and clippy -D warnings
  tidy                     the architecture's rules: layering, unused dependencies,
                           file length, docs (run by `test` before the lint gate)
  demo                     a demo stack and a real rollout under load
  images                   build the test images FROM scratch (demo app, nginx)
  e2e [FILTER]             the end-to-end tests against the real engine, one at a time
  bench [mock|nginx|rollout]
                           benchmarks, figures printed side by side
  conformance nginx DIR    the nginx parser against a corpus of real configs
  fuzz nginx [--time SECS] fuzz the nginx parser (stable toolchain)
  install                  put docker-rollout into ~/.docker/cli-plugins
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
        "setup" => setup::run_task(rest),
        "ci" => ci::lint(),
        "tidy" => tidy::run(rest),
        "demo" => demo::run(rest),
        "images" => images::run(rest),
        "e2e" => e2e::run(rest),
        "bench" => bench::run(rest),
        "conformance" => match rest.split_first() {
            Some((what, dir)) if what == "nginx" => nginx::conformance(dir),
            _ => bail!("usage: cargo xtask conformance nginx DIR"),
        },
        "fuzz" => match rest.split_first() {
            Some((what, more)) if what == "nginx" => nginx::fuzz(more),
            _ => bail!("usage: cargo xtask fuzz nginx [--time SECS]"),
        },
        "install" => install::run(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown task {other:?}\n{USAGE}"),
    }
}
