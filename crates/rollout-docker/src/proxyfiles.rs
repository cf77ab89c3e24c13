//! The proxy's config files as the engine sees them, and the journal of
//! their commits kept with the engine.
//!
//! - **Writes go through the engine's own view of the file** (see
//!   [`crate::writer`]): a container of the proxy's own image mounts the
//!   source of the proxy's mount on the engine's machine and writes the
//!   bytes over it in place. No path on this machine is ever opened, so a
//!   remote engine (`DOCKER_HOST=tcp://...`, `ssh://`, a context) writes
//!   its own file, and a different file at the same path here is never
//!   touched. The seed's `:ro` mount does not matter: the writer mounts the
//!   source itself.
//! - **A commit's journal is kept with the engine** ([`EngineJournal`]), as
//!   the locks and the rollout journal are: a never-started container per
//!   commit, `rollout-proxyjournal.CONTAINER.HASH.TAG`, holding the previous
//!   and the new bytes, their lengths and hashes in labels. Text of up to
//!   [`TEXT_IN_LABELS`] bytes each is kept in labels too, so that the record
//!   is one create; other bytes go in two files uploaded after it (a journal
//!   cut while it was uploaded is never taken for a whole one). A
//!   proxy that is recreated keeps it, and a proxy that cannot start because
//!   its file was torn is repaired by [`revive`] before it is started.

use crate::engine::{status, Engine};
use crate::keeper::{self, Created, KEEPER_IMAGE};
use crate::labels;
use crate::tar;
use async_trait::async_trait;
use bollard::models::{ContainerSummaryStateEnum, MountPoint};
use bollard::query_parameters::{
    DownloadFromContainerOptions, RenameContainerOptions, UploadToContainerOptions,
};
use futures::StreamExt;
use rollout_core::error::RouterError;
use rollout_core::{BackendError, ServiceRef};
use rollout_nginx::proxy::{JournalStore, KeptCommit, ProxyError};
use rollout_nginx::router::ProxyLocking;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The kind label of a commit's journal kept with the engine.
pub const JOURNAL_KIND: &str = "proxyjournal";
/// The kind label of the short-lived container that writes a proxy's file.
pub const WRITER_KIND: &str = "proxywrite";
const JOURNAL_PREFIX: &str = "rollout-proxyjournal.";
const ASIDE_PREFIX: &str = "rollout-proxyjournal-aside.";
/// Ours: the proxy container a journal is about.
pub(crate) const PROXY_LABEL: &str = "io.rollout.proxy";
/// Ours: the config path (as the proxy sees it) a journal is about.
const PATH_LABEL: &str = "io.rollout.path";
/// Ours: the tag of the run that saved a journal.
const TAG_LABEL: &str = "io.rollout.tag";
/// Ours: the length and FNV-1a hash of a journal's files (`LEN:HASH`).
const PREVIOUS_LABEL: &str = "io.rollout.previous";
const NEXT_LABEL: &str = "io.rollout.next";
/// Ours: a journal's previous and new bytes themselves, when both are text
/// of at most [`TEXT_IN_LABELS`] bytes.
const PREVIOUS_TEXT_LABEL: &str = "io.rollout.previous.text";
const NEXT_TEXT_LABEL: &str = "io.rollout.next.text";
/// The longest text a journal keeps in a label rather than in a file.
pub const TEXT_IN_LABELS: usize = 64 * 1024;

