//! Which Compose tools are installed, found where the operator's own commands
//! would find them.
//!
//! `docker compose` is a docker CLI plugin, so it is looked for exactly as the
//! CLI looks for plugins (docker/cli `cli-plugins/manager`): the directories
//! of `cliPluginsExtraDirs` in the config file, then the config directory's
//! `cli-plugins`, then the system folders; the first `docker-compose` found
//! is the candidate, and only a candidate that answers the plugin metadata
//! call is a plugin (an invalid first candidate hides the later ones from the
//! CLI, so it hides them here too). The metadata call is a Go program's start
//! (tens of milliseconds) and gives the version. When no folder holds a
//! candidate (a docker CLI built with other system folders), the CLI itself is
//! asked: `docker compose version --short`.
//!
//! `docker-compose` (Compose 1.x) is the program of that name on `PATH`, as a
//! shell finds it, unless it is Compose 2: the plugin itself (Debian's
//! Compose 2 package links `/usr/bin/docker-compose` to its plugin), or the
//! standalone Compose 2 binary installed under that name (as its release notes
//! suggest). Compose 1 is a Python script (Debian, pip) or a PyInstaller
//! binary; Compose 2 is a Go binary that answers the plugin metadata call under
//! any name. So a script is taken for Compose 1 without being run (a Python
//! start costs most of a second, and its version is on the containers it
//! made), and a binary is asked for its plugin metadata: one that answers is
//! Compose 2.

use super::Flavour;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The docker CLI's system plugin folders on Linux, in its order.
pub const SYSTEM_PLUGIN_DIRS: [&str; 4] = [
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
];

/// How long a plugin's metadata call or `docker compose version` may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// A Compose tool found installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Which tool.
    pub flavour: Flavour,
    /// The file found (the plugin, or `docker-compose` on `PATH`); `None`
    /// when the docker CLI said it has the plugin but not where.
    pub path: Option<PathBuf>,
    /// Its version, when it was asked (the plugin's metadata).
    pub version: Option<String>,
}

impl std::fmt::Display for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.flavour.command())?;
        if let Some(v) = &self.version {
            write!(f, " {v}")?;
        }
        if let Some(p) = &self.path {
            write!(f, " ({})", p.display())?;
        }
        Ok(())
    }
}

/// Where the Compose tools are looked for: what the docker CLI that ran the
/// plugin would see.
#[derive(Debug, Clone)]
pub struct ToolLookup {
    config_dir: Option<PathBuf>,
    docker: OsString,
    docker_flags: Vec<OsString>,
    path: Option<OsString>,
    system_dirs: Vec<PathBuf>,
}

