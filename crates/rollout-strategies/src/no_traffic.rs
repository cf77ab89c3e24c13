//! The router of a service with no proxy in front: queue workers,
//! schedulers, consumers. Nothing sends them requests; each instance takes
//! its own work while it runs, and finishes the unit at hand when it is sent
//! its stop signal.
//!
//! A rolling update of such a service keeps the same protocol as one behind
//! nginx: a new instance is started and health-gated, an old one is stopped
//! with its `stop_grace_period` and removed, the capacity floor and
//! `update_config` hold. Only the traffic steps have nothing to act on, so
//! this router keeps the routes the strategy asks for in memory (the
//! strategy reads them back as it would a proxy's), drains at once, and
//! says through [`TrafficRouter::carries_traffic`] that no event should
//! report a traffic change.
//!
//! It starts at rest, routed by the service's name: every running instance
//! of the service takes work. A run that resumes after a crash starts there
//! again, which is what the instances do.

use async_trait::async_trait;
use rollout_core::router::{DrainReport, DrainTicket};
use rollout_core::{Route, RouteChange, RouterError, Target, TrafficRouter};
use std::sync::Mutex;
use std::time::Duration;

/// A [`TrafficRouter`] that routes nothing, for a service with no proxy in
/// front. Blue-green and canary move traffic and make no sense with it; the
/// rolling strategy runs unchanged.
///
/// ```
/// use rollout_core::TrafficRouter;
/// use rollout_strategies::NoTraffic;
///
/// let router = NoTraffic::new("worker");
/// assert!(!router.carries_traffic());
/// ```
#[derive(Debug)]
pub struct NoTraffic {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    routes: Vec<Route>,
    generation: u64,
}

impl NoTraffic {
    /// The router of `service` (its name in the project), at rest.
    pub fn new(service: &str) -> Self {
        Self {
            state: Mutex::new(State {
                routes: vec![Route {
                    target: Target::Service {
                        name: service.to_string(),
                    },
                    weight: 1,
                }],
                generation: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl TrafficRouter for NoTraffic {
    async fn routes(&self) -> Result<Vec<Route>, RouterError> {
        Ok(self.state().routes.clone())
    }

    async fn apply(&self, change: &RouteChange) -> Result<DrainTicket, RouterError> {
        let mut state = self.state();
        state.routes.retain(|r| !change.remove.contains(&r.target));
        for set in &change.set {
            match state.routes.iter_mut().find(|r| r.target == set.target) {
                Some(r) => r.weight = set.weight,
                None => state.routes.push(set.clone()),
            }
        }
        state.generation += 1;
        Ok(DrainTicket {
            generation: state.generation,
            removed: change.remove.clone(),
        })
    }

    async fn drain(
        &self,
        _ticket: &DrainTicket,
        _timeout: Duration,
    ) -> Result<DrainReport, RouterError> {
        Ok(DrainReport::default())
    }

    fn carries_traffic(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout_core::InstanceId;

    #[tokio::test]
    async fn it_keeps_what_it_is_told_and_drains_at_once() {
        let r = NoTraffic::new("worker");
        let named = Target::Service {
            name: "worker".into(),
        };
        assert_eq!(r.routes().await.unwrap()[0].target, named);
        let one = Target::instance(InstanceId("c1".into()), "p-worker-1");
        let ticket = r
            .apply(&RouteChange {
                set: vec![Route {
                    target: one.clone(),
                    weight: 1,
                }],
                remove: vec![named.clone()],
            })
            .await
            .unwrap();
        assert_eq!(ticket.generation, 1);
        assert_eq!(ticket.removed, vec![named]);
        let routes = r.routes().await.unwrap();
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].target, one);
        let report = r.drain(&ticket, Duration::from_secs(30)).await.unwrap();
        assert!(report.waited_for.is_empty() && !report.timed_out);
    }
}
