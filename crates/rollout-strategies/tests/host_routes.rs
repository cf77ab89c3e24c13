//! A router that knows instances only by host, as nginx does: it reads the
//! container names back from its config and reports each as the instance's
//! id. The strategies' view matches those routes to the backend's instances
//! by host, so a rollout (and a run resumed after a crash, which starts from
//! what the router reports) treats a routed instance as routed.

mod common;
use async_trait::async_trait;
use common::*;
use rollout_core::config::Order;
use rollout_core::event::EventSink;
use rollout_core::router::{DrainReport, DrainTicket, Target};
use rollout_core::strategy::Cancel;
use rollout_core::{
    InstanceId, Journal, Outcome, Plan, RolloutContext, Route, RouteChange, RouterError, Strategy,
    TrafficRouter,
};
use rollout_mock::MockCluster;
use rollout_strategies::{BlueGreen, Canary, Rolling};
use std::sync::Arc;
use std::time::Duration;

/// The mock's router, reporting every instance route with its host as id.
struct HostsOnly(Arc<MockCluster>);

#[async_trait]
impl TrafficRouter for HostsOnly {
    async fn routes(&self) -> Result<Vec<Route>, RouterError> {
        let mut routes = self.0.routes().await?;
        for r in &mut routes {
            if let Target::Instance { id, host } = &mut r.target {
                *id = InstanceId(host.clone());
            }
        }
        Ok(routes)
    }
    async fn apply(&self, c: &RouteChange) -> Result<DrainTicket, RouterError> {
        self.0.apply(c).await
    }
    async fn drain(&self, t: &DrainTicket, d: Duration) -> Result<DrainReport, RouterError> {
        self.0.drain(t, d).await
    }
}

fn hosts_only_ctx(e: &Env) -> RolloutContext {
    RolloutContext {
        backend: e.mock.clone(),
        router: Arc::new(HostsOnly(e.mock.clone())),
        journal: e.journal.clone(),
        analysis: None,
        verifier: None,
        events: EventSink::discard(),
        cancel: Cancel::never(),
        steer: rollout_core::Steer::never(),
    }
}

/// Runs `strategy` through the host-only router; when `cut_after` is given,
/// the first run is dropped then (as a SIGKILL would end it) and a second
/// run finishes.
async fn run_hosts_only(
    strategy: &dyn Strategy,
    e: &Env,
    p: &Plan,
    cut_after: Option<Duration>,
) -> Outcome {
    let ctx = hosts_only_ctx(e);
    if let Some(cut) = cut_after {
        let first = tokio::time::timeout(cut, strategy.run(&ctx, p)).await;
        assert!(first.is_err(), "the first run ended before the cut");
        // The killed process is gone: its lock is stale.
        e.journal.unlock(&e.service).await.unwrap();
    }
    strategy.run(&ctx, p).await
}

#[tokio::test(start_paused = true)]
async fn rolling_sees_routes_by_host_as_its_instances() {
    for order in [Order::StartFirst, Order::StopFirst] {
        for cut in [None, Some(Duration::from_secs(12))] {
            let e = env(3);
            let mut p = plan(&e, 3);
            p.update.order = order;
            let o = run_hosts_only(&Rolling, &e, &p, cut).await;
            assert_eq!(o, Outcome::Completed, "{order:?}, cut {cut:?}");
            assert_clean(&e, &p, "rolling", &o);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn canary_sees_routes_by_host_as_its_instances() {
    for cut in [None, Some(Duration::from_secs(40))] {
        let e = env(4);
        let p = plan(&e, 4);
        let o = run_hosts_only(&Canary, &e, &p, cut).await;
        assert_eq!(o, Outcome::Completed, "cut {cut:?}");
        assert_clean(&e, &p, "canary", &o);
    }
}

#[tokio::test(start_paused = true)]
async fn blue_green_sees_routes_by_host_as_its_instances() {
    let (e, layout) = colours_env(3, true);
    let mut p = plan(&e, 3);
    p.layout = layout;
    let o = run_hosts_only(&BlueGreen, &e, &p, None).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "blue-green", &o);
}
