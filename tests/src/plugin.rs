//! A plugin binary installed into a temporary Docker config folder.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temporary `DOCKER_CONFIG` whose `cli-plugins/docker-rollout` is the binary under test, so
/// that `docker --config DIR rollout ...` runs it through the Docker CLI's plugin protocol.
/// Removed when dropped.
#[derive(Debug)]
pub struct PluginDir {
    dir: PathBuf,
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
        // An empty config: no credentials, default context (DOCKER_HOST still applies).
        std::fs::write(dir.join("config.json"), "{}\n").unwrap();
        let target = plugins.join(format!("docker-{name}"));
        std::fs::copy(binary, &target).unwrap_or_else(|e| {
            panic!(
                "cannot install {} as {}: {e}",
                binary.display(),
                target.display()
            )
        });
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
        PluginDir { dir }
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
        cmd
    }
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
