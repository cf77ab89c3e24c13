//! Small helpers shared by the tasks: running commands and finding paths.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// The workspace root (the folder above xtask/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `cmd`, echoing it, and fails when it does not exit 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {}", show(cmd)))?;
    if !status.success() {
        bail!("{} failed: {status}", show(cmd));
    }
    Ok(())
}

/// A command as a person would type it.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// `cargo` as the one that runs xtask.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// What the tests and the demo need from the host, as (program or path, Debian package,
/// why): the nginx and haproxy images are built from Debian's packages, their shell is a static busybox, and
/// projects are driven with Compose.
pub const HOST_PACKAGES: &[(&str, &str, &str)] = &[
    ("nginx", "nginx", "the nginx image is built from it"),
    (
        "/usr/sbin/haproxy",
        "haproxy",
        "the haproxy image is built from it; rollout-haproxy's router tests run it on loopback",
    ),
    (
        "/bin/busybox",
        "busybox-static",
        "the shell of the test images",
    ),
    (
        "docker-compose",
        "docker-compose",
        "drives the Compose projects",
    ),
];

/// What the tests need from the host besides [`HOST_PACKAGES`] (the demo does not): Debian's
/// `docker-registry` (distribution 2.8), which the pull tests start on a loopback port and push
/// their images to, PostgreSQL, of which rollout-migrate's tests start a throwaway server
/// (`pg_ctlcluster` comes with the server package, not the client's), and Prometheus, which the
/// demo app's tests start on loopback to scrape it.
pub const TEST_PACKAGES: &[(&str, &str, &str)] = &[
    (
        "/usr/bin/docker-registry",
        "docker-registry",
        "the registry the pull tests push to and pull from",
    ),
    (
        "/usr/bin/pg_ctlcluster",
        "postgresql",
        "rollout-migrate's tests run a throwaway server of it",
    ),
    (
        "/usr/bin/prometheus",
        "prometheus",
        "the canary analysis's Prometheus provider is tested against a server of it",
    ),
];

/// The packages of `wanted` whose program is missing, with why each is needed, by
/// `present` (a program on PATH, or an absolute path that exists).
fn missing_packages<'a>(
    wanted: &[(&str, &'a str, &'a str)],
    present: impl Fn(&str) -> bool,
) -> Vec<(&'a str, &'a str)> {
    wanted
        .iter()
        .filter(|(program, _, _)| !present(program))
        .map(|(_, package, why)| (*package, *why))
        .collect()
}

/// Installs the Debian packages of `wanted` whose program is missing (through `apt-get`),
/// saying which and why before it does; says so in one line when nothing is missing.
pub fn ensure_debian_packages(wanted: &[(&str, &str, &str)]) -> Result<()> {
    let missing = missing_packages(wanted, |p| {
        have(p) || (p.starts_with('/') && std::path::Path::new(p).exists())
    });
    if missing.is_empty() {
        let names: Vec<&str> = wanted.iter().map(|(_, package, _)| *package).collect();
        eprintln!("host packages present: {}", names.join(", "));
        return Ok(());
    }
    eprintln!("installing Debian packages through apt-get:");
    for (package, why) in &missing {
        eprintln!("  {package}: {why}");
    }
    let names: Vec<&str> = missing.iter().map(|(package, _)| *package).collect();
    let hint = || {
        format!(
            "hint: install them as root: apt-get install {}",
            names.join(" ")
        )
    };
    run(Command::new("apt-get").arg("update").arg("-qq")).with_context(hint)?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&names))
    .with_context(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_programs_are_installed_with_their_reason() {
        let present = |p: &str| p == "nginx";
        assert_eq!(
            missing_packages(HOST_PACKAGES, present),
            [
                (
                    "haproxy",
                    "the haproxy image is built from it; rollout-haproxy's router tests run it on loopback"
                ),
                ("busybox-static", "the shell of the test images"),
                ("docker-compose", "drives the Compose projects"),
            ]
        );
        assert!(missing_packages(HOST_PACKAGES, |_| true).is_empty());
        assert_eq!(
            missing_packages(TEST_PACKAGES, |p| p != "/usr/bin/docker-registry"),
            [(
                "docker-registry",
                "the registry the pull tests push to and pull from"
            )]
        );
    }
}
