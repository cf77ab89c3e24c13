//! `cargo xtask setup [--plugins-dir DIR]`: what the tests (and the demo) need from the host,
//! installed through apt, then listed.
//!
//! Debian's `postgresql` (rollout-migrate's tests start a throwaway server of it as the
//! `postgres` user), Debian's `nginx` (the router tests run it on loopback, the nginx image copies it),
//! `busybox-static` (the nginx image's shell) and `docker-compose` (Compose v1, 1.29), and
//! Compose v2 as a docker CLI plugin, so that both Compose tools are under test; and
//! Debian's `docker-registry` (distribution 2.8), which the pull tests start themselves on a
//! loopback port (its Debian service is not used). Debian's
//! bookworm has no Compose v2; trixie's `docker-compose` package (2.26) is a static Go program
//! that needs only libc 2.34, shipped as a CLI plugin. So the set-up adds the trixie suite of
//! the machine's own Debian mirror (the URIs of `/etc/apt/sources.list.d/debian.sources`, or
//! of `/etc/apt/sources.list`: no host name is typed here) with an apt pin of priority 100, so
//! that nothing installed is ever upgraded from it, runs `apt-get download
//! docker-compose/trixie` (downloads, installs nothing), unpacks the package into a temporary
//! folder with `dpkg-deb -x` and copies only `usr/libexec/docker/cli-plugins/docker-compose`
//! into `/usr/local/lib/docker/cli-plugins/` (the docker CLI's first system plugin folder).
//! Debian's v1 package stays installed: installing trixie's package would replace it.
//!
//! Every step is idempotent: the source and pin files are written only when their content
//! differs, apt's lists are refreshed only when trixie's package is unknown to apt, and
//! nothing is downloaded when `docker compose version` already says 2.x (or, with
//! `--plugins-dir`, when that folder already has a Compose 2 plugin).

use crate::util::{ensure_debian_packages, run, HOST_PACKAGES, TEST_PACKAGES};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where Compose v2 goes: the docker CLI's first system plugin folder.
pub const PLUGINS_DIR: &str = "/usr/local/lib/docker/cli-plugins";
/// The plugin's path inside trixie's `docker-compose` package.
const PLUGIN_IN_PACKAGE: &str = "usr/libexec/docker/cli-plugins/docker-compose";
/// The apt source this set-up writes.
const TRIXIE_SOURCE: &str = "/etc/apt/sources.list.d/rollout-trixie.sources";
/// The apt pin this set-up writes.
const TRIXIE_PIN: &str = "/etc/apt/preferences.d/rollout-trixie";
/// The pin: trixie's packages are never chosen over installed or bookworm ones.
const PIN: &str = "Package: *\nPin: release n=trixie\nPin-Priority: 100\n";

/// Entry point of `cargo xtask setup`.
pub fn run_task(args: &[String]) -> Result<()> {
    let mut dir = PathBuf::from(PLUGINS_DIR);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--plugins-dir" => {
                dir = PathBuf::from(it.next().context("--plugins-dir needs a folder")?)
            }
            other => {
                bail!("unknown argument {other:?}\nusage: cargo xtask setup [--plugins-dir DIR]")
            }
        }
    }
    test_tools(&dir)
}

/// Installs what the tests need (see the module's text), Compose v2 into `plugins_dir`, and
/// prints what is installed.
pub fn test_tools(plugins_dir: &Path) -> Result<()> {
    ensure_debian_packages(HOST_PACKAGES)?;
    ensure_debian_packages(TEST_PACKAGES)?;
    compose_v2(plugins_dir)?;
    eprintln!("installed for the tests:");
    for line in installed(plugins_dir) {
        eprintln!("  {line}");
    }
    Ok(())
}

