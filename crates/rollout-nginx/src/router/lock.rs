//! The proxy lock, as the router takes it: once around every change of the
//! config file (apply's prepare, commit and reload check) and around the
//! recovery of a killed run, waiting for another holder up to a bound.
//!
//! It is a room of its own because it is about other processes, not about
//! nginx: two rollouts of different services behind one proxy (or a
//! blue-green pair) edit one file, and only one may read, test, write and
//! reload it at a time. Waiting here, rather than failing, is what lets
//! their edits compose: the change is made to the live file as it is once
//! the lock is held. The store itself is the [`ProxyLock`] trait's.

use crate::proxy::{LockHolder, ProxyLock};
use rollout_core::error::RouterError;
use std::sync::Arc;
use std::time::Duration;

/// Told when a change waits for the proxy lock: who holds it and since when.
pub type OnWait = Arc<dyn Fn(&LockHolder) + Send + Sync>;

/// How a router takes the lock of its proxy's config.
#[derive(Clone)]
pub struct ProxyLocking {
    /// The store (the Docker engine's, or [`crate::proxy::LocalLock`]).
    pub lock: Arc<dyn ProxyLock>,
    /// Who takes it (`USER@HOST pid N ...`).
    pub holder: String,
    /// How long a change waits for another holder before it fails.
    pub timeout: Duration,
    /// How often it asks again meanwhile.
    pub poll: Duration,
    /// Told when the change starts waiting, and again when the holder
    /// changes: the progress line of a waiting rollout.
    pub on_wait: OnWait,
}

impl ProxyLocking {
    /// Locking through `lock` for `holder`, waiting up to 2 minutes, asking
    /// every 200 ms, saying nothing while it waits.
    pub fn new(lock: Arc<dyn ProxyLock>, holder: impl Into<String>) -> Self {
        Self {
            lock,
            holder: holder.into(),
            timeout: Duration::from_secs(120),
            poll: Duration::from_millis(200),
            on_wait: Arc::new(|_| {}),
        }
    }
}

impl ProxyLocking {
    /// Takes the lock of `key` (a config path) as a change does, waiting
    /// for another holder up to the timeout: for another router of the same
    /// proxy (HAProxy's, whose changes go through its runtime API).
    pub async fn take(&self, key: &str) -> Result<(), RouterError> {
        acquire(Some(self), key).await
    }

    /// Gives the lock of `key` back, as a change does when it is done.
    pub async fn give_back(&self, key: &str) {
        release(Some(self), key).await;
    }
}

impl std::fmt::Debug for ProxyLocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyLocking")
            .field("holder", &self.holder)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Takes the lock of `path`, waiting for another holder up to the timeout.
/// Without locking there is nothing to take.
pub(super) async fn acquire(locking: Option<&ProxyLocking>, path: &str) -> Result<(), RouterError> {
    let Some(locking) = locking else {
        return Ok(());
    };
    let start = tokio::time::Instant::now();
    let mut told: Option<LockHolder> = None;
    loop {
        let held = locking
            .lock
            .try_lock(path, &locking.holder)
            .await
            .map_err(|e| RouterError::Unreachable(format!("the lock of {path}: {e}")))?;
        let Some(other) = held else {
            return Ok(());
        };
        if start.elapsed() >= locking.timeout {
            return Err(RouterError::Other(format!(
                "the proxy config {path} is locked by {} since {}; waited {} s for it\nhint: another rollout behind this proxy is changing its config; if its process is gone, `docker rollout unlock` releases its lock",
                other.holder,
                other.since,
                locking.timeout.as_secs()
            )));
        }
        if told.as_ref() != Some(&other) {
            (locking.on_wait)(&other);
            told = Some(other);
        }
        tokio::time::sleep(locking.poll).await;
    }
}

/// Gives the lock of `path` back. A lock that cannot be given back is left
/// for its next taker to judge (the store may prove this process gone);
/// the change itself is done, so it is not failed for that.
pub(super) async fn release(locking: Option<&ProxyLocking>, path: &str) {
    if let Some(locking) = locking {
        for _ in 0..3 {
            if locking.lock.unlock(path).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::LocalLock;
    use std::sync::Mutex;

    #[tokio::test]
    async fn a_second_taker_waits_and_says_for_whom_then_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ProxyLock> = Arc::new(LocalLock::new(dir.path()));
        let first = ProxyLocking::new(store.clone(), "ann@box pid 1");
        acquire(Some(&first), "/etc/nginx/nginx.conf")
            .await
            .unwrap();
        let heard = Arc::new(Mutex::new(Vec::<LockHolder>::new()));
        let mut second = ProxyLocking::new(store.clone(), "bob@box pid 2");
        second.poll = Duration::from_millis(10);
        let h = heard.clone();
        second.on_wait = Arc::new(move |who| h.lock().unwrap().push(who.clone()));
        let waiting = {
            let second = second.clone();
            tokio::spawn(async move { acquire(Some(&second), "/etc/nginx/nginx.conf").await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished());
        // Another file is another lock.
        acquire(Some(&second), "/etc/nginx/other.conf")
            .await
            .unwrap();
        release(Some(&first), "/etc/nginx/nginx.conf").await;
        waiting.await.unwrap().unwrap();
        let heard = heard.lock().unwrap().clone();
        assert_eq!(heard.len(), 1, "one line while the holder stays: {heard:?}");
        assert_eq!(heard[0].holder, "ann@box pid 1");
        // Held now by the second: a third one times out, naming it.
        let mut third = ProxyLocking::new(store, "eve@box pid 3");
        third.timeout = Duration::from_millis(50);
        third.poll = Duration::from_millis(10);
        let e = acquire(Some(&third), "/etc/nginx/nginx.conf")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("locked by bob@box pid 2"), "{e}");
    }
}