impl ToolLookup {
    /// Looks where `docker` (the program, with its global flags such as
    /// `--config DIR`) finds plugins; `config_dir` is its `--config`, if
    /// given (else `DOCKER_CONFIG`, else `~/.docker`, as for the CLI).
    pub fn new<I, S>(
        config_dir: Option<&Path>,
        docker: impl Into<OsString>,
        docker_flags: I,
    ) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        let config_dir = config_dir
            .map(Path::to_path_buf)
            .or_else(|| env("DOCKER_CONFIG").map(PathBuf::from))
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".docker")));
        Self {
            config_dir,
            docker: docker.into(),
            docker_flags: docker_flags.into_iter().map(Into::into).collect(),
            path: env("PATH"),
            system_dirs: SYSTEM_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
        }
    }

    /// Looks in `config_dir`, the plugin folders `system_dirs` and along
    /// `path` instead of the process's own (for tests, and for a docker CLI
    /// built with other system folders).
    pub fn with_dirs(
        mut self,
        config_dir: Option<PathBuf>,
        system_dirs: Vec<PathBuf>,
        path: Option<OsString>,
    ) -> Self {
        self.config_dir = config_dir;
        self.system_dirs = system_dirs;
        self.path = path;
        self
    }

    /// The folders the docker CLI searches for plugins, in its order:
    /// `cliPluginsExtraDirs` of the config file, the config directory's
    /// `cli-plugins`, the system folders.
    pub fn plugin_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = Vec::new();
        if let Some(config) = &self.config_dir {
            dirs.extend(extra_dirs(&config.join("config.json")));
            dirs.push(config.join("cli-plugins"));
        }
        dirs.extend(self.system_dirs.iter().cloned());
        dirs
    }

    /// The file the docker CLI would take as its `compose` plugin: the first
    /// `docker-compose` in [`ToolLookup::plugin_dirs`] (a symlink that leads
    /// nowhere does not count, as for the CLI).
    pub fn plugin_candidate(&self) -> Option<PathBuf> {
        self.plugin_dirs()
            .into_iter()
            .map(|d| d.join("docker-compose"))
            .find(|p| std::fs::metadata(p).is_ok())
    }

    /// `docker compose`, if the docker CLI has it; else why not.
    pub async fn v2(&self) -> Result<Installed, String> {
        match self.plugin_candidate() {
            Some(path) => match plugin_version(&path).await {
                Ok(version) => Ok(Installed {
                    flavour: Flavour::V2,
                    path: Some(path),
                    version: Some(version),
                }),
                Err(why) => Err(format!(
                    "{} is not a docker CLI plugin ({why}), and it hides any other",
                    path.display()
                )),
            },
            None => self.ask_docker().await.map_err(|why| {
                format!(
                    "no docker-compose plugin in {}, and {why}",
                    self.plugin_dirs()
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        }
    }

    /// `docker-compose` (1.x), if it is on `PATH`; else why not.
    pub async fn v1(&self) -> Result<Installed, String> {
        let found = self
            .path
            .as_ref()
            .into_iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("docker-compose"))
            .find(|p| is_executable(p));
        let Some(path) = found else {
            return Err("no docker-compose on PATH".to_string());
        };
        let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if real.parent().is_some_and(|d| d.ends_with("cli-plugins")) {
            return Err(format!(
                "{} is the Compose 2 plugin ({}), not Compose 1",
                path.display(),
                real.display()
            ));
        }
        if !is_script(&real) {
            if let Ok(version) = plugin_version(&real).await {
                return Err(format!(
                    "{} is Compose 2 ({version}) installed under the name of Compose 1",
                    path.display()
                ));
            }
        }
        Ok(Installed {
            flavour: Flavour::V1,
            path: Some(path),
            version: None,
        })
    }

    /// The tool of `flavour`, if installed; else why not.
    pub async fn find(&self, flavour: Flavour) -> Result<Installed, String> {
        match flavour {
            Flavour::V1 => self.v1().await,
            Flavour::V2 => self.v2().await,
        }
    }

    async fn ask_docker(&self) -> Result<Installed, String> {
        let mut cmd = tokio::process::Command::new(&self.docker);
        cmd.args(&self.docker_flags)
            .args(["compose", "version", "--short"]);
        let out = output(cmd).await?;
        let version = String::from_utf8_lossy(&out).trim().to_string();
        if version.is_empty() {
            return Err("docker compose version printed nothing".to_string());
        }
        Ok(Installed {
            flavour: Flavour::V2,
            path: None,
            version: Some(version),
        })
    }
}

/// `cliPluginsExtraDirs` of a docker config file (none when the file is
/// missing or unreadable: the CLI would only warn).
fn extra_dirs(config_json: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string(config_json)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("cliPluginsExtraDirs").cloned())
        .and_then(|dirs| dirs.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.as_str())
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// The version a docker CLI plugin gives in its metadata (what the CLI
/// reads to accept it as a plugin).
async fn plugin_version(path: &Path) -> Result<String, String> {
    let mut cmd = tokio::process::Command::new(path);
    cmd.arg("docker-cli-plugin-metadata");
    let out = output(cmd).await?;
    let meta: serde_json::Value =
        serde_json::from_slice(&out).map_err(|e| format!("its metadata is not JSON: {e}"))?;
    if meta.get("SchemaVersion").and_then(|v| v.as_str()).is_none() {
        return Err("its metadata has no SchemaVersion".to_string());
    }
    Ok(meta
        .get("Version")
        .and_then(|v| v.as_str())
        .unwrap_or("unknown version")
        .to_string())
}

/// Runs `cmd` with no input, bounded by [`ASK_TIMEOUT`]; its stdout when it
/// exits 0.
async fn output(mut cmd: tokio::process::Command) -> Result<Vec<u8>, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = rollout_core::busy::retry_busy(|| cmd.spawn())
        .await
        .map_err(|e| format!("it cannot be run: {e}"))?;
    let out = tokio::time::timeout(ASK_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("it did not answer within {} s", ASK_TIMEOUT.as_secs()))?
        .map_err(|e| format!("it cannot be run: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        return Err(format!("it exited with {}: {}", out.status, last.trim()));
    }
    Ok(out.stdout)
}

/// Whether `path` starts with `#!` (an interpreter's script, as Compose 1 is
/// when installed by Debian or pip; Compose 2 never is).
fn is_script(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 2];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == b"#!")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A folder removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(name: &str) -> Dir {
            let d = std::env::temp_dir()
                .join(format!("rollout-installed-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }

        fn script(&self, rel: &str, body: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const PLUGIN: &str = r#"[ "$1" = docker-cli-plugin-metadata ] && echo '{"SchemaVersion":"0.1.0","Vendor":"Docker Inc.","Version":"2.26.1-4"}'"#;

    /// Looks only in the test's folder: `system/` stands for the system
    /// plugin folders.
    fn lookup(config: &Dir, path: Option<&Path>) -> ToolLookup {
        ToolLookup::new(None, "/nonexistent/docker", Vec::<OsString>::new()).with_dirs(
            Some(config.0.clone()),
            vec![config.0.join("system")],
            path.map(|p| p.as_os_str().to_owned()),
        )
    }

    #[test]
    fn plugin_folders_are_searched_in_the_clis_order() {
        let d = Dir::new("order");
        std::fs::write(
            d.0.join("config.json"),
            r#"{"cliPluginsExtraDirs":["/opt/a","/opt/b"],"auths":{}}"#,
        )
        .unwrap();
        let dirs = lookup(&d, None).plugin_dirs();
        let expected = vec![
            PathBuf::from("/opt/a"),
            PathBuf::from("/opt/b"),
            d.0.join("cli-plugins"),
            d.0.join("system"),
        ];
        assert_eq!(dirs, expected);
        let real = ToolLookup::new(Some(&d.0), "docker", Vec::<OsString>::new()).plugin_dirs();
        assert_eq!(
            &real[real.len() - 4..],
            SYSTEM_PLUGIN_DIRS.map(PathBuf::from)
        );
        // A config file that does not parse adds no folder.
        std::fs::write(d.0.join("config.json"), "{not json").unwrap();
        assert_eq!(lookup(&d, None).plugin_dirs()[0], d.0.join("cli-plugins"));
    }

    #[tokio::test]
    async fn the_plugin_in_an_extra_folder_is_found_with_its_version() {
        let d = Dir::new("extra");
        let plugin = d.script("extra/docker-compose", PLUGIN);
        std::fs::write(
            d.0.join("config.json"),
            format!(
                r#"{{"cliPluginsExtraDirs":["{}"]}}"#,
                d.0.join("extra").display()
            ),
        )
        .unwrap();
        let found = lookup(&d, None).v2().await.unwrap();
        assert_eq!(found.flavour, Flavour::V2);
        assert_eq!(found.path.as_deref(), Some(plugin.as_path()));
        assert_eq!(found.version.as_deref(), Some("2.26.1-4"));
        assert!(
            found.to_string().starts_with("docker compose 2.26.1-4 ("),
            "{found}"
        );
    }

    #[tokio::test]
    async fn a_first_candidate_that_is_no_plugin_hides_the_others() {
        let d = Dir::new("shadow");
        d.script("cli-plugins/docker-compose", "exit 1");
        d.script("extra/docker-compose", PLUGIN);
        d.script("system/docker-compose", PLUGIN);
        // cli-plugins comes after the extra folders: the real plugin wins.
        std::fs::write(
            d.0.join("config.json"),
            format!(
                r#"{{"cliPluginsExtraDirs":["{}"]}}"#,
                d.0.join("extra").display()
            ),
        )
        .unwrap();
        assert!(lookup(&d, None).v2().await.is_ok());
        // Without the extra folder the invalid one comes first and hides
        // every later one (the system folder's too), as `docker compose`
        // then says "unknown command".
        std::fs::write(d.0.join("config.json"), "{}").unwrap();
        let why = lookup(&d, None).v2().await.unwrap_err();
        assert!(why.contains("is not a docker CLI plugin"), "{why}");
        assert!(why.contains("cli-plugins/docker-compose"), "{why}");
    }

    #[tokio::test]
    async fn without_a_candidate_the_docker_cli_is_asked() {
        let d = Dir::new("ask");
        let docker = d.script(
            "bin/docker",
            r#"[ "$*" = "--context prod compose version --short" ] && echo 2.29.0"#,
        );
        let mut l = lookup(&d, None);
        assert_eq!(l.plugin_candidate(), None);
        l.docker = docker.into();
        l.docker_flags = vec!["--context".into(), "prod".into()];
        let found = l.v2().await.unwrap();
        assert_eq!(
            (found.path, found.version.as_deref()),
            (None, Some("2.29.0"))
        );
        l.docker = "/nonexistent/docker".into();
        let why = l.v2().await.unwrap_err();
        assert!(why.starts_with("no docker-compose plugin in "), "{why}");
        assert!(why.contains("cannot be run"), "{why}");
    }

    #[tokio::test]
    async fn compose_1_is_docker_compose_on_path_unless_it_is_compose_2() {
        let d = Dir::new("v1");
        let v1 = d.script("bin/docker-compose", "echo 1.29.2");
        let found = lookup(&d, Some(&d.0.join("bin"))).v1().await.unwrap();
        assert_eq!(found.path.as_deref(), Some(v1.as_path()));
        // Not on PATH: not installed.
        let why = lookup(&d, Some(&d.0.join("nowhere")))
            .v1()
            .await
            .unwrap_err();
        assert_eq!(why, "no docker-compose on PATH");
        // A link to the Compose 2 plugin (Debian trixie's /usr/bin/docker-compose).
        d.script("libexec/cli-plugins/docker-compose", PLUGIN);
        std::fs::create_dir_all(d.0.join("bin2")).unwrap();
        std::os::unix::fs::symlink(
            d.0.join("libexec/cli-plugins/docker-compose"),
            d.0.join("bin2/docker-compose"),
        )
        .unwrap();
        let why = lookup(&d, Some(&d.0.join("bin2"))).v1().await.unwrap_err();
        assert!(why.contains("is the Compose 2 plugin"), "{why}");
        // The standalone Compose 2 binary under the name of Compose 1: a
        // binary (not a script) that answers the plugin metadata call. The
        // real one is used, as only a Go binary of Compose 2 behaves so.
        let Some(real) = SYSTEM_PLUGIN_DIRS
            .iter()
            .map(|dir| Path::new(dir).join("docker-compose"))
            .find(|p| p.is_file())
        else {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "Compose 2 is not installed (cargo xtask setup installs it)"
            );
            eprintln!("skipped the standalone case: Compose 2 is not installed");
            return;
        };
        std::fs::create_dir_all(d.0.join("bin3")).unwrap();
        std::fs::copy(&real, d.0.join("bin3/docker-compose")).unwrap();
        let why = lookup(&d, Some(&d.0.join("bin3"))).v1().await.unwrap_err();
        assert!(
            why.contains("is Compose 2 (")
                && why.ends_with("installed under the name of Compose 1"),
            "{why}"
        );
    }
}