/// Compose v2 into `plugins_dir`, unless the docker CLI (or that folder) already has it.
fn compose_v2(plugins_dir: &Path) -> Result<()> {
    let target = plugins_dir.join("docker-compose");
    let default_dir = plugins_dir == Path::new(PLUGINS_DIR);
    if default_dir {
        if let Some(v) = docker_compose_version().filter(|v| is_v2(v)) {
            eprintln!("Compose v2 is installed already (docker compose version {v})");
            return Ok(());
        }
    } else if let Some(v) = plugin_version(&target).filter(|v| is_v2(v)) {
        eprintln!("Compose v2 is installed already ({} {v})", target.display());
        return Ok(());
    }
    trixie_source()?;
    let work = std::env::temp_dir().join(format!("rollout-compose-v2-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    // apt downloads as its own unprivileged user where it can write.
    let _ = Command::new("chmod").arg("0777").arg(&work).status();
    let result = download_and_copy(&work, &target);
    let _ = std::fs::remove_dir_all(&work);
    result?;
    let version = if default_dir {
        docker_compose_version()
    } else {
        plugin_version(&target)
    };
    match version {
        Some(v) if is_v2(&v) => {
            eprintln!("installed Compose {v} as {}", target.display());
            Ok(())
        }
        other => bail!(
            "{} is installed, but {} says {other:?}, not 2.x",
            target.display(),
            if default_dir {
                "docker compose version"
            } else {
                "its plugin metadata"
            }
        ),
    }
}

fn download_and_copy(work: &Path, target: &Path) -> Result<()> {
    run(Command::new("apt-get").current_dir(work).args([
        "download",
        "-qq",
        "docker-compose/trixie",
    ]))?;
    let deb = std::fs::read_dir(work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download docker-compose/trixie left no .deb")?;
    let unpacked = work.join("unpacked");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
    let plugin = unpacked.join(PLUGIN_IN_PACKAGE);
    if !plugin.is_file() {
        bail!("{} has no {PLUGIN_IN_PACKAGE}", deb.display());
    }
    let dir = target.parent().context("the plugin's folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Copied beside the target, then renamed over it: a docker CLI running meanwhile never
    // sees half a file.
    let partial = dir.join(".docker-compose.partial");
    std::fs::copy(&plugin, &partial)
        .with_context(|| format!("cannot copy the plugin to {}", partial.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    }
    std::fs::rename(&partial, target)
        .with_context(|| format!("cannot install {}", target.display()))?;
    Ok(())
}

/// The trixie suite of this machine's Debian mirror, pinned to 100; apt's lists refreshed
/// when trixie's `docker-compose` is unknown to apt.
fn trixie_source() -> Result<()> {
    let (uris, signed_by) = debian_mirror()?;
    let source = trixie_stanza(&uris, signed_by.as_deref());
    let wrote_source = write_if_changed(Path::new(TRIXIE_SOURCE), &source)?;
    let wrote_pin = write_if_changed(Path::new(TRIXIE_PIN), PIN)?;
    let known = Command::new("apt-cache")
        .args(["show", "docker-compose/trixie"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if wrote_source || wrote_pin || !known {
        run(Command::new("apt-get").args(["update", "-qq"]))?;
    }
    Ok(())
}

/// The URIs (and keyring) of the machine's main Debian suite: the deb822 file first, else the
/// one-line `sources.list`.
fn debian_mirror() -> Result<(Vec<String>, Option<String>)> {
    let deb822 = Path::new("/etc/apt/sources.list.d/debian.sources");
    if let Ok(text) = std::fs::read_to_string(deb822) {
        if let Some(found) = mirror_of_deb822(&text) {
            return Ok(found);
        }
    }
    let list = Path::new("/etc/apt/sources.list");
    if let Ok(text) = std::fs::read_to_string(list) {
        let uris = mirror_of_list(&text);
        if !uris.is_empty() {
            return Ok((uris, None));
        }
    }
    bail!(
        "no Debian mirror found in {} or {}\nhint: add the machine's Debian source, then run this again",
        deb822.display(),
        list.display()
    )
}

/// From a deb822 sources file: the URIs and Signed-By of the first `deb` stanza with a main
/// suite (a suite name without `-`, such as `bookworm`; not `bookworm-security`).
fn mirror_of_deb822(text: &str) -> Option<(Vec<String>, Option<String>)> {
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
        };
        let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
        let main_suite =
            field("Suites").is_some_and(|s| s.split_whitespace().any(|s| !s.contains('-')));
        let Some(uris) = field("URIs") else {
            continue;
        };
        if is_deb && main_suite {
            let uris = uris.split_whitespace().map(str::to_string).collect();
            // An inline key (a multi-line value) is not copied: Debian's archive keys are
            // trusted anyway.
            return Some((uris, field("Signed-By").filter(|k| !k.is_empty())));
        }
    }
    None
}

/// From a one-line `sources.list`: the URIs of `deb` lines with a main suite.
fn mirror_of_list(text: &str) -> Vec<String> {
    let mut uris = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        // `deb [options] URI SUITE COMPONENTS...`
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(options) => options.split_once(']').map_or("", |(_, r)| r),
            None => rest,
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        if let [uri, suite, ..] = words.as_slice() {
            if !suite.contains('-') && !uris.iter().any(|u| u == uri) {
                uris.push(uri.to_string());
            }
        }
    }
    uris
}

/// The deb822 stanza of trixie's main component on `uris`.
fn trixie_stanza(uris: &[String], signed_by: Option<&str>) -> String {
    let mut s = format!(
        "Types: deb\nURIs: {}\nSuites: trixie\nComponents: main\n",
        uris.join(" ")
    );
    if let Some(k) = signed_by {
        s.push_str(&format!("Signed-By: {k}\n"));
    }
    s
}

/// Writes `text` to `path` unless it holds exactly that; whether it wrote.
fn write_if_changed(path: &Path, text: &str) -> Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(false);
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(true)
}

/// `docker compose version --short`, if the docker CLI has the plugin.
fn docker_compose_version() -> Option<String> {
    let out = Command::new("docker")
        .args(["compose", "version", "--short"])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The version in a plugin's metadata.
fn plugin_version(plugin: &Path) -> Option<String> {
    let out = Command::new(plugin)
        .arg("docker-cli-plugin-metadata")
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, rest) = text.split_once("\"Version\"")?;
    let start = rest.find('"')? + 1;
    let end = start + rest[start..].find('"')?;
    Some(rest[start..end].to_string())
}

fn is_v2(version: &str) -> bool {
    version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| m >= 2)
}

/// One line per tool: what is installed, its version and where.
fn installed(plugins_dir: &Path) -> Vec<String> {
    let first_line = |cmd: &mut Command| {
        cmd.output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                let all = [o.stdout, o.stderr].concat();
                String::from_utf8_lossy(&all)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|| "missing".to_string())
    };
    let v2 = if plugins_dir == Path::new(PLUGINS_DIR) {
        first_line(Command::new("docker").args(["compose", "version"]))
    } else {
        plugin_version(&plugins_dir.join("docker-compose"))
            .map(|v| format!("Compose {v} in {}", plugins_dir.display()))
            .unwrap_or_else(|| "missing".to_string())
    };
    vec![
        format!("nginx: {}", first_line(Command::new("nginx").arg("-v"))),
        format!(
            "busybox: {}",
            first_line(Command::new("/bin/busybox").arg("--help"))
        ),
        format!(
            "docker-compose (v1): {}",
            first_line(Command::new("docker-compose").arg("version").arg("--short"))
        ),
        format!("docker compose (v2): {v2}"),
        format!(
            "postgresql: {}",
            // A fixed command: the server binaries live in a folder per major version.
            first_line(
                Command::new("sh").args(["-c", "/usr/lib/postgresql/*/bin/postgres --version"])
            )
        ),
        format!(
            "docker-registry: {}",
            first_line(Command::new("/usr/bin/docker-registry").arg("--version"))
        ),
        format!(
            "haproxy: {}",
            first_line(Command::new("/usr/sbin/haproxy").arg("-v"))
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "Types: deb\n# http://snapshot.debian.org/archive/debian/20250520T000000Z\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\n# http://snapshot.debian.org/archive/debian-security/20250520T000000Z\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

    #[test]
    fn the_trixie_source_takes_the_machines_own_mirror() {
        let (uris, key) = mirror_of_deb822(BOOKWORM).unwrap();
        assert_eq!(uris, ["http://deb.debian.org/debian"]);
        assert_eq!(
            trixie_stanza(&uris, key.as_deref()),
            "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        );
        // The security suite alone is no mirror of the main suite.
        let security = BOOKWORM.split("\n\n").nth(1).unwrap();
        assert_eq!(mirror_of_deb822(security), None);
        // A mirror of another name, in the one-line format, options and all.
        let list = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\ndeb http://mirror.example/debian-security bookworm-security main\ndeb-src http://mirror.example/debian bookworm main\n";
        assert_eq!(mirror_of_list(list), ["http://mirror.example/debian"]);
        assert_eq!(
            trixie_stanza(&mirror_of_list(list), None),
            "Types: deb\nURIs: http://mirror.example/debian\nSuites: trixie\nComponents: main\n"
        );
    }

    #[test]
    fn versions_two_and_later_are_compose_v2() {
        assert!(is_v2("2.26.1-4"));
        assert!(is_v2("v2.29.7"));
        assert!(is_v2("5.0.0"));
        assert!(!is_v2("1.29.2"));
        assert!(!is_v2(""));
    }

    #[test]
    fn a_file_is_written_only_when_it_changes() {
        let path = std::env::temp_dir().join(format!("xtask-setup-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        assert!(write_if_changed(&path, PIN).unwrap());
        assert!(!write_if_changed(&path, PIN).unwrap());
        assert!(write_if_changed(&path, "other\n").unwrap());
        std::fs::remove_file(&path).unwrap();
    }
}