/// `bytes` as a label's value: UTF-8 text without NUL, of at most
/// [`TEXT_IN_LABELS`] bytes.
fn label_text(bytes: &[u8]) -> Option<&str> {
    if bytes.len() > TEXT_IN_LABELS || bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

/// A journal container of a path, as listed.
struct Record {
    name: String,
    tag: String,
    previous_seal: String,
    next_seal: String,
    /// The previous and new bytes, when they are in its labels.
    texts: Option<(String, String)>,
}

/// FNV-1a of `bytes`, as hex.
pub(crate) fn fnv(bytes: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn seal(bytes: &[u8]) -> String {
    format!("{}:{}", bytes.len(), fnv(bytes))
}

/// The source, on the engine's machine, of the file `path` in a container
/// with `mounts`: the source of the mount whose destination is `path` or
/// one of its folders.
pub(crate) fn host_path(mounts: &[MountPoint], path: &str) -> Option<PathBuf> {
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

pub(crate) fn file_error(
    proxy: &str,
    action: &'static str,
    path: &str,
    reason: String,
) -> ProxyError {
    ProxyError::File {
        proxy: proxy.to_string(),
        action,
        path: path.to_string(),
        reason,
    }
}

/// The bytes of `path` in container `container` (running or not), through
/// the engine's archive endpoint; `Ok(None)` when there is no such file.
pub(crate) async fn download(
    engine: &Engine,
    container: &str,
    path: &str,
) -> Result<Option<Vec<u8>>, ProxyError> {
    let options = DownloadFromContainerOptions {
        path: path.to_string(),
    };
    let mut archive = Vec::new();
    let mut stream = engine
        .docker()
        .download_from_container(container, Some(options));
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => archive.extend_from_slice(&chunk),
            Err(e) if status(&e) == Some(404) => return Ok(None),
            Err(e) => {
                return Err(file_error(
                    container,
                    "read",
                    path,
                    engine.error(e).to_string(),
                ))
            }
        }
    }
    tar::first_file(&archive)
        .map(Some)
        .map_err(|e| file_error(container, "read", path, e))
}

/// The journal of one proxy container's commits, kept with the engine (see
/// the [module documentation](self)).
#[derive(Debug, Clone)]
pub struct EngineJournal {
    engine: Engine,
    container: String,
    project: String,
    proxy_service: String,
    extra_labels: HashMap<String, String>,
}

impl EngineJournal {
    /// The journal of `container`, a replica of the proxy service `service`.
    pub fn new(engine: Engine, service: &ServiceRef, container: impl Into<String>) -> Self {
        Self {
            engine,
            container: container.into(),
            project: service.project.clone(),
            proxy_service: service.service.clone(),
            extra_labels: HashMap::new(),
        }
    }

    /// Puts `labels` on every journal container as well.
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Self {
        self.extra_labels = labels;
        self
    }

    fn name(&self, path: &str, tag: &str) -> String {
        format!(
            "{JOURNAL_PREFIX}{}.{}.{tag}",
            self.container,
            &fnv(path.as_bytes())[..12]
        )
    }

    fn error(&self, action: &'static str, path: &str, e: impl std::fmt::Display) -> ProxyError {
        file_error(
            &self.container,
            action,
            path,
            format!("its journal kept with the engine: {e}"),
        )
    }

    /// The journal containers of `path`, by tag.
    async fn records(&self, path: &str) -> Result<Vec<Record>, ProxyError> {
        let found = keeper::list(
            &self.engine,
            JOURNAL_KIND,
            &self.project,
            &self.proxy_service,
        )
        .await
        .map_err(|e| self.error("read", path, e))?;
        let mut records: Vec<_> = found
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.first()?.trim_start_matches('/').to_string();
                let l = c.labels?;
                if !name.starts_with(JOURNAL_PREFIX)
                    || l.get(PROXY_LABEL)? != &self.container
                    || l.get(PATH_LABEL)? != path
                {
                    return None;
                }
                let texts = l
                    .get(PREVIOUS_TEXT_LABEL)
                    .cloned()
                    .zip(l.get(NEXT_TEXT_LABEL).cloned());
                Some(Record {
                    name,
                    tag: l.get(TAG_LABEL)?.clone(),
                    previous_seal: l.get(PREVIOUS_LABEL)?.clone(),
                    next_seal: l.get(NEXT_LABEL)?.clone(),
                    texts,
                })
            })
            .collect();
        records.sort_by(|a, b| a.tag.cmp(&b.tag));
        Ok(records)
    }
}

