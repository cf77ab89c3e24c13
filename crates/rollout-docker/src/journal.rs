//! The rollout journal and the per-service lock, kept with the engine.
//!
//! Both are never-started containers ([`crate::keeper`]), so any client of
//! the engine sees them, a crashed client leaves them behind for the next
//! run, and nothing is stored on the operator's machine.
//!
//! - The lock is a container named `rollout-lock.PROJECT.SERVICE`. Creating
//!   it is the atomic test-and-set: the engine refuses a second container of
//!   that name with 409, and the holder and the time it was taken are read
//!   back from its labels.
//! - A record is a container `rollout-journal.PROJECT.SERVICE.GEN` whose
//!   labels hold the JSON record. Labels cannot change, so each save creates
//!   the next generation and then removes the older ones (in the background,
//!   awaited by the next save): a crash between the two leaves both, and the
//!   newest generation wins at load. A record is never half-written: a
//!   container exists with all its labels or not at all.

use crate::engine::{now_rfc3339, Engine};
use crate::keeper::{self, Created, KEEPER_IMAGE};
use crate::labels;
use async_trait::async_trait;
use rollout_core::journal::{Journal, JournalRecord};
use rollout_core::{BackendError, JournalError, ServiceRef};
use std::collections::HashMap;
use std::sync::Arc;

const LOCK: &str = "lock";
const RECORD: &str = "journal";

/// A [`Journal`] stored in the engine.
#[derive(Debug, Clone)]
pub struct DockerJournal {
    engine: Engine,
    extra_labels: HashMap<String, String>,
    /// Saves of one process, one at a time: parallel workers of a strategy
    /// save concurrently, and each save picks the next generation.
    writing: Arc<tokio::sync::Mutex<()>>,
    /// What this process knows without asking the engine again: the keeper
    /// image is there, and the generation it wrote last per service (only
    /// the lock holder writes, so nobody else adds one meanwhile).
    known: Arc<std::sync::Mutex<Known>>,
}

#[derive(Debug, Default)]
struct Known {
    image: bool,
    /// Service -> (generation, container name) of the last save.
    last: HashMap<String, (u64, String)>,
    /// The removal of the generations a save replaced, still running: the
    /// next save or clear waits for it. A generation left behind (the
    /// process ended first) is harmless: the newest wins at load, and the
    /// next run's first save removes it.
    removing: Option<tokio::task::JoinHandle<()>>,
}

