//! The operator's pause of a running rollout (`docker rollout pause` from
//! another shell, a [`Steer`](rollout_core::Steer) in the context): where
//! a strategy holds, and how it says so.
//!
//! A strategy holds only at a safe point: a canary at its step (its hold's
//! clock stopped, the analysis still judging), a rolling update before it
//! starts its next slot (slots in flight finish), blue-green before its
//! switch. While it holds, failures are still watched and an abort still
//! rolls back; a rollback is never held. The hold is said once, however
//! many workers hold: an [`Event::Paused`] and the journal's state
//! [`PAUSED`] (`{"by": "operator", "since": SECS, "at": "..."}`), which
//! `docker rollout status` shows and the verb waits for; on resume an
//! [`Event::Resumed`] and the state removed. The hold belongs to the
//! process: a later run of a rollout left by a crash starts unheld.

use crate::ops::{Ops, Res};
use rollout_core::backend::Failure;
use rollout_core::strategy::CancelLevel;
use rollout_core::{Event, InstanceId};
use serde_json::json;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The key of the journal's state that says the rollout holds by the
/// operator's pause.
pub const PAUSED: &str = "paused";

/// Who holds now (rolling workers each hold), and since when.
#[derive(Debug, Default)]
pub(crate) struct Holds {
    inner: Mutex<(usize, Option<Instant>)>,
}

/// How a hold at a safe point ended.
#[derive(Debug)]
pub(crate) enum Held {
    /// Not paused, or resumed: go on.
    Go,
    /// The operator's cancel reached the level asked for.
    Cancelled(CancelLevel),
    /// A watched instance failed.
    Failed(InstanceId, Failure),
    /// Something else stopped the rollout meanwhile (a failure counted by
    /// another worker).
    Stopped,
}

/// How often a hold looks whether something else stopped the rollout.
const LOOK_EVERY: Duration = Duration::from_millis(250);

fn epoch_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ops<'_> {
    fn holds(&self) -> std::sync::MutexGuard<'_, (usize, Option<Instant>)> {
        self.holds.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more holder at `at`; the first says that the rollout holds.
    pub async fn hold_begins(&self, at: &str) -> Res<()> {
        let first = {
            let mut h = self.holds();
            h.0 += 1;
            if h.0 == 1 {
                h.1 = Some(Instant::now());
            }
            h.0 == 1
        };
        if first {
            self.ctx.events.send(Event::Paused {
                reason: "operator".into(),
                at: at.to_string(),
            });
            let value = json!({ "by": "operator", "since": epoch_secs(), "at": at });
            self.update_state(|state| state[PAUSED] = value).await?;
        }
        Ok(())
    }

    /// One holder fewer; the last says that the rollout goes on.
    pub async fn hold_ends(&self) -> Res<()> {
        let since = {
            let mut h = self.holds();
            h.0 = h.0.saturating_sub(1);
            if h.0 == 0 {
                h.1.take()
            } else {
                None
            }
        };
        if let Some(since) = since {
            self.ctx.events.send(Event::Resumed {
                reason: "operator".into(),
                held_secs: since.elapsed().as_secs_f64(),
            });
            self.update_state(|state| {
                if let Some(o) = state.as_object_mut() {
                    o.remove(PAUSED);
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Holds here, at `at`, while the operator's pause is on: `watch` is
    /// watched for failures, the cancel for `level`, and `stopped` asked
    /// every [`LOOK_EVERY`]. Returns at once when not paused.
    pub async fn hold_while_paused(
        &self,
        at: &str,
        watch: &[InstanceId],
        level: CancelLevel,
        stopped: impl Fn() -> bool,
    ) -> Res<Held> {
        let mut steering = self.ctx.steer.now();
        if !steering.paused {
            return Ok(Held::Go);
        }
        self.hold_begins(at).await?;
        let end: Res<Held> = async {
            loop {
                if !steering.paused {
                    return Ok(Held::Go);
                }
                if stopped() {
                    return Ok(Held::Stopped);
                }
                tokio::select! {
                    biased;
                    _ = self.ctx.cancel.reached(level) => {
                        return Ok(Held::Cancelled(self.ctx.cancel.level()));
                    }
                    r = async {
                        if watch.is_empty() {
                            tokio::time::sleep(LOOK_EVERY).await;
                            Ok(None)
                        } else {
                            self.ctx.backend.watch_failures(watch, LOOK_EVERY).await
                        }
                    } => {
                        if let Some((id, f)) = r? {
                            return Ok(Held::Failed(id, f));
                        }
                    }
                    s = self.ctx.steer.changed_from(steering) => steering = s,
                }
            }
        }
        .await;
        self.hold_ends().await?;
        end
    }
}
