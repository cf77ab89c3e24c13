//! The mock's own behaviour: health and faults on the paused clock, the
//! drain model, service routes resolved at apply time, and the journal.

use rollout_core::backend::Failure;
use rollout_core::config::Timeouts;
use rollout_core::{
    Backend, Journal, Revision, Route, RouteChange, RouterError, ServiceRef, Target, TrafficRouter,
};
use rollout_mock::{Faults, MemoryJournal, MockCluster, RequestModel};
use std::time::Duration;

fn svc() -> ServiceRef {
    ServiceRef::new("p", "app")
}

fn t(i: &rollout_core::Instance) -> Target {
    Target::instance(i.id.clone(), i.host.clone())
}

#[tokio::test(start_paused = true)]
async fn health_and_faults_follow_the_clock() {
    let m = MockCluster::new();
    m.set_faults("slow", Faults::slow_start(Duration::from_secs(90)));
    m.set_faults("bad", Faults::never_healthy());
    let ok = m
        .launch(&svc(), &Revision::new("good", ""), 1)
        .await
        .unwrap()
        .remove(0);
    let slow = m
        .launch(&svc(), &Revision::new("slow", ""), 1)
        .await
        .unwrap()
        .remove(0);
    let bad = m
        .launch(&svc(), &Revision::new("bad", ""), 1)
        .await
        .unwrap()
        .remove(0);
    let to = Timeouts::default();
    let start = tokio::time::Instant::now();
    assert_eq!(m.wait_healthy(&ok.id, &to).await.unwrap(), Ok(()));
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "on the paused clock, exactly"
    );
    assert!(matches!(
        m.wait_healthy(&bad.id, &to).await.unwrap(),
        Err(Failure::Unhealthy(_))
    ));
    assert_eq!(
        m.wait_healthy(&slow.id, &to).await.unwrap(),
        Err(Failure::StartTimeout)
    );
    assert_eq!(start.elapsed(), to.start);
    assert!(m.launch(&svc(), &Revision::new("x", ""), 1).await.is_ok());
    m.set_faults("nope", Faults::launch_fails());
    assert!(m
        .launch(&svc(), &Revision::new("nope", ""), 1)
        .await
        .is_err());
    assert_eq!(m.counts("nope").faults, 1);
}

