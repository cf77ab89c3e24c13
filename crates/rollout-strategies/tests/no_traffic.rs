//! A service with no proxy in front (a queue worker) rolled on the mock
//! with the [`NoTraffic`] router: the mock runs the instances and nothing
//! routes them. What serves is what runs and is healthy, so the floor is
//! checked on the ready count of every change the mock saw.

use rollout_core::config::{FailureAction, Order};
use rollout_core::event::EventSink;
use rollout_core::{
    Event, Outcome, Plan, Revision, RolloutContext, ServiceRef, Strategy, StrategyKind,
};
use rollout_mock::{Faults, MemoryJournal, MockCluster};
use rollout_strategies::{BlueGreen, Canary, NoTraffic, Rolling};
use std::sync::Arc;
use std::time::Duration;

const OLD: &str = "rev-old";
const NEW: &str = "rev-new";

struct Worker {
    mock: Arc<MockCluster>,
    service: ServiceRef,
    mark: usize,
}

/// `replicas` healthy instances of OLD that nothing routes.
fn worker(replicas: usize) -> Worker {
    let mock = MockCluster::new();
    let service = ServiceRef::new("shop", "worker");
    mock.add_service(&service);
    mock.seed(&service, OLD, replicas, false);
    let mark = mock.mark();
    Worker {
        mock,
        service,
        mark,
    }
}

fn plan(w: &Worker, replicas: usize, order: Order) -> Plan {
    let mut p = Plan::new(w.service.clone(), Revision::new(NEW, "worker:2"), replicas);
    p.update.parallelism = 1;
    p.update.order = order;
    p.update.monitor = Duration::from_secs(3);
    p.update.delay = Duration::from_secs(1);
    p
}

async fn run(strategy: &dyn Strategy, w: &Worker, p: &Plan) -> (Outcome, Vec<Event>) {
    let (events, mut rx) = EventSink::channel();
    let ctx = RolloutContext {
        router: Arc::new(NoTraffic::new(&w.service.service)),
        journal: Arc::new(MemoryJournal::new()),
        events,
        ..w.mock.context()
    };
    let outcome = strategy.run(&ctx, p).await;
    drop(ctx);
    let mut seen = Vec::new();
    while let Ok(e) = rx.try_recv() {
        seen.push(e);
    }
    (outcome, seen)
}

/// The fewest running, healthy instances at any change since the mark.
fn lowest_ready(w: &Worker) -> u32 {
    w.mock.with_timeline(|t| {
        t.entries
            .iter()
            .skip(w.mark)
            .map(|e| e.counts.iter().map(|c| c.ready).sum::<u32>())
            .min()
            .unwrap_or(0)
    })
}

fn revisions(w: &Worker) -> Vec<String> {
    w.mock
        .snapshot()
        .into_iter()
        .filter(|v| !v.removed)
        .map(|v| v.instance.revision)
        .collect()
}

fn no_traffic_events(events: &[Event]) {
    for e in events {
        assert!(
            !matches!(e, Event::TrafficChanged { .. } | Event::Drained { .. }),
            "a worker has no traffic to change or drain, yet: {e:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn stop_first_replaces_every_worker_one_at_a_time() {
    let w = worker(3);
    let p = plan(&w, 3, Order::StopFirst);
    let (outcome, events) = run(&Rolling, &w, &p).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(revisions(&w), [NEW, NEW, NEW]);
    // parallelism 1, stop-first: one below the desired count at most.
    assert_eq!(StrategyKind::Rolling.floor(&p), 2);
    assert_eq!(lowest_ready(&w), 2);
    no_traffic_events(&events);
    let stopped = events
        .iter()
        .filter(|e| matches!(e, Event::InstanceStopped { .. }))
        .count();
    assert_eq!(stopped, 3);
}

#[tokio::test(start_paused = true)]
async fn start_first_never_runs_fewer_than_desired() {
    let w = worker(3);
    let p = plan(&w, 3, Order::StartFirst);
    let (outcome, events) = run(&Rolling, &w, &p).await;
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(revisions(&w), [NEW, NEW, NEW]);
    assert_eq!(lowest_ready(&w), 3);
    no_traffic_events(&events);
}

#[tokio::test(start_paused = true)]
async fn a_failing_worker_is_rolled_back_by_failure_action() {
    let w = worker(3);
    w.mock.set_faults(NEW, Faults::never_healthy());
    let mut p = plan(&w, 3, Order::StartFirst);
    p.update.failure_action = FailureAction::Rollback;
    let (outcome, events) = run(&Rolling, &w, &p).await;
    assert!(matches!(outcome, Outcome::RolledBack(_)), "{outcome:?}");
    assert_eq!(revisions(&w), [OLD, OLD, OLD]);
    assert_eq!(lowest_ready(&w), 3);
    no_traffic_events(&events);
}

#[tokio::test(start_paused = true)]
async fn a_second_run_on_the_target_changes_nothing() {
    let w = worker(2);
    let p = plan(&w, 2, Order::StopFirst);
    assert_eq!(run(&Rolling, &w, &p).await.0, Outcome::Completed);
    let before = w.mock.mark();
    assert_eq!(run(&Rolling, &w, &p).await.0, Outcome::NoChange);
    assert_eq!(w.mock.mark(), before, "the second run changed something");
}

#[tokio::test(start_paused = true)]
async fn strategies_that_move_traffic_are_refused_before_anything_changes() {
    for strategy in [&BlueGreen as &dyn Strategy, &Canary] {
        let w = worker(2);
        let p = plan(&w, 2, Order::StartFirst);
        let (outcome, _) = run(strategy, &w, &p).await;
        match outcome {
            Outcome::Failed(why) => assert!(why.contains("moves traffic"), "{why}"),
            other => panic!("{} ran without traffic: {other:?}", strategy.name()),
        }
        assert_eq!(
            w.mock.mark(),
            w.mark,
            "{} changed something",
            strategy.name()
        );
    }
}
