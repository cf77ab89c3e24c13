//! Writing a proxy's file in place through the engine's own view of it.
//!
//! The live config is written in the source of the proxy's mount, on the
//! engine's machine, by a container of the proxy's own image (so it is
//! there, and has a shell and `dd`) that mounts that same source
//! read-write: the bytes are put into it, then copied over the file
//! without truncating it first (`dd conv=notrunc`), the length set and the
//! file synced (what a cut write leaves is what recovery calls torn). No
//! path on this machine is ever opened.
//!
//! # One writer per run, not one per write
//!
//! Creating, starting, waiting for and removing a container costs about a
//! third of a second here, on every traffic change. So a run keeps one
//! writer per proxy replica ([`Writers`]): started once (as the run takes
//! its lock, `TrafficRouter::warm`, else while nginx tests the run's first
//! change: `ConfigStore::ready` both), waiting on its
//! standard input, which the run holds attached; each write is one
//! command of the write script through a kept shell in it, with the bytes
//! as the command's input when they are text ([`as_input`]), else after an
//! upload into it (the engine's archive API, about a tenth of a second
//! here). The writer lives as
//! long as the run holds its input: [`Writers::close`] removes it as the
//! run ends (`TrafficRouter::settle`), and a run that ends any other way,
//! killed included, closes the connection, so the writer reads the end of
//! its input and exits, and the next run removes it (`revive`). An image
//! whose writer cannot be kept (it exits at once) gets a short-lived
//! writer per write, as does a write whose kept writer has gone.

use crate::engine::{status, Engine};
use crate::kept_shell::as_input;
use crate::labels;
use crate::proxy::ProxyContainer;
use crate::proxyfiles::{file_error, host_path, PROXY_LABEL, WRITER_KIND};
use crate::tar;
use bollard::container::LogOutput;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, HostConfig, Mount, MountType,
};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, LogsOptions, RemoveContainerOptions,
    UploadToContainerOptions,
};
use futures::{Stream, StreamExt};
use rollout_nginx::proxy::{ExecOutput, ProxyError};
use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::AsyncWrite;

/// Where the writer mounts the file, and where its bytes are uploaded.
const WRITER_LIVE: &str = "/rollout-live";
const WRITER_IN: &str = "rollout-in";

/// The start of a write: the mark of a write under way, gone when it ends.
macro_rules! busy {
    () => {
        ": > /rollout-busy; trap 'rm -f /rollout-busy' EXIT\n"
    };
}

/// The copy of `/rollout-in` over the file and its length set to `$1`.
macro_rules! copy_over {
    () => {
        r#"dd if=/rollout-in of=/rollout-live bs=4096 conv=notrunc 2>/dev/null || { echo "dd over the file failed" >&2; exit 3; }
dd if=/dev/null of=/rollout-live bs=1 seek="$1" 2>/dev/null || { echo "setting the file's length failed" >&2; exit 4; }
sync
"#
    };
}

/// Copies the uploaded bytes over the file in place (never truncated
/// first: an interrupted write leaves the new bytes over the rest of the
/// previous ones, which recovery knows), then sets its length to `$1`.
///
/// `/rollout-busy` marks a write under way, for a kept writer to finish it
/// when the run goes away in the middle of it.
const WRITE_SCRIPT: &str = concat!(busy!(), copy_over!());

/// [`WRITE_SCRIPT`] for bytes that come as its standard input rather than
/// as an upload ([`as_input`]): they go to `/rollout-in` first, inside the
/// mark of a write under way; exit 5 when they could not be put there whole
/// (the file untouched: the bytes are uploaded then).
const WRITE_FED_SCRIPT: &str = concat!(
    busy!(),
    r#"cat >/rollout-in || exit 5
n=$(wc -c </rollout-in) || exit 5
[ "$((n))" -eq "$1" ] || exit 5
"#,
    copy_over!()
);

/// The exit code of [`WRITE_FED_SCRIPT`] when the bytes did not reach the
/// writer whole.
const FED_SHORT: i32 = 5;

