//! Locks kept with the engine: the per-service lock of a rollout and the
//! lock of one proxy's config, both never-started containers under a fixed
//! name ([`crate::keeper`]).
//!
//! Creating the container is the atomic test-and-set (the engine answers a
//! second create of the name with 409); the holder and the time it was
//! taken are its labels. The holder is written as
//! [`Holder`](rollout_core::journal::Holder) writes it (user, host, pid,
//! the process's start time and the machine's boot id), and a lock is
//! taken over only when its holder is proven dead from here: same host and
//! boot id, and its pid gone or taken by a process started at another time.
//! A lock is removed by its container id, so a lock taken again meanwhile
//! by someone else is left alone: two runs breaking the same dead lock
//! cannot both win.

use crate::engine::{now_rfc3339, status, Engine};
use crate::keeper::{self, Created, KEEPER_IMAGE};
use crate::labels;
use async_trait::async_trait;
use rollout_core::journal::{Holder, Liveness};
use rollout_core::BackendError;
use rollout_nginx::proxy::{LockHolder, ProxyError, ProxyLock};
use std::collections::HashMap;

/// A lock container as it stands: its id, holder and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// The container's id.
    pub id: String,
    /// Who holds it, as written.
    pub holder: String,
    /// Since when (RFC 3339).
    pub since: String,
}

/// Reads the lock container `name`, if there is one.
pub(crate) async fn read(engine: &Engine, name: &str) -> Result<Option<HeldLock>, BackendError> {
    match engine.docker().inspect_container(name, None).await {
        Ok(c) => {
            let l = c.config.and_then(|c| c.labels).unwrap_or_default();
            let label = |key: &str| l.get(key).cloned().unwrap_or_else(|| "unknown".into());
            Ok(Some(HeldLock {
                id: c.id.unwrap_or_else(|| name.to_string()),
                holder: label(labels::HOLDER),
                since: label(labels::SINCE),
            }))
        }
        Err(e) if status(&e) == Some(404) => Ok(None),
        Err(e) => Err(engine.error(e)),
    }
}

/// Removes the lock `name` if `holder` still holds it; says whether it did.
pub(crate) async fn break_lock(
    engine: &Engine,
    name: &str,
    holder: &str,
) -> Result<bool, BackendError> {
    let Some(held) = read(engine, name).await? else {
        return Ok(false);
    };
    if held.holder != holder {
        return Ok(false);
    }
    let options = bollard::query_parameters::RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    match engine
        .docker()
        .remove_container(&held.id, Some(options))
        .await
    {
        Ok(()) => Ok(true),
        Err(e) if status(&e) == Some(404) => Ok(false),
        Err(e) => Err(engine.error(e)),
    }
}

/// Tries once to create the lock `name` for `holder` with `l` (the keeper's
/// labels); a lock whose holder is proven dead from `holder`'s machine is
/// broken and taken. `Ok(None)`: ours; `Ok(Some(held))`: someone else's.
pub(crate) async fn take(
    engine: &Engine,
    name: &str,
    mut l: HashMap<String, String>,
    holder: &str,
) -> Result<Option<HeldLock>, BackendError> {
    l.insert(labels::HOLDER.into(), holder.into());
    l.insert(labels::SINCE.into(), now_rfc3339());
    // Twice at most: once more after breaking the lock of a dead holder.
    let mut broke = false;
    loop {
        match keeper::create(engine, name, KEEPER_IMAGE, l.clone(), vec![]).await? {
            Created::Ours => return Ok(None),
            Created::Taken => {
                let Some(held) = read(engine, name).await? else {
                    // Let go between our create and our look: ask again.
                    if broke {
                        return Ok(Some(HeldLock {
                            id: String::new(),
                            holder: "someone who just let go".into(),
                            since: "now".into(),
                        }));
                    }
                    broke = true;
                    continue;
                };
                if !broke
                    && judge(&held.holder, holder) == Liveness::Dead
                    && break_lock(engine, name, &held.holder).await?
                {
                    broke = true;
                    continue;
                }
                return Ok(Some(held));
            }
        }
    }
}

/// Judges the holder written as `holder` from the machine of `asking` (a
/// holder of this process, which says which host and boot this is). A
/// holder not written as [`Holder`] writes it is never proven anything.
pub fn judge(holder: &str, asking: &str) -> Liveness {
    let (Some(held), Some(here)) = (Holder::parse(holder), Holder::parse(asking)) else {
        return Liveness::Unknown;
    };
    held.liveness(&here, process_start(held.pid))
}

/// When process `pid` of this machine started, in clock ticks after boot
/// (`/proc/PID/stat`, field 22); `None` when there is no such process.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Removes the other locks of `project` whose holder is written `holder`
/// exactly (proxy locks, the lock of a blue-green pair): what a rollout
/// killed leaves besides its service lock, released with it by `docker
/// rollout unlock`. Returns their names.
pub async fn release_locks_of(
    engine: &Engine,
    project: &str,
    holder: &str,
) -> Result<Vec<String>, BackendError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{}={project}", labels::OUR_PROJECT)],
    )]);
    let found = engine.list_containers(filters, true).await?;
    let mut released = Vec::new();
    for c in found {
        let l = c.labels.clone().unwrap_or_default();
        let lock = matches!(
            l.get(labels::KIND).map(String::as_str),
            Some("lock" | "proxylock")
        );
        let mine = lock && l.get(labels::HOLDER).is_some_and(|h| h == holder);
        let (Some(id), true) = (c.id, mine) else {
            continue;
        };
        keeper::remove(engine, &id).await?;
        let name = c
            .names
            .and_then(|n| n.first().cloned())
            .unwrap_or(id)
            .trim_start_matches('/')
            .to_string();
        released.push(name);
    }
    Ok(released)
}