#[async_trait]
impl JournalStore for EngineJournal {
    async fn save(
        &self,
        path: &str,
        tag: &str,
        previous: &[u8],
        next: &[u8],
    ) -> Result<(), ProxyError> {
        let mut extra = self.extra_labels.clone();
        extra.insert(PROXY_LABEL.into(), self.container.clone());
        extra.insert(PATH_LABEL.into(), path.into());
        extra.insert(TAG_LABEL.into(), tag.into());
        extra.insert(PREVIOUS_LABEL.into(), seal(previous));
        extra.insert(NEXT_LABEL.into(), seal(next));
        let texts = label_text(previous).zip(label_text(next));
        if let Some((previous, next)) = texts {
            extra.insert(PREVIOUS_TEXT_LABEL.into(), previous.into());
            extra.insert(NEXT_TEXT_LABEL.into(), next.into());
        }
        let l = keeper::base_labels(JOURNAL_KIND, &self.project, &self.proxy_service, &extra);
        let name = self.name(path, tag);
        match keeper::create(&self.engine, &name, KEEPER_IMAGE, l, Vec::new())
            .await
            .map_err(|e| self.error("write", path, e))?
        {
            Created::Ours => {}
            Created::Taken => {
                return Err(self.error("write", path, format!("{name} exists already")))
            }
        }
        if texts.is_some() {
            return Ok(());
        }
        let archive = tar::files(&[("previous", previous), ("next", next)], 0o644)
            .map_err(|e| self.error("write", path, e))?;
        let options = UploadToContainerOptions {
            path: "/".into(),
            ..Default::default()
        };
        let uploaded = self
            .engine
            .docker()
            .upload_to_container(&name, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(|e| self.error("write", path, self.engine.error(e)));
        // A record that did not get its bytes would stand in the way of the
        // run's next save under the same tag: it goes, when it can.
        if uploaded.is_err() {
            let _ = keeper::remove(&self.engine, &name).await;
        }
        uploaded
    }

    async fn list(&self, path: &str) -> Result<Vec<KeptCommit>, ProxyError> {
        let mut kept = Vec::new();
        for record in self.records(path).await? {
            let name = &record.name;
            let (previous, next) = match record.texts {
                Some((previous, next)) => (Some(previous.into_bytes()), Some(next.into_bytes())),
                None => (
                    download(&self.engine, name, "/previous").await?,
                    download(&self.engine, name, "/next").await?,
                ),
            };
            match (previous, next) {
                (Some(previous), Some(next))
                    if seal(&previous) == record.previous_seal
                        && seal(&next) == record.next_seal =>
                {
                    kept.push(KeptCommit {
                        tag: record.tag,
                        previous,
                        next,
                    })
                }
                // Cut while it was saved: its commit never wrote the live
                // file (the save ends before the write begins).
                _ => keeper::remove(&self.engine, name)
                    .await
                    .map_err(|e| self.error("remove", path, e))?,
            }
        }
        Ok(kept)
    }

    async fn remove(&self, path: &str, tag: &str) -> Result<(), ProxyError> {
        keeper::remove(&self.engine, &self.name(path, tag))
            .await
            .map_err(|e| self.error("remove", path, e))
    }

    async fn set_aside(&self, path: &str, tag: &str, stamp: u64) -> Result<(), ProxyError> {
        let name = self.name(path, tag);
        let aside = format!("{ASIDE_PREFIX}{}.{stamp}", &name[JOURNAL_PREFIX.len()..]);
        self.engine
            .docker()
            .rename_container(&name, RenameContainerOptions { name: aside })
            .await
            .map_err(|e| self.error("write", path, self.engine.error(e)))
    }
}

/// Before the proxy replicas are looked for: each container of the proxy
/// service that is not running and has a journal of `path` kept with the
/// engine (a run was killed during a commit) gets a torn file repaired from
/// that journal, and is started. A stopped proxy without a journal is left
/// as it is. The repair is made under the proxy lock of `locking` (as every
/// change of the proxy's config is), taken only when there is one to make,
/// and what needs repair is looked for again once it is held: another run
/// may have made it meanwhile. Returns what was done, in words for the
/// operator.
pub async fn revive(
    engine: &Engine,
    service: &ServiceRef,
    path: &str,
    locking: Option<&ProxyLocking>,
) -> Result<Vec<String>, BackendError> {
    remove_dead_writers(engine, &service.project).await?;
    if stopped_with_journal(engine, service, path)
        .await?
        .is_empty()
    {
        return Ok(Vec::new());
    }
    let Some(locking) = locking else {
        return revive_held(engine, service, path).await;
    };
    locking.take(path).await.map_err(|e| match e {
        RouterError::Unreachable(reason) => BackendError::Unreachable {
            endpoint: engine.endpoint().to_string(),
            reason,
        },
        // Waited for another holder in vain: its words and hint.
        other => BackendError::Other(other.to_string()),
    })?;
    let revived = revive_held(engine, service, path).await;
    locking.give_back(path).await;
    revived
}

/// The stopped replicas of the proxy `service` (by name) that have a
/// journal of `path` kept with the engine, each with it.
async fn stopped_with_journal(
    engine: &Engine,
    service: &ServiceRef,
    path: &str,
) -> Result<Vec<(String, Vec<KeptCommit>)>, BackendError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![
            format!("{}={}", labels::PROJECT, service.project),
            format!("{}={}", labels::SERVICE, service.service),
        ],
    )]);
    let found = engine.list_containers(filters, true).await?;
    let other = |e: ProxyError| BackendError::Other(e.to_string());
    let mut out = Vec::new();
    for c in found {
        // Only a container that stopped (or was never started) is revived;
        // a one-off `run` container is no replica.
        let stopped = matches!(
            c.state,
            Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::CREATED)
        );
        let oneoff = c
            .labels
            .as_ref()
            .and_then(|l| l.get(labels::ONEOFF))
            .is_some_and(|v| v == "True");
        if !stopped || oneoff {
            continue;
        }
        let Some(name) = c
            .names
            .as_ref()
            .and_then(|n| n.first())
            .map(|n| n.trim_start_matches('/').to_string())
        else {
            continue;
        };
        let journal = EngineJournal::new(engine.clone(), service, &name);
        let kept = journal.list(path).await.map_err(other)?;
        if !kept.is_empty() {
            out.push((name, kept));
        }
    }
    Ok(out)
}