impl DockerJournal {
    /// A journal kept in `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            extra_labels: HashMap::new(),
            writing: Arc::new(tokio::sync::Mutex::new(())),
            known: Arc::new(std::sync::Mutex::new(Known::default())),
        }
    }

    /// Puts `labels` on every container the journal creates as well (tests
    /// label everything they create, to clean up by label).
    pub fn with_labels(mut self, labels: HashMap<String, String>) -> Self {
        self.extra_labels = labels;
        self
    }

    /// Who holds the lock of `service` and since when, if anyone: for a
    /// caller that decides whether a holder died (its pid gone on its host)
    /// before calling [`DockerJournal::break_lock`].
    pub async fn holder(
        &self,
        service: &ServiceRef,
    ) -> Result<Option<(String, String)>, JournalError> {
        Ok(self.lock_container(service).await?.map(|(_, h, s)| (h, s)))
    }

    /// Removes the lock of `service` if `holder` still holds it (a holder
    /// known to be dead), and says whether it did. The lock is removed by
    /// its container id, so a lock taken again meanwhile by someone else is
    /// left alone: two runs breaking the same dead lock cannot both win.
    pub async fn break_lock(
        &self,
        service: &ServiceRef,
        holder: &str,
    ) -> Result<bool, JournalError> {
        let Some((id, current, _)) = self.lock_container(service).await? else {
            return Ok(false);
        };
        if current != holder {
            return Ok(false);
        }
        let options = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        match self
            .engine
            .docker()
            .remove_container(&id, Some(options))
            .await
        {
            Ok(()) => Ok(true),
            Err(e) if crate::engine::status(&e) == Some(404) => Ok(false),
            Err(e) => Err(storage(&service.to_string(), self.engine.error(e))),
        }
    }

    async fn lock_container(
        &self,
        service: &ServiceRef,
    ) -> Result<Option<(String, String, String)>, JournalError> {
        let name = lock_name(service);
        match self.engine.docker().inspect_container(&name, None).await {
            Ok(c) => {
                let l = c.config.and_then(|c| c.labels).unwrap_or_default();
                Ok(Some((
                    c.id.unwrap_or(name),
                    l.get(labels::HOLDER)
                        .cloned()
                        .unwrap_or_else(|| "unknown".into()),
                    l.get(labels::SINCE)
                        .cloned()
                        .unwrap_or_else(|| "unknown".into()),
                )))
            }
            Err(e) if crate::engine::status(&e) == Some(404) => Ok(None),
            Err(e) => Err(storage(&service.to_string(), self.engine.error(e))),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the generations replaced by the last save are removed
    /// (saves remove them in the background), for a caller that needs the
    /// engine to hold only the newest one.
    pub async fn flush(&self) {
        let _one = self.writing.lock().await;
        self.removed().await;
    }

    /// Waits for the removal of replaced generations, if one is running.
    async fn removed(&self) {
        let removing = self.known().removing.take();
        if let Some(removing) = removing {
            let _ = removing.await;
        }
    }

    /// Makes sure the keeper image is there, once per process.
    async fn image(&self, who: &str) -> Result<(), JournalError> {
        if self.known().image {
            return Ok(());
        }
        keeper::ensure_image(&self.engine)
            .await
            .map_err(|e| storage(who, e))?;
        self.known().image = true;
        Ok(())
    }

    async fn generations(
        &self,
        service: &ServiceRef,
    ) -> Result<Vec<(u64, String, Option<String>)>, JournalError> {
        let found = keeper::list(&self.engine, RECORD, &service.project, &service.service)
            .await
            .map_err(|e| storage(&service.to_string(), e))?;
        let mut gens: Vec<(u64, String, Option<String>)> = found
            .into_iter()
            .filter_map(|c| {
                let l = c.labels.unwrap_or_default();
                let gen = l.get(labels::GENERATION)?.parse().ok()?;
                Some((gen, c.id?, l.get(labels::RECORD).cloned()))
            })
            .collect();
        gens.sort_by_key(|g| std::cmp::Reverse(g.0));
        Ok(gens)
    }
}

/// Whether `holder` (`USER@HOST pid N`, as `rollout_strategies::lock_holder`
/// writes it) is a process that no longer exists on the machine of `asking`,
/// the holder that asks for the lock now: a run killed with SIGKILL (or a
/// crash) leaves its lock behind, and the next run on the same machine may
/// take it over to finish what the dead one started. The journal forms no
/// identity of its own: the asking holder says which host this is (its
/// writer reads the kernel's host name). A holder of another host, or whose
/// process still exists, or either not written that way, is never judged
/// dead.
fn holder_died_here(holder: &str, asking: &str) -> bool {
    let (Some((host, pid)), Some((here, _))) = (host_and_pid(holder), host_and_pid(asking)) else {
        return false;
    };
    host == here
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        && std::path::Path::new("/proc/self").exists()
}

/// The host and process id of a holder written as `USER@HOST pid N`.
fn host_and_pid(holder: &str) -> Option<(&str, u32)> {
    let (user_host, pid) = holder.rsplit_once(" pid ")?;
    let (_, host) = user_host.split_once('@')?;
    Some((host, pid.trim().parse().ok()?))
}

fn lock_name(service: &ServiceRef) -> String {
    format!("rollout-lock.{}.{}", service.project, service.service)
}

fn storage(service: &str, e: BackendError) -> JournalError {
    JournalError::Storage(format!("{service}: {e}"))
}

#[async_trait]
impl Journal for DockerJournal {
    async fn lock(&self, service: &ServiceRef, holder: &str) -> Result<(), JournalError> {
        let who = service.to_string();
        keeper::ensure_image(&self.engine)
            .await
            .map_err(|e| storage(&who, e))?;
        let mut l =
            keeper::base_labels(LOCK, &service.project, &service.service, &self.extra_labels);
        l.insert(labels::HOLDER.into(), holder.into());
        l.insert(labels::SINCE.into(), now_rfc3339());
        // Twice at most: once more after breaking the lock of a dead holder.
        let mut broke = false;
        loop {
            match keeper::create(
                &self.engine,
                &lock_name(service),
                KEEPER_IMAGE,
                l.clone(),
                vec![],
            )
            .await
            .map_err(|e| storage(&who, e))?
            {
                Created::Ours => return Ok(()),
                Created::Taken => {
                    let (held_by, since) = self
                        .holder(service)
                        .await?
                        .unwrap_or_else(|| ("someone who just let go".into(), "now".into()));
                    if !broke
                        && holder_died_here(&held_by, holder)
                        && self.break_lock(service, &held_by).await?
                    {
                        broke = true;
                        continue;
                    }
                    return Err(JournalError::Locked {
                        service: who,
                        holder: held_by,
                        since,
                    });
                }
            }
        }
    }

    async fn unlock(&self, service: &ServiceRef) -> Result<(), JournalError> {
        keeper::remove(&self.engine, &lock_name(service))
            .await
            .map_err(|e| storage(&service.to_string(), e))
    }

    async fn load(&self, service: &ServiceRef) -> Result<Option<JournalRecord>, JournalError> {
        let Some((gen, _, json)) = self.generations(service).await?.into_iter().next() else {
            return Ok(None);
        };
        let json = json.ok_or_else(|| {
            JournalError::Storage(format!("{service}: journal generation {gen} has no record"))
        })?;
        serde_json::from_str(&json).map(Some).map_err(|e| {
            JournalError::Storage(format!(
                "{service}: journal generation {gen} does not parse: {e}"
            ))
        })
    }

    async fn save(&self, record: &JournalRecord) -> Result<(), JournalError> {
        let _one = self.writing.lock().await;
        self.removed().await;
        let service = &record.service;
        let who = service.to_string();
        self.image(&who).await?;
        let last = self.known().last.get(&who).cloned();
        let older: Vec<(u64, String)> = match last {
            Some(last) => vec![last],
            None => self
                .generations(service)
                .await?
                .into_iter()
                .map(|(gen, id, _)| (gen, id))
                .collect(),
        };
        let gen = older.first().map(|g| g.0 + 1).unwrap_or(1);
        let json = serde_json::to_string(record)
            .map_err(|e| JournalError::Storage(format!("{who}: {e}")))?;
        let mut l = keeper::base_labels(
            RECORD,
            &service.project,
            &service.service,
            &self.extra_labels,
        );
        l.insert(labels::GENERATION.into(), gen.to_string());
        l.insert(labels::RECORD.into(), json);
        let name = format!(
            "rollout-journal.{}.{}.{gen}",
            service.project, service.service
        );
        match keeper::create(&self.engine, &name, KEEPER_IMAGE, l, vec![])
            .await
            .map_err(|e| storage(&who, e))?
        {
            Created::Ours => {}
            Created::Taken => {
                return Err(JournalError::Storage(format!(
                    "{who}: journal generation {gen} was written by someone else\nhint: two rollouts of one service are running; only one holds the lock"
                )))
            }
        }
        // The new generation is stored: the older ones go while the
        // rollout goes on.
        let engine = self.engine.clone();
        let removing = tokio::spawn(async move {
            for (_, id) in older {
                let _ = keeper::remove(&engine, &id).await;
            }
        });
        let mut known = self.known();
        known.last.insert(who, (gen, name));
        known.removing = Some(removing);
        Ok(())
    }

    async fn clear(&self, service: &ServiceRef) -> Result<(), JournalError> {
        let _one = self.writing.lock().await;
        self.removed().await;
        self.known().last.remove(&service.to_string());
        for (_, id, _) in self.generations(service).await? {
            keeper::remove(&self.engine, &id)
                .await
                .map_err(|e| storage(&service.to_string(), e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_gone_process_of_this_host_is_a_dead_holder() {
        let host = "build-7";
        let asking = format!("bob@{host} pid {}", std::process::id());
        // pid_max is at most 2^22 on Linux: this pid cannot exist.
        assert!(holder_died_here(
            &format!("ann@{host} pid 4999999"),
            &asking
        ));
        // Alive: this very process, and pid 1.
        assert!(!holder_died_here(
            &format!("ann@{host} pid {}", std::process::id()),
            &asking
        ));
        assert!(!holder_died_here(&format!("ann@{host} pid 1"), &asking));
        // Another host, or a holder not written by lock_holder: never judged dead.
        assert!(!holder_died_here(
            "ann@elsewhere.example pid 4999999",
            &asking
        ));
        assert!(!holder_died_here("someone who just let go", &asking));
        assert!(!holder_died_here(&format!("ann@{host} pid x"), &asking));
        // Nor when the one asking does not say where it runs.
        assert!(!holder_died_here(
            &format!("ann@{host} pid 4999999"),
            "custom-strategy pid 7"
        ));
    }
}