/// The lock of one proxy's config files, kept with the engine: a container
/// `rollout-proxylock.PROJECT.PROXY.HASH`, where HASH stands for the config
/// path as the proxy sees it (FNV-1a, so that any path makes a valid
/// container name); the path itself is a label. Taken and judged as the
/// service lock is.
#[derive(Debug, Clone)]
pub struct DockerProxyLock {
    engine: Engine,
    project: String,
    proxy_service: String,
    extra_labels: HashMap<String, String>,
}

/// The label that names the config path a proxy lock is for.
const PATH_LABEL: &str = "io.rollout.path";

impl DockerProxyLock {
    /// The lock of the configs of `proxy_service` in `project`.
    pub fn new(engine: Engine, project: &str, proxy_service: &str) -> Self {
        Self {
            engine,
            project: project.to_string(),
            proxy_service: proxy_service.to_string(),
            extra_labels: HashMap::new(),
        }
    }

    /// Puts `labels` on the lock container as well (tests label everything
    /// they create).
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Self {
        self.extra_labels = labels;
        self
    }

    /// The lock container's name for `path`.
    pub fn name(&self, path: &str) -> String {
        proxy_lock_name(&self.project, &self.proxy_service, path)
    }

    /// Who holds the lock of `path`, if anyone.
    pub async fn holder(&self, path: &str) -> Result<Option<HeldLock>, BackendError> {
        read(&self.engine, &self.name(path)).await
    }

    fn error(&self, path: &str, e: BackendError) -> ProxyError {
        ProxyError::File {
            proxy: format!("{}/{}", self.project, self.proxy_service),
            action: "lock",
            path: path.to_string(),
            reason: e.to_string(),
        }
    }
}

/// `rollout-proxylock.PROJECT.PROXY.HASH` (see [`DockerProxyLock`]).
pub fn proxy_lock_name(project: &str, proxy_service: &str, path: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("rollout-proxylock.{project}.{proxy_service}.{hash:016x}")
}

#[async_trait]
impl ProxyLock for DockerProxyLock {
    async fn try_lock(&self, path: &str, holder: &str) -> Result<Option<LockHolder>, ProxyError> {
        let mut l = keeper::base_labels(
            "proxylock",
            &self.project,
            &self.proxy_service,
            &self.extra_labels,
        );
        l.insert(PATH_LABEL.into(), path.into());
        let held = take(&self.engine, &self.name(path), l, holder)
            .await
            .map_err(|e| self.error(path, e))?;
        Ok(held.map(|h| LockHolder {
            holder: h.holder,
            since: h.since,
        }))
    }

    async fn unlock(&self, path: &str) -> Result<(), ProxyError> {
        keeper::remove(&self.engine, &self.name(path))
            .await
            .map_err(|e| self.error(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn here() -> Holder {
        Holder {
            user: "bob".into(),
            host: "build-7".into(),
            pid: std::process::id(),
            start: process_start(std::process::id()),
            boot: Some("boot-a".into()),
        }
    }

    #[test]
    fn only_a_holder_proven_gone_here_is_dead() {
        let asking = here().to_string();
        let held = |pid: u32, start: Option<u64>, host: &str, boot: &str| {
            Holder {
                user: "ann".into(),
                host: host.into(),
                pid,
                start,
                boot: Some(boot.into()),
            }
            .to_string()
        };
        // pid_max is at most 2^22 on Linux: this pid cannot exist.
        assert_eq!(
            judge(&held(4_999_999, Some(1), "build-7", "boot-a"), &asking),
            Liveness::Dead
        );
        // This very process, and pid 1 with its own start time: alive.
        let me = process_start(std::process::id());
        assert_eq!(
            judge(&held(std::process::id(), me, "build-7", "boot-a"), &asking),
            Liveness::Alive
        );
        let init = process_start(1);
        assert_eq!(
            judge(&held(1, init, "build-7", "boot-a"), &asking),
            Liveness::Alive
        );
        // pid 1 recorded with another start time: a reused pid, dead.
        let other = init.map(|s| s + 1);
        assert_eq!(
            judge(&held(1, other, "build-7", "boot-a"), &asking),
            Liveness::Dead
        );
        // Another host, another boot, an older record: nothing proven.
        assert_eq!(
            judge(&held(4_999_999, Some(1), "elsewhere", "boot-a"), &asking),
            Liveness::Unknown
        );
        assert_eq!(
            judge(&held(4_999_999, Some(1), "build-7", "boot-b"), &asking),
            Liveness::Unknown
        );
        assert_eq!(judge("ann@build-7 pid 4999999", &asking), Liveness::Unknown);
        assert_eq!(judge("someone who just let go", &asking), Liveness::Unknown);
        // Nor when the one asking does not say where it runs.
        assert_eq!(
            judge(
                &held(4_999_999, Some(1), "build-7", "boot-a"),
                "custom-strategy pid 7"
            ),
            Liveness::Unknown
        );
    }

    #[test]
    fn proxy_lock_names_are_container_names() {
        let a = proxy_lock_name("shop", "nginx", "/etc/nginx/nginx.conf");
        let b = proxy_lock_name("shop", "nginx", "/etc/nginx/conf.d/app.conf");
        assert!(a.starts_with("rollout-proxylock.shop.nginx."), "{a}");
        assert_ne!(a, b);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
    }
}
