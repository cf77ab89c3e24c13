//! rollout-nginx's two proxy traits for an nginx that runs in a container.
//!
//! - Commands run through the run's kept shells in the container
//!   ([`crate::kept_shell`]): a fork there instead of an exec each. A
//!   container without one gets an exec per command; the output stream
//!   ending says nothing about success there: the exit code comes from
//!   inspecting the exec afterwards.
//! - The live config file is written **in place in the source of its
//!   mount, on the engine's machine**, by a short-lived container of the
//!   proxy's image that mounts that source ([`crate::proxyfiles`]): the seed
//!   bind-mounts a single file read-only
//!   (`./nginx.conf:/etc/nginx/nginx.conf:ro`), so the proxy cannot write
//!   it, and a file renamed over the source would never be seen (the mount
//!   pins the inode). No path on this machine is opened, so a remote engine
//!   writes its own file. A config that is on no mount at all lives only in
//!   the container's own layer and would be lost when Compose recreates it,
//!   so it is refused with a hint.
//! - The candidate beside it is uploaded into the container (the archive
//!   endpoint, as `docker cp` does), where `nginx -t -c` checks it; files
//!   are read with `cat` through a kept shell, else through the same
//!   endpoint.
//! - The commits' journals of the replicas of a Compose service are kept
//!   with the engine ([`EngineJournal`]).

use crate::engine::{status, Engine};
use crate::kept_shell::{as_input, KeptShells, NotRun, Unanswered};
use crate::labels;
use crate::proxyfiles::{download, EngineJournal};
use crate::tar;
use crate::writer::Writers;
use async_trait::async_trait;
use bollard::container::LogOutput;
use bollard::exec::StartExecResults;
use bollard::models::{ContainerInspectResponse, ExecConfig};
use bollard::query_parameters::UploadToContainerOptions;
use futures::StreamExt;
use rollout_core::{BackendError, ServiceRef};
use rollout_nginx::proxy::{ConfigStore, ExecOutput, Proxy, ProxyError, ProxyExec};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
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
    /// The proxy service it is a replica of: its commits' journals are then
    /// kept with the engine.
    service: Option<ServiceRef>,
    /// The writer of its file, kept for the run (shared by clones).
    writers: Arc<Writers>,
    /// Its kept shells, for the run (shared by clones).
    shells: Arc<KeptShells>,
    /// Its kept shells that run as another user (nginx's workers' uid, for
    /// the drain to list their open files), by user.
    user_shells: Arc<std::sync::Mutex<BTreeMap<String, Arc<KeptShells>>>>,
}

