//! A plugin binary installed into a temporary Docker config folder.

use crate::engine::ComposeTool;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary `DOCKER_CONFIG` whose `cli-plugins/docker-rollout` is the binary under test, so
/// that `docker --config DIR rollout ...` runs it through the Docker CLI's plugin protocol.
/// Its config file names the `cliPluginsExtraDirs` of the operator's own docker config, so the
/// plugin finds the Compose tools the harness's `docker compose` finds. Removed when dropped.
#[derive(Debug)]
pub struct PluginDir {
    dir: PathBuf,
    /// `PATH` for the docker CLI and the plugin, when a tool is hidden from them.
    path: Option<OsString>,
}

impl PluginDir {
    /// Installs `binary` as the `rollout` plugin (the file is copied as
    /// `cli-plugins/docker-rollout`, mode 755).
    pub fn install(binary: &Path) -> PluginDir {
        PluginDir::install_as(binary, "rollout")
    }

    /// Installs `binary` as the plugin `name` (`docker-<name>`).
    pub fn install_as(binary: &Path, name: &str) -> PluginDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "re2e-docker-config-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let plugins = dir.join("cli-plugins");
        std::fs::create_dir_all(&plugins)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", plugins.display()));
        // No credentials, default context (DOCKER_HOST still applies), the operator's plugin
        // folders.
        let config = serde_json::json!({ "cliPluginsExtraDirs": ambient_extra_dirs() });
        std::fs::write(dir.join("config.json"), format!("{config}\n")).unwrap();
        let target = plugins.join(format!("docker-{name}"));
        std::fs::copy(binary, &target).unwrap_or_else(|e| {
            panic!(
                "cannot install {} as {}: {e}",
                binary.display(),
                target.display()
            )
        });
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        PluginDir { dir, path: None }
    }

    /// Hides `tool` from the docker CLI and the plugin it runs, as if it were not installed.
    /// Compose v2: an invalid `cli-plugins/docker-compose` (the CLI takes the first candidate it
    /// finds and an invalid one hides every later one, the system folders' included; the
    /// config's extra folders, searched before it, are dropped). Compose v1: a `PATH` whose only
    /// program is `docker`.
    pub fn hide(&mut self, tool: ComposeTool) {
        use std::os::unix::fs::PermissionsExt;
        match tool {
            ComposeTool::V2 => {
                let stub = self.dir.join("cli-plugins/docker-compose");
                std::fs::write(&stub, "#!/bin/sh\necho 'not a plugin' >&2\nexit 1\n").unwrap();
                std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
                std::fs::write(self.dir.join("config.json"), "{}\n").unwrap();
            }
            ComposeTool::V1 => {
                let bin = self.dir.join("bin");
                std::fs::create_dir_all(&bin).unwrap();
                let docker = std::env::var_os("PATH")
                    .iter()
                    .flat_map(std::env::split_paths)
                    .map(|d| d.join("docker"))
                    .find(|p| p.is_file())
                    .expect("docker is on PATH");
                let link = bin.join("docker");
                if !link.exists() {
                    std::os::unix::fs::symlink(&docker, &link).unwrap();
                }
                self.path = Some(bin.into_os_string());
            }
        }
    }

    /// The config folder (what `DOCKER_CONFIG` or `--config` names).
    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    /// The installed plugin file.
    pub fn plugin_path(&self, name: &str) -> PathBuf {
        self.dir.join("cli-plugins").join(format!("docker-{name}"))
    }

    /// `docker --config DIR`: add `rollout ...` and run it.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.arg("--config").arg(&self.dir);
        if let Some(path) = &self.path {
            cmd.env("PATH", path);
        }
        cmd
    }
}

/// `cliPluginsExtraDirs` of the operator's docker config (`DOCKER_CONFIG`, else `~/.docker`).
fn ambient_extra_dirs() -> Vec<String> {
    let dir = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
    dir.and_then(|d| std::fs::read_to_string(d.join("config.json")).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("cliPluginsExtraDirs").cloned())
        .and_then(|d| serde_json::from_value(d).ok())
        .unwrap_or_default()
}

impl Drop for PluginDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A binary of the workspace, for example the real plugin:
/// `workspace_binary("docker-rollout", "docker-rollout")`.
///
/// It is taken from the target folder the test itself runs from (`target/debug/BIN`, beside
/// `deps/`), where `cargo test --workspace` and `cargo xtask e2e` (which builds every binary
/// first) put it. Only when it is not there is it built with `cargo build -p PACKAGE --bin
/// BIN`; under `cargo test -p rollout-e2e` that nested build waits for the outer cargo's lock,
/// so build it first.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    if let Some(profile_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
    {
        let candidate = profile_dir.join(bin);
        if candidate.is_file() {
            return candidate;
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace).args([
        "build",
        "--package",
        package,
        "--bin",
        bin,
        "--message-format=json-render-diagnostics",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo build -p {package}: {e}"));
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo built no executable {bin} in {package}"))
}