#[tokio::test(start_paused = true)]
async fn crashes_and_late_unhealth_are_seen_by_watch_failures() {
    let m = MockCluster::new();
    m.set_faults("c", Faults::crash_after(Duration::from_secs(7)));
    m.set_faults("u", Faults::unhealthy_after(Duration::from_secs(10)));
    let c = m
        .launch(&svc(), &Revision::new("c", ""), 1)
        .await
        .unwrap()
        .remove(0);
    let u = m
        .launch(&svc(), &Revision::new("u", ""), 1)
        .await
        .unwrap()
        .remove(0);
    let ids = [c.id.clone(), u.id.clone()];
    assert_eq!(
        m.watch_failures(&ids, Duration::from_secs(5))
            .await
            .unwrap(),
        None
    );
    let (id, f) = m
        .watch_failures(&ids, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, c.id);
    assert!(matches!(f, Failure::Exited(_)));
    let (id, f) = m
        .watch_failures(&ids[1..], Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(id, u.id);
    assert!(matches!(f, Failure::Unhealthy(_)));
    // healthy at 2 s, unhealthy 10 s later
    assert_eq!(m.elapsed(), Duration::from_secs(12));
}

#[tokio::test(start_paused = true)]
async fn a_drain_waits_for_the_long_requests_and_a_timeout_cuts_them() {
    let m = MockCluster::with_requests(RequestModel {
        short: Duration::from_millis(100),
        long: Duration::from_secs(8),
        long_every: 2,
    });
    m.seed(&svc(), "v1", 2, false);
    let list = m.instances(&svc()).await.unwrap();
    let all = RouteChange {
        set: list
            .iter()
            .map(|i| Route {
                target: t(i),
                weight: 1,
            })
            .collect(),
        remove: vec![],
    };
    m.apply(&all).await.unwrap();
    let out = RouteChange {
        set: vec![],
        remove: list.iter().map(t).collect(),
    };
    let ticket = m.apply(&out).await.unwrap();
    assert_eq!(m.counts("v1").draining, 2);
    let r = m.drain(&ticket, Duration::from_secs(30)).await.unwrap();
    assert_eq!(r.elapsed, Duration::from_secs(8));
    assert_eq!(r.waited_for.len(), 2);
    assert!(!r.timed_out);
    // Again, with a drain timeout shorter than the long request.
    m.apply(&all).await.unwrap();
    let ticket = m.apply(&out).await.unwrap();
    let r = m.drain(&ticket, Duration::from_secs(1)).await.unwrap();
    assert!(r.timed_out);
    assert_eq!(r.cut.len(), 1, "{r:?}");
    assert_eq!(m.counts("v1").drain_cut, 1);
    assert_eq!(m.counts("v1").draining, 0);
}

#[tokio::test(start_paused = true)]
async fn a_service_route_covers_what_runs_when_applied() {
    let m = MockCluster::new();
    m.seed(&svc(), "v1", 2, true);
    assert_eq!(m.counts("v1").routed, 2);
    let late = m
        .launch(&svc(), &Revision::new("v2", ""), 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(
        m.counts("v2").routed,
        0,
        "nginx resolved the name before it ran"
    );
    // Any reload resolves the name again: the unready instance joins.
    m.apply(&RouteChange {
        set: vec![Route {
            target: Target::Service { name: "app".into() },
            weight: 2,
        }],
        remove: vec![],
    })
    .await
    .unwrap();
    assert_eq!(m.counts("v2").routed, 1);
    assert_eq!(m.counts("v2").joined_unready, 1);
    assert_eq!(m.counts("v1").weight, 4);
    let _ = late;
}

#[tokio::test(start_paused = true)]
async fn the_router_refuses_what_nginx_would() {
    let m = MockCluster::new();
    m.seed(&svc(), "v1", 1, false);
    let i = m.instances(&svc()).await.unwrap().remove(0);
    let zero = RouteChange {
        set: vec![Route {
            target: t(&i),
            weight: 0,
        }],
        remove: vec![],
    };
    assert!(matches!(
        m.apply(&zero).await,
        Err(RouterError::Invalid { .. })
    ));
    let ghost = RouteChange {
        set: vec![Route {
            target: Target::instance("m99".into(), "ghost"),
            weight: 1,
        }],
        remove: vec![],
    };
    let e = m.apply(&ghost).await.unwrap_err().to_string();
    assert!(e.contains("host not found in upstream \"ghost\""), "{e}");
    assert!(
        m.route_table().is_empty(),
        "a refused change changes nothing"
    );
    assert!(
        m.remove(&i.id).await.is_err(),
        "running instances are not removed"
    );
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_instances_keep_entries_small() {
    let m = MockCluster::new();
    m.seed(&svc(), "v1", 10_000, true);
    m.launch(&svc(), &Revision::new("v2", ""), 1).await.unwrap();
    m.with_timeline(|tl| {
        let last = tl.entries.last().unwrap();
        assert_eq!(last.counts.len(), 2, "one count block per revision");
        assert!(last.routed_set.is_none(), "full sets only on request");
        assert_eq!(last.counts[0].routed, 10_000);
    });
    m.record_sets(true);
    m.launch(&svc(), &Revision::new("v2", ""), 1).await.unwrap();
    assert_eq!(
        m.timeline()
            .entries
            .last()
            .unwrap()
            .routed_set
            .as_ref()
            .unwrap()
            .len(),
        10_000
    );
}

#[tokio::test(start_paused = true)]
async fn the_journal_lock_says_who_holds_it() {
    let j = MemoryJournal::new();
    j.lock(&svc(), "bob@box pid 7").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let e = j.lock(&svc(), "eve").await.unwrap_err().to_string();
    assert!(e.contains("held by bob@box pid 7 since 0.000s"), "{e}");
    assert!(e.contains("\nhint: "), "{e}");
    j.unlock(&svc()).await.unwrap();
    j.lock(&svc(), "eve").await.unwrap();
}
