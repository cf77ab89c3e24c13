//! rollout-nginx's two proxy traits for an nginx that runs in a container.
//!
//! - Commands run by exec. The output stream ending says nothing about
//!   success: the exit code comes from inspecting the exec afterwards.
//! - The live config file is written **in place on the host file of its
//!   mount**. The seed bind-mounts a single file read-only
//!   (`./nginx.conf:/etc/nginx/nginx.conf:ro`): the container cannot write
//!   it, and a file renamed over the host file would never be seen (the
//!   mount pins the inode). Writing the host file's bytes in place (same
//!   inode) is the one write the container sees. A config that is on no
//!   mount at all lives only in the container's own layer and would be lost
//!   when Compose recreates it, so it is refused with a hint.
//! - The candidate beside it is uploaded into the container (the archive
//!   endpoint, as `docker cp` does), where `nginx -t -c` checks it.
//!
//! Writing the host file needs this machine to see the engine's files: true
//! for a local engine, not for a remote one (that is refused with a hint).

use crate::engine::{status, Engine};
use crate::labels;
use crate::tar;
use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerInspectResponse, ExecConfig, MountPoint};
use bollard::query_parameters::{
    DownloadFromContainerOptions, ListContainersOptions, UploadToContainerOptions,
};
use futures::StreamExt;
use rollout_core::{BackendError, ServiceRef};
use rollout_nginx::proxy::{ConfigStore, ExecOutput, Proxy, ProxyError, ProxyExec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why the proxy replicas of a service could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ProxyServiceError {
    /// The engine answered, and no container of the service runs: the proxy
    /// is what cannot be reached.
    #[error("the proxy is not running: no running container of the proxy service {service}\nhint: start it with docker compose up -d {}", service.service)]
    NotRunning {
        /// The proxy service.
        service: ServiceRef,
    },
    /// The engine could not be asked.
    #[error(transparent)]
    Engine(#[from] BackendError),
}

/// An nginx container reached through the engine: implements
/// [`ProxyExec`] and [`ConfigStore`].
#[derive(Debug, Clone)]
pub struct ProxyContainer {
    engine: Engine,
    container: String,
    timeout: Duration,
    /// Proxy paths whose host file is known to be the one the container
    /// reads (a write there was read back through the engine): later reads
    /// and writes go to the host file directly.
    host_files: Arc<Mutex<HashMap<String, PathBuf>>>,
}

impl ProxyContainer {
    /// The container `container` (a name or an id) of `engine`.
    pub fn new(engine: Engine, container: impl Into<String>) -> Self {
        Self {
            engine,
            container: container.into(),
            timeout: Duration::from_secs(30),
            host_files: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The same, with another bound per command (30 s unless set).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The proxy replicas of a Compose service: one [`Proxy`] per running
    /// container of it, for the nginx router to update every one.
    pub async fn of_service(
        engine: &Engine,
        service: &ServiceRef,
    ) -> Result<Vec<Proxy>, ProxyServiceError> {
        let filters = HashMap::from([
            (
                "label".to_string(),
                vec![
                    format!("{}={}", labels::PROJECT, service.project),
                    format!("{}={}", labels::SERVICE, service.service),
                ],
            ),
            ("status".to_string(), vec!["running".to_string()]),
        ]);
        let options = ListContainersOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let found = engine
            .docker()
            .list_containers(Some(options))
            .await
            .map_err(|e| engine.error(e))?;
        if found.is_empty() {
            return Err(ProxyServiceError::NotRunning {
                service: service.clone(),
            });
        }
        let mut proxies: Vec<Proxy> = found
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                Some(ProxyContainer::new(engine.clone(), name).proxy())
            })
            .collect();
        proxies.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(proxies)
    }

    /// This container as a [`Proxy`] of the nginx router.
    pub fn proxy(self) -> Proxy {
        let shared = Arc::new(self);
        Proxy::new(shared.container.clone(), shared.clone(), shared)
    }

    async fn running(&self, program: &str) -> Result<ContainerInspectResponse, ProxyError> {
        let exec_error = |reason: String| ProxyError::Exec {
            proxy: self.container.clone(),
            program: program.to_string(),
            reason,
        };
        let c = match self
            .engine
            .docker()
            .inspect_container(&self.container, None)
            .await
        {
            Ok(c) => c,
            Err(e) if status(&e) == Some(404) => {
                return Err(exec_error("no such container".into()));
            }
            Err(e) => return Err(exec_error(self.engine.error(e).to_string())),
        };
        if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            return Err(exec_error(not_running(&self.container)));
        }
        Ok(c)
    }

    fn file_error(&self, action: &'static str, path: &str, reason: String) -> ProxyError {
        ProxyError::File {
            proxy: self.container.clone(),
            action,
            path: path.to_string(),
            reason,
        }
    }

    fn known_host_file(&self, path: &str) -> Option<PathBuf> {
        self.host_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
            .cloned()
    }

    /// The host file of `path` on the container's mounts; a file on no
    /// mount is refused.
    fn mounted_host_file(&self, mounts: &[MountPoint], path: &str) -> Result<PathBuf, ProxyError> {
        host_path(mounts, path).ok_or_else(|| {
            self.file_error(
                "write",
                path,
                "it is not on a mount, so a change would be lost when the container is recreated\nhint: bind-mount the config from the project, as in ./nginx.conf:/etc/nginx/nginx.conf:ro".into(),
            )
        })
    }

    /// Writes `bytes` into the host file `host` in place (same inode) and
    /// syncs it.
    async fn write_host_file(
        &self,
        path: &str,
        host: &Path,
        bytes: &[u8],
    ) -> Result<(), ProxyError> {
        use tokio::io::AsyncWriteExt;
        let write = async {
            let mut file = tokio::fs::OpenOptions::new().write(true).open(host).await?;
            file.write_all(bytes).await?;
            file.set_len(bytes.len() as u64).await?;
            file.sync_all().await
        };
        write.await.map_err(|e| {
            self.file_error(
                "write",
                path,
                format!(
                    "writing its host file {}: {e}\nhint: the live config is written on the engine's machine; run the rollout there",
                    host.display()
                ),
            )
        })
    }

    async fn run(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
        let program = argv.first().cloned().unwrap_or_default();
        let exec_error = |reason: String| ProxyError::Exec {
            proxy: self.container.clone(),
            program: program.clone(),
            reason,
        };
        if program.is_empty() {
            return Err(exec_error("empty command".into()));
        }
        let docker = self.engine.docker();
        let config = ExecConfig {
            cmd: Some(argv.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(false),
            tty: Some(false),
            ..Default::default()
        };
        // The engine refuses an exec in a container that is gone (404) or
        // not running (409): no inspect before every command.
        let created = match docker.create_exec(&self.container, config).await {
            Ok(created) => created,
            Err(e) if status(&e) == Some(404) => {
                return Err(exec_error("no such container".into()))
            }
            Err(e) if status(&e) == Some(409) => {
                return Err(exec_error(not_running(&self.container)))
            }
            Err(e) => return Err(exec_error(self.engine.error(e).to_string())),
        };
        let started = docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| exec_error(self.engine.error(e).to_string()))?;
        let StartExecResults::Attached { mut output, .. } = started else {
            return Err(exec_error(
                "the engine did not attach to the command".into(),
            ));
        };
        let mut result = ExecOutput::default();
        let drained = async {
            while let Some(chunk) = output.next().await {
                match chunk.map_err(|e| exec_error(self.engine.error(e).to_string()))? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        result.stdout.extend_from_slice(&message)
                    }
                    LogOutput::StdErr { message } => result.stderr.extend_from_slice(&message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            Ok::<(), ProxyError>(())
        };
        match tokio::time::timeout(self.timeout, drained).await {
            Ok(done) => done?,
            Err(_) => {
                return Err(ProxyError::Timeout {
                    proxy: self.container.clone(),
                    program,
                    seconds: self.timeout.as_secs(),
                })
            }
        }
        // The stream ends when the command closes its output, which is
        // not yet its exit: ask for the code until the engine has it.
        for attempt in 0..100u32 {
            let inspected = docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| exec_error(self.engine.error(e).to_string()))?;
            if inspected.running != Some(true) {
                result.code = inspected
                    .exit_code
                    .ok_or_else(|| exec_error("the engine reports no exit code".into()))?
                    as i32;
                return Ok(result);
            }
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(10) + 1))).await;
        }
        Err(ProxyError::Timeout {
            proxy: self.container.clone(),
            program,
            seconds: self.timeout.as_secs(),
        })
    }
}