impl ProxyContainer {
    /// The container `container` (a name or an id) of `engine`.
    pub fn new(engine: Engine, container: impl Into<String>) -> Self {
        Self {
            engine,
            container: container.into(),
            timeout: Duration::from_secs(30),
            service: None,
            writers: Arc::default(),
            shells: Arc::default(),
            user_shells: Arc::default(),
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
        let found = engine.list_containers(filters, false).await?;
        if found.is_empty() {
            return Err(ProxyServiceError::NotRunning {
                service: service.clone(),
            });
        }
        let mut proxies: Vec<Proxy> = found
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                let mut container = ProxyContainer::new(engine.clone(), name);
                container.service = Some(service.clone());
                Some(container.proxy())
            })
            .collect();
        proxies.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(proxies)
    }

    /// This container as a [`Proxy`] of the nginx router (with its
    /// journal kept with the engine when it is a replica of a service).
    pub fn proxy(self) -> Proxy {
        let journal = self
            .service
            .as_ref()
            .map(|s| EngineJournal::new(self.engine.clone(), s, self.container.clone()));
        let shared = Arc::new(self);
        let proxy = Proxy::new(shared.container.clone(), shared.clone(), shared);
        match journal {
            Some(journal) => proxy.with_journal(Arc::new(journal)),
            None => proxy,
        }
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

    /// Lets the container's kept shells go (each ends at the end of its
    /// input).
    pub(crate) async fn close_shells(&self) {
        self.shells.close().await;
        let users: Vec<Arc<KeptShells>> = self
            .user_shells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for shells in users {
            shells.close().await;
        }
    }

    /// Runs `argv` through a kept shell of the container, else by exec.
    pub(crate) async fn run(&self, argv: &[String]) -> Result<ExecOutput, ProxyError> {
        self.run_with(&self.shells, None, argv).await
    }

    /// Runs `argv` through one of `shells` (which run as `user`, the
    /// container's user when `None`), else by exec as that user.
    async fn run_with(
        &self,
        shells: &KeptShells,
        user: Option<&str>,
        argv: &[String],
    ) -> Result<ExecOutput, ProxyError> {
        let program = || argv.first().cloned().unwrap_or_default();
        match shells
            .run(&self.engine, &self.container, argv, self.timeout)
            .await
        {
            Ok(out) => Ok(out),
            Err(NotRun::Unsent) => self.run_by_exec(argv, user).await,
            Err(NotRun::Unanswered(e)) => Err(self.not_answered(&program(), e).await),
        }
    }

    /// What a command sent to a kept shell and not answered means: whether
    /// it ran is not known, so it is not run again. A container that
    /// stopped under the command says so. One recreated under the same
    /// name since the shell's last command is not told apart from a shell
    /// that broke.
    async fn not_answered(&self, program: &str, e: Unanswered) -> ProxyError {
        match e {
            Unanswered::Timeout => ProxyError::Timeout {
                proxy: self.container.clone(),
                program: program.to_string(),
                seconds: self.timeout.as_secs(),
            },
            Unanswered::Broken(reason) => match self.running(program).await {
                Err(stopped) => stopped,
                Ok(_) => ProxyError::Exec {
                    proxy: self.container.clone(),
                    program: program.to_string(),
                    reason,
                },
            },
        }
    }

    /// Runs `argv` through a kept shell of the container with `input` as
    /// its standard input (text that [`as_input`] took); `None` when no
    /// kept shell took it (nothing ran). Never by exec: an exec's input is
    /// not what the engine attaches here, and a file's bytes never go as
    /// arguments.
    pub(crate) async fn run_fed(
        &self,
        argv: &[String],
        input: &str,
    ) -> Result<Option<ExecOutput>, ProxyError> {
        let program = argv.first().cloned().unwrap_or_default();
        match self
            .shells
            .run_fed(
                &self.engine,
                &self.container,
                argv,
                Some(input),
                self.timeout,
            )
            .await
        {
            Ok(out) => Ok(Some(out)),
            Err(NotRun::Unsent) => Ok(None),
            Err(NotRun::Unanswered(e)) => Err(self.not_answered(&program, e).await),
        }
    }

    /// `files` by folder ([`by_folder`]), or the error naming the first path
    /// that is not an absolute file path.
    fn folders<'a>(&self, files: &[(&'a str, &'a [u8])]) -> Result<Vec<Folder<'a>>, ProxyError> {
        by_folder(files)
            .map_err(|path| self.file_error("write", path, "not an absolute file path".into()))
    }

    /// Writes the files of `folders` through the engine's archive endpoint:
    /// one upload per folder, each file whole, mode 0644.
    async fn upload_folders(&self, folders: Vec<Folder<'_>>) -> Result<(), ProxyError> {
        for (dir, entries) in folders {
            let path = format!("{}/{}", dir.trim_end_matches('/'), entries[0].0);
            let archive =
                tar::files(&entries, 0o644).map_err(|e| self.file_error("write", &path, e))?;
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
                .map_err(|e| self.file_error("write", &path, self.engine.error(e).to_string()))?;
        }
        Ok(())
    }

    /// Runs `argv` by exec: a process started in the container.
    async fn run_by_exec(
        &self,
        argv: &[String],
        user: Option<&str>,
    ) -> Result<ExecOutput, ProxyError> {
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
            user: user.map(str::to_string),
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

/// Prints the file `$1`, or exits with [`READ_MISSING`] when there is none
/// in a folder the container's user can search (else 1: the engine, which
/// reads as root, is asked).
const READ_SCRIPT: &str = r#"[ -e "$1" ] && exec cat -- "$1"
[ -L "$1" ] && exit 1
f=${1%/*}/
[ -x "$f" ] && [ -r "$f" ] && exit 66
exit 1"#;
/// Writes files from its standard input, one after the other: each file is
/// an argument pair (path, length in bytes). A new file gets mode 0644, as an
/// upload's (files the router writes and removes: a candidate, a journal);
/// one written over keeps its own. Each must come out whole: `dd` says
/// `1+0 records in` for one whole block read (`0+1` for a short one).
const WRITE_NEW_SCRIPT: &str = r#"umask 022
while [ "$#" -gt 1 ]; do
  if [ "$2" -gt 0 ]; then
    case $(dd bs="$2" count=1 of="$1" 2>&1) in
      "1+0 records in"*) ;;
      *) exit 1 ;;
    esac
  else
    : >"$1" || exit 1
  fi
  shift 2
done"#;
/// The code of [`READ_SCRIPT`] for a file that does not exist.
const READ_MISSING: i32 = 66;

fn not_running(container: &str) -> String {
    format!(
        "container {container} is not running\nhint: start the proxy (docker compose up -d) and run the rollout again"
    )
}

/// A folder and the files (name, bytes) to write in it.
type Folder<'a> = (&'a str, Vec<(&'a str, &'a [u8])>);

/// `files` by folder, in the order each folder first comes; `Err` with the
/// first path that is not an absolute file path.
fn by_folder<'a>(files: &[(&'a str, &'a [u8])]) -> Result<Vec<Folder<'a>>, &'a str> {
    let mut folders: Vec<Folder<'a>> = Vec::new();
    for (path, bytes) in files {
        let (dir, name) = split_path(path).ok_or(*path)?;
        match folders.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, entries)) => entries.push((name, *bytes)),
            None => folders.push((dir, vec![(name, *bytes)])),
        }
    }
    Ok(folders)
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

    async fn exec_as(&self, user: &str, argv: &[String]) -> Result<ExecOutput, ProxyError> {
        // A user is `UID` or `UID:GID` in numbers here: never a name the
        // engine would look up in the container's files, nor anything else
        // pasted into the exec's configuration.
        let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        if !numeric(uid) || !numeric(gid) {
            return Err(ProxyError::Exec {
                proxy: self.container.clone(),
                program: argv.first().cloned().unwrap_or_default(),
                reason: format!("not a numeric user (UID or UID:GID): {user:?}"),
            });
        }
        let shells = self
            .user_shells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user.to_string())
            .or_insert_with(|| Arc::new(KeptShells::as_user(user)))
            .clone();
        self.run_with(&shells, Some(user), argv).await
    }

    async fn addresses_of(&self, host: &str) -> Option<Vec<std::net::IpAddr>> {
        // The upstream names an instance by its container's name; nginx
        // resolved it to the container's address on a network it shares
        // with the proxy. Every address of the container is a superset.
        // A container name only (the engine would also take an id's
        // prefix), and the container found must carry it.
        let name_like = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
        if host.is_empty() || !host.bytes().all(name_like) {
            return None;
        }
        let inspected = self
            .engine
            .docker()
            .inspect_container(host, None)
            .await
            .ok()?;
        if inspected.name.as_deref() != Some(format!("/{host}").as_str()) {
            return None;
        }
        let networks = inspected.network_settings?.networks?;
        let found: Vec<std::net::IpAddr> = crate::addresses::endpoint_ips(networks.values())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        (!found.is_empty()).then_some(found)
    }
}

#[async_trait]
impl ConfigStore for ProxyContainer {
    async fn read(&self, path: &str) -> Result<Vec<u8>, ProxyError> {
        // Through a kept shell when there is one: a fork in the container
        // rather than an archive made by the engine.
        let argv = ["sh", "-c", READ_SCRIPT, "sh", path].map(String::from);
        match self
            .shells
            .run(&self.engine, &self.container, &argv, self.timeout)
            .await
        {
            Ok(out) if out.success() => return Ok(out.stdout),
            Ok(out) if out.code == READ_MISSING => {
                return Err(ProxyError::Missing {
                    proxy: self.container.clone(),
                    path: path.to_string(),
                })
            }
            // No kept shell, or a file the container's user cannot read:
            // the engine reads it as root.
            _ => {}
        }
        // The engine answers 404 for a path that does not exist (and for a
        // container that is gone): the router asks for files that may well
        // not exist and needs to tell that apart from a failed read.
        download(&self.engine, &self.container, path)
            .await?
            .ok_or_else(|| ProxyError::Missing {
                proxy: self.container.clone(),
                path: path.to_string(),
            })
    }

    async fn write_in_place(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        let c = self.running("write").await?;
        self.writers.write(&self.engine, &c, path, bytes).await
    }

    async fn ready(&self, path: &str) -> Result<(), ProxyError> {
        let c = self.running("write").await?;
        self.writers.ready(&self.engine, &c, path).await;
        Ok(())
    }

    async fn settle(&self) -> Result<(), ProxyError> {
        self.close_shells().await;
        self.writers.close(&self.engine).await;
        Ok(())
    }

    async fn write_new(&self, path: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        self.write_new_all(&[(path, bytes)]).await
    }

    /// Through a kept shell when the files together are text that can go
    /// as a command's input ([`as_input`]) and the container's user may
    /// write them; else by upload, one per folder (the candidate and the
    /// journal beside the live file go in one).
    async fn write_new_all(&self, files: &[(&str, &[u8])]) -> Result<(), ProxyError> {
        let Some((first, _)) = files.first() else {
            return Ok(());
        };
        let folders = self.folders(files)?;
        let joined: Vec<u8> = files.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        if let Some(text) = as_input(&joined) {
            let mut argv = ["sh", "-c", WRITE_NEW_SCRIPT, "sh"]
                .map(String::from)
                .to_vec();
            for (path, bytes) in files {
                argv.extend([path.to_string(), bytes.len().to_string()]);
            }
            // A command that did not answer may still write: no upload
            // after it, the caller removes what it left.
            match self.run_fed(&argv, text).await {
                Ok(Some(out)) if out.success() => return Ok(()),
                // Whatever the shell wrote, the upload writes whole.
                Ok(_) => {}
                Err(e) => return Err(self.file_error("write", first, e.to_string())),
            }
        }
        self.upload_folders(folders).await
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

    #[test]
    fn files_upload_one_archive_per_folder_in_first_seen_order() {
        let files: [(&str, &[u8]); 4] = [
            ("/etc/nginx/nginx.conf.next", b"a"),
            ("/x", b"b"),
            ("/etc/nginx/journal", b"c"),
            ("/etc/nginx/conf.d/app.conf", b""),
        ];
        let folders = by_folder(&files).unwrap();
        let shape: Vec<(&str, Vec<&str>)> = folders
            .iter()
            .map(|(d, e)| (*d, e.iter().map(|(n, _)| *n).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                ("/etc/nginx", vec!["nginx.conf.next", "journal"]),
                ("/", vec!["x"]),
                ("/etc/nginx/conf.d", vec!["app.conf"]),
            ]
        );
        assert_eq!(folders[0].1[1].1, b"c");
        assert_eq!(by_folder(&[("/a", b"x"), ("b/c", b"y")]), Err("b/c"));
    }
}
