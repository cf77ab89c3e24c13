//! Retiring instances: stop and remove, at once or with the removal
//! beside what comes next (a stop-first slot's launch), and the way out of
//! the routes before it. A room of [`Ops`] of its own because the removals
//! it leaves under way are waited for by every view and by the run's end.

use super::{target_of, Ops, Res};
use rollout_core::journal::Step;
use rollout_core::router::{DrainTicket, RouteChange, Target};
use rollout_core::{BackendError, Event, Instance, InstanceState};

impl Ops<'_> {
    /// Stops and removes instances that no longer get traffic.
    pub async fn retire(&self, instances: &[Instance]) -> Res<()> {
        if instances.is_empty() {
            return Ok(());
        }
        self.note(Step::Retire {
            instances: instances.iter().map(|i| i.id.0.clone()).collect(),
        })
        .await?;
        for i in instances {
            self.stop(i).await?;
            self.ctx.backend.remove(&i.id).await?;
            self.ctx.events.send(Event::InstanceRemoved {
                instance: i.id.clone(),
            });
        }
        Ok(())
    }

    /// Stops `old` (drained) and removes it in the background: a
    /// stop-first slot launches its new instance once the old one has
    /// stopped, while the engine removes it. The next view, and the run's
    /// end, wait for the removal and report its failure (the stopped
    /// instance is then the next run's to remove, as after a crash).
    pub async fn retire_behind(&self, old: &Instance) -> Res<()> {
        self.note(Step::Retire {
            instances: vec![old.id.0.clone()],
        })
        .await?;
        self.stop(old).await?;
        let (backend, events, failed) = (
            self.ctx.backend.clone(),
            self.ctx.events.clone(),
            self.removal_failed.clone(),
        );
        let id = old.id.clone();
        let task = tokio::spawn(async move {
            match backend.remove(&id).await {
                Ok(()) => events.send(Event::InstanceRemoved { instance: id }),
                Err(e) => {
                    failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            }
        });
        self.removing.lock().await.push(task);
        Ok(())
    }

    /// Stops `i` with its grace period when it runs.
    async fn stop(&self, i: &Instance) -> Res<()> {
        if i.state == InstanceState::Running {
            self.ctx
                .backend
                .stop(&i.id, self.plan.timeouts.stop_grace)
                .await?;
            self.ctx.events.send(Event::InstanceStopped {
                instance: i.id.clone(),
            });
        }
        Ok(())
    }

    /// Waits for the removals [`Ops::retire_behind`] left under way; the
    /// error of one that failed.
    pub(super) async fn removed_behind(&self) -> Res<()> {
        // Held while waiting: a view beside it waits for the same removals.
        let mut removing = self.removing.lock().await;
        for t in removing.drain(..) {
            if let Err(e) = t.await {
                self.removal_failed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(BackendError::Other(format!("a removal failed: {e}")));
            }
        }
        drop(removing);
        match self
            .removal_failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Takes instances out of the routes (when routed), waits for their
    /// drain, then stops and removes them. Instances that are not routed are
    /// drained with an unknown ticket: a run resuming after a crash cannot
    /// tell whether their requests have finished.
    pub async fn unroute_and_retire(&self, instances: &[Instance], routed: bool) -> Res<()> {
        self.unroute_and_drain(instances, routed).await?;
        self.retire(instances).await
    }

    /// [`Ops::unroute_and_retire`] up to the drain.
    pub async fn unroute_and_drain(&self, instances: &[Instance], routed: bool) -> Res<()> {
        if instances.is_empty() {
            return Ok(());
        }
        let targets: Vec<Target> = instances.iter().map(target_of).collect();
        let ticket = if routed {
            self.route(RouteChange {
                set: vec![],
                remove: targets.clone(),
            })
            .await?
        } else {
            None
        };
        let ticket = ticket.unwrap_or_else(|| DrainTicket::unknown(targets));
        self.drain(&ticket).await?;
        Ok(())
    }
}
