//! `mockall` mocks of the traits, where a test is about one call's
//! behaviour: what a strategy does when the proxy refuses a configuration,
//! when the engine is unreachable, and which instance it stops when a start
//! times out.

use async_trait::async_trait;
use mockall::mock;
use rollout_core::backend::{Diagnostics, Failure};
use rollout_core::config::Timeouts;
use rollout_core::event::EventSink;
use rollout_core::router::{DrainReport, DrainTicket};
use rollout_core::strategy::Cancel;
use rollout_core::{
    exit, Backend, BackendError, Health, Instance, InstanceId, InstanceState, Outcome, Plan,
    Revision, RolloutContext, Route, RouteChange, RouterError, ServiceRef, Strategy, Target,
    TrafficRouter,
};
use rollout_mock::MemoryJournal;
use rollout_strategies::Rolling;
use std::sync::Arc;
use std::time::Duration;

mock! {
    pub Engine {}
    #[async_trait]
    impl Backend for Engine {
        async fn instances(&self, service: &ServiceRef) -> Result<Vec<Instance>, BackendError>;
        async fn launch(&self, service: &ServiceRef, revision: &Revision, count: usize) -> Result<Vec<Instance>, BackendError>;
        async fn wait_healthy(&self, instance: &InstanceId, timeouts: &Timeouts) -> Result<Result<(), Failure>, BackendError>;
        async fn watch_failures(&self, instances: &[InstanceId], within: Duration) -> Result<Option<(InstanceId, Failure)>, BackendError>;
        async fn stop(&self, instance: &InstanceId, grace: Duration) -> Result<(), BackendError>;
        async fn remove(&self, instance: &InstanceId) -> Result<(), BackendError>;
        async fn diagnostics(&self, instance: &InstanceId) -> Result<Diagnostics, BackendError>;
    }
}

mock! {
    pub Proxy {}
    #[async_trait]
    impl TrafficRouter for Proxy {
        async fn routes(&self) -> Result<Vec<Route>, RouterError>;
        async fn apply(&self, change: &RouteChange) -> Result<DrainTicket, RouterError>;
        async fn drain(&self, ticket: &DrainTicket, timeout: Duration) -> Result<DrainReport, RouterError>;
    }
}

fn svc() -> ServiceRef {
    ServiceRef::new("shop", "app")
}

fn inst(id: &str, rev: &str, health: Health) -> Instance {
    Instance {
        id: InstanceId(id.into()),
        host: format!("shop-app-{id}"),
        service: svc(),
        revision: rev.into(),
        state: InstanceState::Running,
        health,
    }
}

fn ctx(engine: MockEngine, proxy: MockProxy, journal: Arc<MemoryJournal>) -> RolloutContext {
    RolloutContext {
        backend: Arc::new(engine),
        router: Arc::new(proxy),
        journal,
        analysis: None,
        verifier: None,
        events: EventSink::discard(),
        cancel: Cancel::never(),
        steer: rollout_core::Steer::never(),
    }
}

fn plan() -> Plan {
    Plan::new(svc(), Revision::new("new", "app:2"), 1)
}

#[tokio::test(start_paused = true)]
async fn a_refused_proxy_config_stops_before_any_launch_and_keeps_the_journal() {
    let mut engine = MockEngine::new();
    engine
        .expect_instances()
        .returning(|_| Ok(vec![inst("a", "old", Health::Healthy)]));
    engine.expect_launch().times(0);
    let mut proxy = MockProxy::new();
    proxy.expect_routes().returning(|| {
        Ok(vec![Route {
            target: Target::Service { name: "app".into() },
            weight: 1,
        }])
    });
    proxy.expect_apply().times(1).returning(|_| {
        Err(RouterError::Invalid {
            location: "/etc/nginx/nginx.conf:12".into(),
            message: "unknown directive \"upstrem\"".into(),
        })
    });
    let journal = Arc::new(MemoryJournal::new());
    let o = Rolling
        .run(&ctx(engine, proxy, journal.clone()), &plan())
        .await;
    let Outcome::Failed(msg) = &o else {
        panic!("{o:?}")
    };
    assert!(msg.contains("/etc/nginx/nginx.conf:12"), "{msg}");
    assert_eq!(o.exit_code(), exit::UNEXPECTED);
    assert!(
        journal.record(&svc()).is_some(),
        "the next run converges from it"
    );
    assert!(journal.holder(&svc()).is_none(), "the lock is given back");
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_engine_changes_nothing() {
    let mut engine = MockEngine::new();
    engine.expect_instances().times(1).returning(|_| {
        Err(BackendError::Unreachable {
            endpoint: "unix:///var/run/docker.sock".into(),
            reason: "connection refused".into(),
        })
    });
    let mut proxy = MockProxy::new();
    proxy.expect_apply().times(0);
    let journal = Arc::new(MemoryJournal::new());
    let o = Rolling
        .run(&ctx(engine, proxy, journal.clone()), &plan())
        .await;
    let Outcome::Failed(msg) = &o else {
        panic!("{o:?}")
    };
    assert!(
        msg.contains("cannot reach the engine at unix:///var/run/docker.sock"),
        "{msg}"
    );
    assert!(journal.record(&svc()).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_start_timeout_stops_the_new_instance_and_never_the_old() {
    let mut engine = MockEngine::new();
    engine
        .expect_instances()
        .returning(|_| Ok(vec![inst("old1", "old", Health::Healthy)]));
    engine
        .expect_launch()
        .times(1)
        .returning(|_, _, _| Ok(vec![inst("new1", "new", Health::Starting)]));
    engine
        .expect_wait_healthy()
        .times(1)
        .returning(|_, _| Ok(Err(Failure::StartTimeout)));
    engine.expect_diagnostics().returning(|_| {
        Ok(Diagnostics {
            last_logs: vec!["listening on :8000".into()],
            health_log: vec![],
        })
    });
    engine
        .expect_stop()
        .withf(|id, _| id.0 == "new1")
        .times(1)
        .returning(|_, _| Ok(()));
    engine
        .expect_remove()
        .withf(|id| id.0 == "new1")
        .times(1)
        .returning(|_| Ok(()));
    let mut proxy = MockProxy::new();
    // Already routed by instance: no change until a new one is healthy.
    proxy.expect_routes().returning(|| {
        Ok(vec![Route {
            target: Target::instance(InstanceId("old1".into()), "shop-app-old1"),
            weight: 1,
        }])
    });
    proxy.expect_apply().times(0);
    let mut p = plan();
    p.update.order = rollout_core::Order::StartFirst;
    let o = Rolling
        .run(&ctx(engine, proxy, Arc::new(MemoryJournal::new())), &p)
        .await;
    assert!(matches!(o, Outcome::Paused(_)), "{o:?}");
}