/// What a kept writer runs: it waits for the end of its standard input,
/// then for a write under way to finish (at most 10 s), as a short-lived
/// writer would finish it: a run killed in the middle of a write does not
/// cut the write.
const KEEP_SCRIPT: &str = "read -r _ || true; i=0; while [ -e /rollout-busy ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done";

/// The exit codes of the write script's own failures (anything else is the
/// writer failing to run it).
const SCRIPT_FAILED: [i32; 2] = [3, 4];

/// The file to write: which proxy, the source on the engine's machine, and
/// what a writer is made of.
struct Target {
    proxy: String,
    path: String,
    source: PathBuf,
    image: String,
    project: String,
}

impl Target {
    fn of(c: &ContainerInspectResponse, path: &str) -> Result<Self, ProxyError> {
        let proxy = c
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string();
        let error = |reason: String| file_error(&proxy, "write", path, reason);
        let mounts = c.mounts.clone().unwrap_or_default();
        let source = host_path(&mounts, path).ok_or_else(|| {
            error("it is not on a mount, so a change would be lost when the container is recreated\nhint: bind-mount the config from the project, as in ./nginx.conf:/etc/nginx/nginx.conf:ro".into())
        })?;
        let image = c
            .image
            .clone()
            .ok_or_else(|| error("the engine names no image for the proxy".into()))?;
        let project = c
            .config
            .as_ref()
            .and_then(|cfg| cfg.labels.as_ref())
            .and_then(|l| l.get(labels::PROJECT))
            .cloned()
            .unwrap_or_default();
        Ok(Self {
            proxy,
            path: path.to_string(),
            source,
            image,
            project,
        })
    }

    fn error(&self, reason: String) -> ProxyError {
        file_error(&self.proxy, "write", &self.path, reason)
    }

