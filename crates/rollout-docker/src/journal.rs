//! The rollout journal and the per-service lock, kept with the engine.
//!
//! Both are never-started containers ([`crate::keeper`]), so any client of
//! the engine sees them, a crashed client leaves them behind for the next
//! run, and nothing is stored on the operator's machine.
//!
//! - The lock is a container named `rollout-lock.PROJECT.SERVICE`, taken
//!   and judged as every lock of ours is ([`crate::lock`]): creating it is
//!   the atomic test-and-set, and the lock of a holder proven dead is taken
//!   over.
//! - A record is a container `rollout-journal.PROJECT.SERVICE.GEN` whose
//!   labels hold the JSON record. Labels cannot change, so each save creates
//!   the next generation and then removes the older ones (in the background,
//!   awaited by the next save): a crash between the two leaves both, and the
//!   newest generation wins at load. A record is never half-written: a
//!   container exists with all its labels or not at all.

use crate::engine::Engine;
use crate::keeper::{self, Created, KEEPER_IMAGE};
use crate::labels;
use crate::lock::{self, HeldLock};
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
    /// What this process knows without asking the engine again: the
    /// generation it wrote last per service (only the lock holder writes, so
    /// nobody else adds one meanwhile).
    known: Arc<std::sync::Mutex<Known>>,
}

#[derive(Debug, Default)]
struct Known {
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

    /// Who holds the lock of `service` and since when, if anyone.
    pub async fn holder(&self, service: &ServiceRef) -> Result<Option<HeldLock>, JournalError> {
        lock::read(&self.engine, &lock_name(service))
            .await
            .map_err(|e| storage(&service.to_string(), e))
    }

    /// Removes the lock of `service` if `holder` still holds it (a holder
    /// known to be dead, or one a person released with `docker rollout
    /// unlock`), and says whether it did. The lock is removed by its
    /// container id, so a lock taken again meanwhile by someone else is left
    /// alone: two runs breaking the same dead lock cannot both win.
    pub async fn break_lock(
        &self,
        service: &ServiceRef,
        holder: &str,
    ) -> Result<bool, JournalError> {
        lock::break_lock(&self.engine, &lock_name(service), holder)
            .await
            .map_err(|e| storage(&service.to_string(), e))
    }

    /// Takes the lock `key` for `holder` as [`Journal::lock`] does, waiting
    /// for another holder up to `timeout` (asking every half second); `on_wait`
    /// hears who holds it and since when, once per holder. For a lock that
    /// several services share: the two colours of a blue-green pair, whose
    /// rollouts run one after the other.
    pub async fn wait_lock(
        &self,
        key: &ServiceRef,
        holder: &str,
        timeout: std::time::Duration,
        on_wait: &(dyn Fn(&HeldLock) + Send + Sync),
    ) -> Result<(), JournalError> {
        let start = tokio::time::Instant::now();
        let mut told: Option<String> = None;
        loop {
            match self.lock(key, holder).await {
                Err(JournalError::Locked {
                    service,
                    holder: held_by,
                    since,
                }) => {
                    if start.elapsed() >= timeout {
                        return Err(JournalError::Locked {
                            service,
                            holder: held_by,
                            since,
                        });
                    }
                    if told.as_deref() != Some(held_by.as_str()) {
                        on_wait(&HeldLock {
                            id: String::new(),
                            holder: held_by.clone(),
                            since,
                        });
                        told = Some(held_by);
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                done => return done,
            }
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

fn lock_name(service: &ServiceRef) -> String {
    format!("rollout-lock.{}.{}", service.project, service.service)
}

fn storage(service: &str, e: BackendError) -> JournalError {
    JournalError::Storage(format!("{service}: {e}"))
}

#[async_trait]
impl Journal for DockerJournal {
    async fn lock(&self, service: &ServiceRef, holder: &str) -> Result<(), JournalError> {
        let l = keeper::base_labels(LOCK, &service.project, &service.service, &self.extra_labels);
        match lock::take(&self.engine, &lock_name(service), l, holder)
            .await
            .map_err(|e| storage(&service.to_string(), e))?
        {
            None => Ok(()),
            Some(held) => Err(JournalError::Locked {
                service: service.to_string(),
                holder: held.holder,
                since: held.since,
            }),
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