fn not_running(container: &str) -> String {
    format!(
        "container {container} is not running\nhint: start the proxy (docker compose up -d) and run the rollout again"
    )
}

/// The host file behind `path` in the container: the source of the mount
/// whose destination is `path` or one of its folders.
fn host_path(mounts: &[MountPoint], path: &str) -> Option<PathBuf> {
    mounts
        .iter()
        .filter_map(|m| {
            let dest = m.destination.as_deref()?.trim_end_matches('/');
            let source = m.source.as_deref()?;
            if path == dest {
                return Some((dest.len(), PathBuf::from(source)));
            }
            let rest = path.strip_prefix(dest)?.strip_prefix('/')?;
            Some((dest.len(), Path::new(source).join(rest)))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

fn split_path(path: &str) -> Option<(&str, &str)> {
    let (dir, name) = path.rsplit_once('/')?;
    if name.is_empty() || !path.starts_with('/') {
        return None;
    }
    Some((if dir.is_empty() { "/" } else { dir }, name))
}

#[async_trait]
impl ProxyExec for ProxyContainer {
    async fn exec(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
        self.run(argv).await
    }
}

#[async_trait]
impl ConfigStore for ProxyContainer {
    async fn read(&self, path: &str) -> Result<Vec<u8>, ProxyError> {
        if let Some(host) = self.known_host_file(path) {
            return match tokio::fs::read(&host).await {
                Ok(bytes) => Ok(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ProxyError::Missing {
                    proxy: self.container.clone(),
                    path: path.to_string(),
                }),
                Err(e) => Err(self.file_error(
                    "read",
                    path,
                    format!("reading its host file {}: {e}", host.display()),
                )),
            };
        }
        let options = DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut archive = Vec::new();
        let mut stream = self
            .engine
            .docker()
            .download_from_container(&self.container, Some(options));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                // The engine answers 404 for a path that does not exist (and
                // for a container that is gone): the router asks for files
                // that may well not exist (the journal of a commit an earlier
                // run left) and needs to tell that apart from a failed read.
                if status(&e) == Some(404) {
                    ProxyError::Missing {
                        proxy: self.container.clone(),
                        path: path.to_string(),
                    }
                } else {
                    self.file_error("read", path, self.engine.error(e).to_string())
                }
            })?;
            archive.extend_from_slice(&chunk);
        }
        tar::first_file(&archive).map_err(|e| self.file_error("read", path, e))
    }

    async fn write_in_place(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        let known = self.known_host_file(path);
        let host = match &known {
            Some(host) => host.clone(),
            None => {
                let c = self.running("write").await?;
                let mounts = c.mounts.unwrap_or_default();
                self.mounted_host_file(&mounts, path)?
            }
        };
        self.write_host_file(path, &host, bytes).await?;
        if known.is_some() {
            return Ok(());
        }
        // The file written must be the one the container reads: with a
        // remote engine, a local file of the same path is another file.
        let seen = self.read(path).await?;
        if seen != bytes {
            return Err(self.file_error(
                "write",
                path,
                format!(
                    "the container does not see what was written to {}: the engine is on another machine\nhint: run the rollout on the engine's machine",
                    host.display()
                ),
            ));
        }
        self.host_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), host);
        Ok(())
    }

    async fn write_new(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        self.write_new_all(&[(path, bytes)]).await
    }

    /// One upload when the files share a folder (the candidate and the
    /// journal beside the live file), else one each.
    async fn write_new_all(&self, files: &[(&str, &[u8])]) -> Result<(), ProxyError> {
        let Some((first, _)) = files.first() else {
            return Ok(());
        };
        let mut dir = None;
        let mut entries = Vec::with_capacity(files.len());
        for (path, bytes) in files {
            let (d, name) = split_path(path).ok_or_else(|| {
                self.file_error("write", path, "not an absolute file path".into())
            })?;
            if dir.is_some_and(|seen| seen != d) {
                for (path, bytes) in files {
                    self.write_new_all(&[(path, bytes)]).await?;
                }
                return Ok(());
            }
            dir = Some(d);
            entries.push((name, *bytes));
        }
        let path = first;
        let dir = dir.unwrap_or("/");
        let archive = tar::files(&entries, 0o644).map_err(|e| self.file_error("write", path, e))?;
        let options = UploadToContainerOptions {
            path: dir.to_string(),
            ..Default::default()
        };
        self.engine
            .docker()
            .upload_to_container(
                &self.container,
                Some(options),
                bollard::body_full(archive.into()),
            )
            .await
            .map_err(|e| self.file_error("write", path, self.engine.error(e).to_string()))
    }

    async fn remove(&self, path: &str) -> Result<(), ProxyError> {
        self.remove_all(&[path]).await
    }

    async fn remove_all(&self, paths: &[&str]) -> Result<(), ProxyError> {
        if paths.is_empty() {
            return Ok(());
        }
        let mut argv = vec!["rm".to_string(), "-f".to_string(), "--".to_string()];
        argv.extend(paths.iter().map(|p| p.to_string()));
        let out = self.run(&argv).await?;
        if out.success() {
            Ok(())
        } else {
            Err(self.file_error("remove", &paths.join(" "), out.message()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(source: &str, dest: &str) -> MountPoint {
        MountPoint {
            source: Some(source.into()),
            destination: Some(dest.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_host_file_of_a_single_file_or_folder_mount() {
        let mounts = vec![
            mount("/srv/shop/nginx.conf", "/etc/nginx/nginx.conf"),
            mount("/srv/shop/conf.d", "/etc/nginx/conf.d"),
            mount("/srv/shop/etc", "/etc/nginx"),
        ];
        assert_eq!(
            host_path(&mounts, "/etc/nginx/nginx.conf"),
            Some(PathBuf::from("/srv/shop/nginx.conf"))
        );
        assert_eq!(
            host_path(&mounts, "/etc/nginx/conf.d/app.conf"),
            Some(PathBuf::from("/srv/shop/conf.d/app.conf"))
        );
        assert_eq!(
            host_path(&mounts, "/etc/nginx/mime.types"),
            Some(PathBuf::from("/srv/shop/etc/mime.types"))
        );
        assert_eq!(host_path(&mounts, "/etc/nginxfoo"), None);
        assert_eq!(host_path(&mounts, "/usr/share/nginx/html/index.html"), None);
    }

    #[test]
    fn candidate_paths_split_into_folder_and_name() {
        assert_eq!(
            split_path("/etc/nginx/nginx.conf.next"),
            Some(("/etc/nginx", "nginx.conf.next"))
        );
        assert_eq!(split_path("/x"), Some(("/", "x")));
        assert_eq!(split_path("relative/x"), None);
        assert_eq!(split_path("/etc/nginx/"), None);
    }
}
