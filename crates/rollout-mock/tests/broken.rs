//! Deliberately broken strategies: the checker must catch each one, from
//! what the mock saw alone. A correct strategy written the same way passes,
//! so the catches are not noise.

use async_trait::async_trait;
use rollout_core::{
    Instance, Outcome, Plan, Revision, RolloutContext, Route, RouteChange, ServiceRef, Strategy,
    Target,
};
use rollout_mock::check::{check_timeline, Violation};
use rollout_mock::MockCluster;

#[derive(Clone, Copy, PartialEq)]
enum Flaw {
    None,
    StopBeforeUnroute,
    NoDrainWait,
    RouteBeforeHealthy,
    ServiceNameWhileUnready,
}

/// Replaces one instance at a time, start-first, with one flaw.
struct OneByOne(Flaw);

fn target(i: &Instance) -> Target {
    Target::instance(i.id.clone(), i.host.clone())
}

#[async_trait]
impl Strategy for OneByOne {
    fn name(&self) -> &str {
        "one-by-one"
    }

    async fn run(&self, ctx: &RolloutContext, plan: &Plan) -> Outcome {
        let b = &ctx.backend;
        let r = &ctx.router;
        let old = b.instances(&plan.service).await.unwrap();
        // Leave the service name for per-instance routes.
        r.apply(&RouteChange {
            set: old
                .iter()
                .map(|i| Route {
                    target: target(i),
                    weight: 1,
                })
                .collect(),
            remove: vec![Target::Service {
                name: plan.service.service.clone(),
            }],
        })
        .await
        .unwrap();
        for o in &old {
            let new = b
                .launch(&plan.service, &plan.target, 1)
                .await
                .unwrap()
                .remove(0);
            if self.0 == Flaw::ServiceNameWhileUnready {
                // nginx resolves the name now, with `new` still starting.
                r.apply(&RouteChange {
                    set: vec![Route {
                        target: Target::Service {
                            name: plan.service.service.clone(),
                        },
                        weight: 1,
                    }],
                    remove: vec![],
                })
                .await
                .unwrap();
            }
            if self.0 != Flaw::RouteBeforeHealthy {
                b.wait_healthy(&new.id, &plan.timeouts)
                    .await
                    .unwrap()
                    .unwrap();
            }
            if self.0 == Flaw::StopBeforeUnroute {
                b.stop(&o.id, plan.timeouts.stop_grace).await.unwrap();
            }
            let ticket = r
                .apply(&RouteChange {
                    set: vec![Route {
                        target: target(&new),
                        weight: 1,
                    }],
                    remove: vec![target(o)],
                })
                .await
                .unwrap();
            if self.0 == Flaw::RouteBeforeHealthy {
                b.wait_healthy(&new.id, &plan.timeouts)
                    .await
                    .unwrap()
                    .unwrap();
            }
            if !matches!(self.0, Flaw::NoDrainWait | Flaw::StopBeforeUnroute) {
                r.drain(&ticket, plan.timeouts.drain).await.unwrap();
            }
            if self.0 != Flaw::StopBeforeUnroute {
                b.stop(&o.id, plan.timeouts.stop_grace).await.unwrap();
            }
            b.remove(&o.id).await.unwrap();
        }
        Outcome::Completed
    }
}

async fn run(flaw: Flaw) -> Vec<Violation> {
    let mock = MockCluster::new();
    let svc = ServiceRef::new("shop", "app");
    mock.seed(&svc, "old", 3, true);
    let mark = mock.mark();
    let ctx = mock.context();
    let plan = Plan::new(svc, Revision::new("new", "app:2"), 3);
    assert_eq!(OneByOne(flaw).run(&ctx, &plan).await, Outcome::Completed);
    mock.with_timeline(|t| check_timeline(t, mark, 3))
}

fn only(v: &[Violation], invariant: u8, words: &str) {
    assert!(!v.is_empty(), "the flaw went unnoticed");
    assert!(
        v.iter().all(|x| x.invariant == invariant) && v.iter().any(|x| x.message.contains(words)),
        "expected invariant {invariant} ({words}), got {v:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_correct_strategy_passes() {
    let v = run(Flaw::None).await;
    assert!(v.is_empty(), "{v:#?}");
}

#[tokio::test(start_paused = true)]
async fn stop_before_unroute_is_caught() {
    let v = run(Flaw::StopBeforeUnroute).await;
    // Stopped while routed (2), and the routed instance stopped serving (4).
    assert!(
        v.iter()
            .any(|x| x.invariant == 2 && x.message.contains("while still routed")),
        "{v:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn unroute_and_stop_without_drain_is_caught() {
    let v = run(Flaw::NoDrainWait).await;
    only(&v, 2, "requests in flight");
    assert_eq!(v.len(), 3, "one per old instance: {v:#?}");
}

#[tokio::test(start_paused = true)]
async fn route_before_healthy_is_caught() {
    let v = run(Flaw::RouteBeforeHealthy).await;
    assert!(
        v.iter()
            .any(|x| x.invariant == 1 && x.message.contains("before they were ready")),
        "{v:#?}"
    );
}

#[tokio::test(start_paused = true)]
async fn service_name_resolved_with_unready_instances_is_caught() {
    let v = run(Flaw::ServiceNameWhileUnready).await;
    assert!(v.iter().any(|x| x.invariant == 1), "{v:#?}");
}

#[tokio::test(start_paused = true)]
async fn capacity_floor_is_checked() {
    // Two serving, then one taken out: a floor of 2 is broken, 1 is kept.
    let mock = MockCluster::new();
    let svc = ServiceRef::new("shop", "app");
    mock.seed(&svc, "old", 2, true);
    let mark = mock.mark();
    let old = rollout_core::Backend::instances(&*mock, &svc)
        .await
        .unwrap();
    rollout_core::TrafficRouter::apply(
        &*mock,
        &RouteChange {
            set: vec![Route {
                target: target(&old[1]),
                weight: 1,
            }],
            remove: vec![Target::Service { name: "app".into() }],
        },
    )
    .await
    .unwrap();
    let v = mock.with_timeline(|tl| check_timeline(tl, mark, 2));
    assert!(v.iter().any(|x| x.invariant == 4), "{v:#?}");
    let v = mock.with_timeline(|tl| check_timeline(tl, mark, 1));
    assert!(v.is_empty(), "{v:#?}");
}
