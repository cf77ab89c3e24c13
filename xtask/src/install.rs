//! `cargo xtask install [--debug] [--dir DIR]`: builds docker-rollout and
//! puts it where the docker CLI looks for plugins: `DIR`, else
//! `$DOCKER_CONFIG/cli-plugins`, else `~/.docker/cli-plugins`. After it,
//! `docker rollout --help` works.

use crate::util::{self, cargo, root};
use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The plugin's file name in a cli-plugins folder.
pub const PLUGIN_FILE: &str = "docker-rollout";

/// The folder cargo builds into (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root().join(d)
            }
        }
        None => root().join("target"),
    }
}

/// Builds the plugin (`release` or the dev profile) and returns its path.
pub fn build_plugin(release: bool) -> Result<PathBuf> {
    let mut c = cargo();
    c.args(["build", "-p", "docker-rollout"]);
    if release {
        c.arg("--release");
    }
    util::run(&mut c)?;
    let bin = target_dir()
        .join(if release { "release" } else { "debug" })
        .join(PLUGIN_FILE);
    if !bin.is_file() {
        bail!("cargo built no {}", bin.display());
    }
    Ok(bin)
}

/// Copies `bin` into `dir` as an executable `docker-rollout`, replacing what
/// was there without ever leaving a half-written file (copy, then rename).
pub fn install_into(bin: &Path, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dest = dir.join(PLUGIN_FILE);
    let partial = dir.join(format!(".{PLUGIN_FILE}.partial"));
    std::fs::copy(bin, &partial)
        .with_context(|| format!("cannot copy {} to {}", bin.display(), partial.display()))?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, &dest)
        .with_context(|| format!("cannot put the plugin at {}", dest.display()))?;
    Ok(dest)
}

/// The cli-plugins folder of the docker config the CLI uses.
fn default_dir() -> Result<PathBuf> {
    if let Some(c) = std::env::var_os("DOCKER_CONFIG").filter(|c| !c.is_empty()) {
        return Ok(PathBuf::from(c).join("cli-plugins"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .context("neither DOCKER_CONFIG nor HOME is set\nhint: pass --dir DIR")?;
    Ok(PathBuf::from(home).join(".docker").join("cli-plugins"))
}

/// Entry point of this task.
pub fn run(args: &[String]) -> Result<()> {
    let mut release = true;
    let mut dir: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--debug" => release = false,
            "--dir" => dir = Some(it.next().context("--dir needs a folder")?.into()),
            other => bail!(
                "unknown argument {other:?}\nusage: cargo xtask install [--debug] [--dir DIR]"
            ),
        }
    }
    let dir = match dir {
        Some(d) => d,
        None => default_dir()?,
    };
    let bin = build_plugin(release)?;
    let dest = install_into(&bin, &dir)?;
    eprintln!("installed {}", dest.display());
    eprintln!("try: docker rollout --help");
    Ok(())
}
