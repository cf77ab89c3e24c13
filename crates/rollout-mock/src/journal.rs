//! [`MemoryJournal`]: the journal and the per-service lock, in memory.

use async_trait::async_trait;
use rollout_core::journal::JournalRecord;
use rollout_core::{Journal, JournalError, ServiceRef};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;

/// Journal records and locks kept in memory, shared by every run that is
/// handed the same `Arc`.
///
/// A lock outlives a run whose future was dropped, as a real lock outlives a
/// killed process. The Docker journal releases a lock whose holder's process
/// is gone; a test that simulates a crash does the same with
/// [`Journal::unlock`] before it runs the rollout again.
#[derive(Debug)]
pub struct MemoryJournal {
    start: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<ServiceRef, JournalRecord>,
    locks: HashMap<ServiceRef, (String, Duration)>,
    saves: u64,
}

impl Default for MemoryJournal {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many times a record was saved (each step taken saves once).
    pub fn saves(&self) -> u64 {
        self.lock_inner().saves
    }

    /// The record of `service`, without going through the trait.
    pub fn record(&self, service: &ServiceRef) -> Option<JournalRecord> {
        self.lock_inner().records.get(service).cloned()
    }

    /// Who holds the lock of `service`.
    pub fn holder(&self, service: &ServiceRef) -> Option<String> {
        self.lock_inner().locks.get(service).map(|(h, _)| h.clone())
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn lock(&self, service: &ServiceRef, holder: &str) -> Result<(), JournalError> {
        let now = Instant::now() - self.start;
        let mut inner = self.lock_inner();
        if let Some((who, since)) = inner.locks.get(service) {
            return Err(JournalError::Locked {
                service: service.to_string(),
                holder: who.clone(),
                since: format!("{:.3}s on the mock clock", since.as_secs_f64()),
            });
        }
        inner
            .locks
            .insert(service.clone(), (holder.to_string(), now));
        Ok(())
    }

    async fn unlock(&self, service: &ServiceRef) -> Result<(), JournalError> {
        self.lock_inner().locks.remove(service);
        Ok(())
    }

    async fn load(&self, service: &ServiceRef) -> Result<Option<JournalRecord>, JournalError> {
        Ok(self.lock_inner().records.get(service).cloned())
    }

    async fn save(&self, record: &JournalRecord) -> Result<(), JournalError> {
        let mut inner = self.lock_inner();
        inner.saves += 1;
        inner.records.insert(record.service.clone(), record.clone());
        Ok(())
    }

    async fn clear(&self, service: &ServiceRef) -> Result<(), JournalError> {
        self.lock_inner().records.remove(service);
        Ok(())
    }
}