    /// A writer container running `script` (`$1` is `arg`), root, no
    /// network, the file's source mounted read-write; `keep` opens its
    /// standard input for a kept writer.
    fn body(&self, script: &str, arg: String, keep: bool) -> ContainerCreateBody {
        let l = HashMap::from([
            (labels::KIND.to_string(), WRITER_KIND.to_string()),
            (labels::OUR_PROJECT.to_string(), self.project.clone()),
            (PROXY_LABEL.to_string(), self.proxy.clone()),
            // Blank values override labels the image may carry (Compose 2
            // labels the images it builds), so the writer is no replica.
            (labels::PROJECT.to_string(), String::new()),
            (labels::SERVICE.to_string(), String::new()),
        ]);
        ContainerCreateBody {
            image: Some(self.image.clone()),
            entrypoint: Some(vec!["sh".into(), "-c".into(), script.into()]),
            cmd: Some(vec!["sh".into(), arg]),
            user: Some("0:0".into()),
            labels: Some(l),
            network_disabled: Some(true),
            open_stdin: Some(keep),
            stdin_once: Some(keep),
            attach_stdin: Some(keep),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                mounts: Some(vec![Mount {
                    target: Some(WRITER_LIVE.into()),
                    source: Some(self.source.to_string_lossy().into_owned()),
                    typ: Some(MountType::BIND),
                    read_only: Some(false),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn upload(&self, engine: &Engine, id: &str, bytes: &[u8]) -> Result<(), ProxyError> {
        let archive = tar::single_file(WRITER_IN, bytes, 0o644).map_err(|e| self.error(e))?;
        let options = UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        engine
            .docker()
            .upload_to_container(id, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(|e| self.error(format!("uploading to the writer: {}", engine.error(e))))
    }

    fn failed(&self, code: i64, said: &str) -> ProxyError {
        self.error(format!(
            "writing its source {} on the engine's machine failed (exit {code}): {said}",
            self.source.display()
        ))
    }
}

/// A writer kept running for a run's writes of one file.
struct Kept {
    id: String,
    source: PathBuf,
    /// The attached standard input and output: held (never used) for as
    /// long as the writer is to live; behind a mutex to be shared.
    _attached: std::sync::Mutex<Attached>,
    /// Runs the write script in it, through a kept shell of its own.
    runner: ProxyContainer,
}

type Attached = (
    Pin<Box<dyn AsyncWrite + Send>>,
    Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
);

/// The writer a proxy replica's writes share within a run (see the
/// [module documentation](self)).
#[derive(Default)]
pub(crate) struct Writers {
    kept: tokio::sync::Mutex<Option<Kept>>,
    /// This replica's image cannot keep a writer: short-lived ones only.
    short_only: AtomicBool,
}

impl std::fmt::Debug for Writers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writers")
            .field("short_only", &self.short_only.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Writers {
    /// Starts the kept writer for the file `path` of the container `c` (as
    /// inspected) unless it runs: the first write then finds it ready. One
    /// that cannot be kept leaves short-lived writers, as a write does.
    pub(crate) async fn ready(&self, engine: &Engine, c: &ContainerInspectResponse, path: &str) {
        let Ok(target) = Target::of(c, path) else {
            return;
        };
        if self.short_only.load(Ordering::SeqCst) {
            return;
        }
        let mut kept = self.kept.lock().await;
        if let Some(other) = kept.take_if(|k| k.source != target.source) {
            remove(engine, &other.id).await;
        }
        if kept.is_none() {
            match start_kept(engine, &target).await {
                Ok(k) => *kept = Some(k),
                Err(_) => self.short_only.store(true, Ordering::SeqCst),
            }
        }
    }

    /// Writes `bytes` in place into the file `path` of the container `c`
    /// (as inspected): through the kept writer, started with the first
    /// write (or by [`Writers::ready`]), else through a short-lived one.
    pub(crate) async fn write(
        &self,
        engine: &Engine,
        c: &ContainerInspectResponse,
        path: &str,
        bytes: &[u8],
    ) -> Result<(), ProxyError> {
        let target = Target::of(c, path)?;
        self.ready(engine, c, path).await;
        if self.short_only.load(Ordering::SeqCst) {
            return write_once(engine, &target, bytes).await;
        }
        let mut kept = self.kept.lock().await;
        let Some(k) = kept.as_ref().filter(|k| k.source == target.source) else {
            return write_once(engine, &target, bytes).await;
        };
        match write_kept(engine, &target, k, bytes).await {
            Ok(Ok(())) => Ok(()),
            // The script ran and failed: what a short-lived writer would say.
            Ok(Err(e)) => Err(e),
            // The writer is gone or cannot run a command: once it is surely
            // gone (a write of its may still be under way otherwise), a
            // short-lived one writes the whole file again.
            Err(e) => {
                if let Some(k) = kept.take() {
                    if !remove(engine, &k.id).await {
                        return Err(e);
                    }
                }
                write_once(engine, &target, bytes).await
            }
        }
    }

    /// Removes the kept writer, if any (the run ends).
    pub(crate) async fn close(&self, engine: &Engine) {
        if let Some(k) = self.kept.lock().await.take() {
            k.runner.close_shells().await;
            remove(engine, &k.id).await;
        }
    }
}

/// Creates, attaches to and starts a kept writer; it must still run once
/// started (an image whose shell cannot wait on its input is refused).
async fn start_kept(engine: &Engine, target: &Target) -> Result<Kept, ProxyError> {
    let docker = engine.docker();
    let created = docker
        .create_container(
            None::<CreateContainerOptions>,
            target.body(KEEP_SCRIPT, String::new(), true),
        )
        .await
        .map_err(|e| target.error(format!("creating the writer: {}", engine.error(e))))?;
    let id = created.id;
    let started = async {
        let options = AttachContainerOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            stream: true,
            ..Default::default()
        };
        let attached = docker
            .attach_container(&id, Some(options))
            .await
            .map_err(|e| target.error(format!("attaching to the writer: {}", engine.error(e))))?;
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| target.error(format!("starting the writer: {}", engine.error(e))))?;
        let c = docker
            .inspect_container(&id, None)
            .await
            .map_err(|e| target.error(engine.error(e).to_string()))?;
        if !c.state.and_then(|s| s.running).unwrap_or(false) {
            return Err(target.error("the writer did not keep running".into()));
        }
        Ok(Kept {
            id: id.clone(),
            source: target.source.clone(),
            _attached: std::sync::Mutex::new((attached.input, attached.output)),
            runner: ProxyContainer::new(engine.clone(), id.clone()),
        })
    };
    let kept = started.await;
    if kept.is_err() {
        remove(engine, &id).await;
    }
    kept
}

/// One write through a kept writer: `Err` when the writer could not run
/// the script, `Ok(Err)` when the script failed.
async fn write_kept(
    engine: &Engine,
    target: &Target,
    k: &Kept,
    bytes: &[u8],
) -> Result<Result<(), ProxyError>, ProxyError> {
    // Text bytes go as the command's input, through the kept shell: no
    // upload through the engine.
    if let Some(text) = as_input(bytes) {
        let argv = ["sh", "-c", WRITE_FED_SCRIPT, "sh"]
            .map(String::from)
            .into_iter()
            .chain([bytes.len().to_string()])
            .collect::<Vec<_>>();
        match k.runner.run_fed(&argv, text).await? {
            Some(out) if out.code == FED_SHORT => {}
            Some(out) => return judged(target, &out),
            None => {}
        }
    }
    target.upload(engine, &k.id, bytes).await?;
    let argv: Vec<String> = ["sh", "-c", WRITE_SCRIPT, "sh"]
        .map(String::from)
        .into_iter()
        .chain([bytes.len().to_string()])
        .collect();
    let out = k.runner.run(&argv).await?;
    judged(target, &out)
}

/// What a write script's end says: `Err` when the writer did not run it,
/// `Ok(Err)` when it failed.
fn judged(target: &Target, out: &ExecOutput) -> Result<Result<(), ProxyError>, ProxyError> {
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    match out.code {
        0 => Ok(Ok(())),
        code if SCRIPT_FAILED.contains(&code) => Ok(Err(target.failed(code.into(), &said))),
        code => Err(target.error(format!(
            "the kept writer did not run the write (exit {code}): {said}"
        ))),
    }
}

/// Writes `bytes` in place into the file `path` of the container `c` (as
/// inspected; it may be stopped) through a short-lived writer: a one-off
/// write outside a run's [`Writers`] (a stopped proxy's repair).
pub(crate) async fn write_through_engine(
    engine: &Engine,
    c: &ContainerInspectResponse,
    path: &str,
    bytes: &[u8],
) -> Result<(), ProxyError> {
    write_once(engine, &Target::of(c, path)?, bytes).await
}

/// One write through a short-lived writer: created, given the bytes,
/// started, waited for and removed.
async fn write_once(engine: &Engine, target: &Target, bytes: &[u8]) -> Result<(), ProxyError> {
    let docker = engine.docker();
    let created = docker
        .create_container(
            None::<CreateContainerOptions>,
            target.body(WRITE_SCRIPT, bytes.len().to_string(), false),
        )
        .await
        .map_err(|e| target.error(format!("creating the writer: {}", engine.error(e))))?;
    let id = created.id;
    let written = async {
        target.upload(engine, &id, bytes).await?;
        docker
            .start_container(&id, None)
            .await
            .map_err(|e| target.error(format!("starting the writer: {}", engine.error(e))))?;
        let mut waited = docker.wait_container(&id, None);
        let code = match waited.next().await {
            Some(Ok(r)) => r.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => {
                return Err(target.error(format!("waiting for the writer: {}", engine.error(e))))
            }
            None => return Err(target.error("the engine did not say how the writer ended".into())),
        };
        if code != 0 {
            return Err(target.failed(code, &logs(engine, &id).await));
        }
        Ok(())
    };
    let result = written.await;
    remove(engine, &id).await;
    result
}

/// Removes a writer, running or not; says whether it is gone. One that
/// cannot be removed now is removed by the next run once it has exited.
async fn remove(engine: &Engine, id: &str) -> bool {
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match engine.docker().remove_container(id, Some(options)).await {
        Ok(()) => true,
        Err(e) => status(&e) == Some(404),
    }
}

async fn logs(engine: &Engine, id: &str) -> String {
    let options = LogsOptions {
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut stream = engine.docker().logs(id, Some(options));
    while let Some(Ok(chunk)) = stream.next().await {
        out.extend_from_slice(&chunk.into_bytes());
    }
    String::from_utf8_lossy(&out).trim().to_string()
}