/// [`revive`]'s repair, with the proxy lock held.
async fn revive_held(
    engine: &Engine,
    service: &ServiceRef,
    path: &str,
) -> Result<Vec<String>, BackendError> {
    let other = |e: ProxyError| BackendError::Other(e.to_string());
    let mut notes = Vec::new();
    for (name, kept) in stopped_with_journal(engine, service, path).await? {
        let inspected = engine
            .docker()
            .inspect_container(&name, None)
            .await
            .map_err(|e| engine.error(e))?;
        for commit in &kept {
            let Some(live) = download(engine, &name, path).await.map_err(other)? else {
                continue;
            };
            if live != commit.previous
                && live != commit.next
                && rollout_nginx::router::torn(&live, &commit.previous, &commit.next)
            {
                crate::writer::write_through_engine(engine, &inspected, path, &commit.previous)
                    .await
                    .map_err(other)?;
                notes.push(format!(
                    "{name}: {path} was cut by an interrupted write while the proxy was stopped; its previous bytes were put back"
                ));
            }
        }
        engine
            .docker()
            .start_container(&name, None)
            .await
            .map_err(|e| engine.error(e))?;
        notes.push(format!(
            "{name}: the proxy was not running after an interrupted rollout; it was started"
        ));
    }
    Ok(notes)
}

/// Removes the writers of `project` that a killed run left (a run removes
/// its own as it ends; a killed run's exits once the run is gone; a writer
/// that runs still is left).
async fn remove_dead_writers(engine: &Engine, project: &str) -> Result<(), BackendError> {
    remove_ended_writers(engine, format!("{}={project}", labels::OUR_PROJECT)).await
}

/// Removes the writers of the proxy container `proxy` that a killed run
/// left, as [`revive`] does for a project's (a Swarm task of nginx has no
/// Compose project).
pub async fn remove_dead_writers_of(engine: &Engine, proxy: &str) -> Result<(), BackendError> {
    remove_ended_writers(engine, format!("{PROXY_LABEL}={proxy}")).await
}

/// Removes the ended writers that also carry the label `also` (`KEY=VALUE`).
async fn remove_ended_writers(engine: &Engine, also: String) -> Result<(), BackendError> {
    let filters = HashMap::from([
        (
            "label".to_string(),
            vec![format!("{}={WRITER_KIND}", labels::KIND), also],
        ),
        (
            "status".to_string(),
            vec!["exited".to_string(), "created".to_string()],
        ),
    ]);
    let found = engine.list_containers(filters, true).await?;
    for c in found {
        if let Some(id) = c.id {
            keeper::remove(engine, &id).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_text_without_nul_is_kept_in_labels() {
        assert_eq!(label_text(b"events {}\n"), Some("events {}\n"));
        assert_eq!(label_text(b""), Some(""));
        assert_eq!(label_text(b"a\0b"), None);
        assert_eq!(label_text(&[0xff, 0xfe]), None);
        assert!(label_text(&vec![b'x'; TEXT_IN_LABELS]).is_some());
        assert_eq!(label_text(&vec![b'x'; TEXT_IN_LABELS + 1]), None);
    }

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
    fn a_seal_tells_a_cut_journal_from_a_whole_one() {
        assert_eq!(seal(b"abc"), seal(b"abc"));
        assert_ne!(seal(b"abc"), seal(b"ab"));
        assert!(seal(b"").starts_with("0:"));
    }
}
