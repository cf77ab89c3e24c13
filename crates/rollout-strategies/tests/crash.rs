//! A crash injected before every single operation of a rollout (and so
//! after every event it emits): the running future is dropped there, as a
//! SIGKILL would end the process, and the strategy is run again with the
//! same mock state and journal. Every resumed run must end in a state that
//! passes the invariants, and the whole timeline (first run, crash, second
//! run) must keep invariants 1, 2 and 4 at every change.

mod common;
use async_trait::async_trait;
use common::*;
use rollout_core::backend::{Diagnostics, Failure};
use rollout_core::config::{FailureAction, Order, Timeouts};
use rollout_core::event::EventSink;
use rollout_core::journal::JournalRecord;
use rollout_core::router::{DrainReport, DrainTicket};
use rollout_core::strategy::Cancel;
use rollout_core::{
    Backend, BackendError, Instance, InstanceId, Journal, JournalError, Outcome, Plan, Revision,
    RolloutContext, Route, RouteChange, RouterError, ServiceRef, Strategy, TrafficRouter,
};
use rollout_mock::{Faults, MemoryJournal, MockCluster};
use rollout_strategies::{BlueGreen, Canary, Rolling};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Wraps the mock and the journal; the `at`-th operation never returns.
struct Trip {
    mock: Arc<MockCluster>,
    journal: Arc<MemoryJournal>,
    ops: AtomicUsize,
    at: usize,
    tripped: Notify,
}

impl Trip {
    async fn gate(&self) {
        let n = self.ops.fetch_add(1, Ordering::SeqCst);
        if n == self.at {
            self.tripped.notify_one();
            std::future::pending::<()>().await;
        }
    }
}

#[async_trait]
impl Backend for Trip {
    async fn instances(&self, s: &ServiceRef) -> Result<Vec<Instance>, BackendError> {
        self.gate().await;
        self.mock.instances(s).await
    }
    async fn launch(
        &self,
        s: &ServiceRef,
        r: &Revision,
        n: usize,
    ) -> Result<Vec<Instance>, BackendError> {
        self.gate().await;
        self.mock.launch(s, r, n).await
    }
    async fn wait_healthy(
        &self,
        i: &InstanceId,
        t: &Timeouts,
    ) -> Result<Result<(), Failure>, BackendError> {
        self.gate().await;
        self.mock.wait_healthy(i, t).await
    }
    async fn watch_failures(
        &self,
        i: &[InstanceId],
        w: Duration,
    ) -> Result<Option<(InstanceId, Failure)>, BackendError> {
        self.gate().await;
        self.mock.watch_failures(i, w).await
    }
    async fn stop(&self, i: &InstanceId, g: Duration) -> Result<(), BackendError> {
        self.gate().await;
        self.mock.stop(i, g).await
    }
    async fn remove(&self, i: &InstanceId) -> Result<(), BackendError> {
        self.gate().await;
        self.mock.remove(i).await
    }
    async fn diagnostics(&self, i: &InstanceId) -> Result<Diagnostics, BackendError> {
        self.gate().await;
        self.mock.diagnostics(i).await
    }
}

#[async_trait]
impl TrafficRouter for Trip {
    async fn routes(&self) -> Result<Vec<Route>, RouterError> {
        self.gate().await;
        self.mock.routes().await
    }
    async fn apply(&self, c: &RouteChange) -> Result<DrainTicket, RouterError> {
        self.gate().await;
        self.mock.apply(c).await
    }
    async fn drain(&self, t: &DrainTicket, d: Duration) -> Result<DrainReport, RouterError> {
        self.gate().await;
        self.mock.drain(t, d).await
    }
}

#[async_trait]
impl Journal for Trip {
    async fn lock(&self, s: &ServiceRef, h: &str) -> Result<(), JournalError> {
        self.gate().await;
        self.journal.lock(s, h).await
    }
    async fn unlock(&self, s: &ServiceRef) -> Result<(), JournalError> {
        self.gate().await;
        self.journal.unlock(s).await
    }
    async fn load(&self, s: &ServiceRef) -> Result<Option<JournalRecord>, JournalError> {
        self.gate().await;
        self.journal.load(s).await
    }
    async fn save(&self, r: &JournalRecord) -> Result<(), JournalError> {
        self.gate().await;
        self.journal.save(r).await
    }
    async fn clear(&self, s: &ServiceRef) -> Result<(), JournalError> {
        self.gate().await;
        self.journal.clear(s).await
    }
}

/// Runs once with the tripwire at `at`; `None` when the run finished first.
async fn first_run(
    strategy: &dyn Strategy,
    e: &Env,
    p: &Plan,
    at: usize,
) -> (Option<Outcome>, usize) {
    let trip = Arc::new(Trip {
        mock: e.mock.clone(),
        journal: e.journal.clone(),
        ops: AtomicUsize::new(0),
        at,
        tripped: Notify::new(),
    });
    let ctx = RolloutContext {
        backend: trip.clone(),
        router: trip.clone(),
        journal: trip.clone(),
        analysis: e.analysis.clone(),
        verifier: None,
        events: EventSink::discard(),
        cancel: Cancel::never(),
        steer: rollout_core::Steer::never(),
    };
    let fut = strategy.run(&ctx, p);
    tokio::pin!(fut);
    let r = tokio::select! {
        o = &mut fut => Some(o),
        _ = trip.tripped.notified() => None,
    };
    (r, trip.ops.load(Ordering::SeqCst))
}

async fn crash_everywhere(
    name: &str,
    strategy: &dyn Strategy,
    setup: impl Fn() -> (Env, Plan),
    accept: impl Fn(&Outcome) -> bool,
) {
    let (e, p) = setup();
    let (o, total) = first_run(strategy, &e, &p, usize::MAX).await;
    let o = o.expect("an untripped run finishes");
    assert!(accept(&o), "{name}: uninterrupted run ended {o:?}");
    assert!(total > 10, "{name}: only {total} operations");
    let mut problems = Vec::new();
    for at in 0..total {
        let (e, p) = setup();
        let (first, _) = first_run(strategy, &e, &p, at).await;
        assert!(first.is_none(), "{name}: the tripwire at {at} did not fire");
        // The crashed process is gone: its lock is stale.
        e.journal.unlock(&e.service).await.unwrap();
        let (o, _) = run(strategy, &e, &p).await;
        if !accept(&o) && o != Outcome::NoChange {
            problems.push(format!("crash before op {at}: resumed run ended {o:?}"));
        }
        let v = violations(&e, &p, strategy.name(), &o);
        if !v.is_empty() && std::env::var("DUMP").is_ok() {
            eprintln!("{}", e.mock.with_timeline(|t| t.render(0)));
        }
        if !v.is_empty() {
            problems.push(format!("crash before op {at} then {o:?}: {}", v.join("; ")));
        }
        if e.journal.record(&e.service).is_some() {
            problems.push(format!("crash before op {at}: journal left after {o:?}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{name} ({total} crash points):\n{}",
        problems.join("\n")
    );
}

#[tokio::test(start_paused = true)]
async fn rolling_start_first_resumes_from_any_crash() {
    crash_everywhere(
        "rolling start-first",
        &Rolling,
        || {
            let e = env(3);
            let mut p = plan(&e, 3);
            p.update.order = Order::StartFirst;
            (e, p)
        },
        |o| *o == Outcome::Completed,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rolling_rollback_resumes_from_any_crash() {
    crash_everywhere(
        "rolling stop-first, failing revision, rollback",
        &Rolling,
        || {
            let e = env(3);
            e.mock.set_faults(NEW, Faults::never_healthy());
            let mut p = plan(&e, 3);
            p.update.parallelism = 2;
            p.update.failure_action = FailureAction::Rollback;
            (e, p)
        },
        |o| matches!(o, Outcome::RolledBack(_)),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_resumes_from_any_crash() {
    crash_everywhere(
        "blue-green",
        &BlueGreen,
        || {
            let e = env(3);
            let p = plan(&e, 3);
            (e, p)
        },
        |o| *o == Outcome::Completed,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn canary_resumes_from_any_crash() {
    crash_everywhere(
        "canary",
        &Canary,
        || {
            let e = env(3);
            let p = plan(&e, 3);
            (e, p)
        },
        |o| *o == Outcome::Completed,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn canary_colours_resumes_from_any_crash() {
    crash_everywhere(
        "canary colours",
        &Canary,
        || {
            let (e, layout) = colours_env(3, true);
            let mut p = plan(&e, 3);
            p.layout = layout;
            (e, p)
        },
        |o| *o == Outcome::Completed,
    )
    .await;
}

/// The brief's own wording: drop the running future right after it emitted
/// its `k`-th event (at its next await), for every `k`.
async fn crash_after_every_event(
    name: &str,
    strategy: &dyn Strategy,
    setup: impl Fn() -> (Env, Plan),
    accept: impl Fn(&Outcome) -> bool,
) {
    let (e, p) = setup();
    let (_, events) = run(strategy, &e, &p).await;
    let total = events.len();
    assert!(total > 10, "{name}: only {total} events");
    let mut problems = Vec::new();
    for k in 1..total {
        let (e, p) = setup();
        let (ctx, mut rx) = ctx(&e, Cancel::never());
        {
            let fut = strategy.run(&ctx, &p);
            tokio::pin!(fut);
            let mut seen = 0;
            loop {
                tokio::select! {
                    biased;
                    Some(_) = rx.recv() => {
                        seen += 1;
                        if seen == k {
                            break;
                        }
                    }
                    // The last events come with no await after them: the
                    // run ends before the crash could land.
                    _ = &mut fut => break,
                }
            }
        }
        e.journal.unlock(&e.service).await.unwrap();
        let (o, _) = run(strategy, &e, &p).await;
        if !accept(&o) && o != Outcome::NoChange {
            problems.push(format!("crash after event {k}: resumed run ended {o:?}"));
        }
        let v = violations(&e, &p, strategy.name(), &o);
        if !v.is_empty() {
            problems.push(format!(
                "crash after event {k} then {o:?}: {}",
                v.join("; ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{name} ({total} events):\n{}",
        problems.join("\n")
    );
}

#[tokio::test(start_paused = true)]
async fn every_strategy_resumes_after_a_crash_after_any_event() {
    crash_after_every_event(
        "rolling start-first, parallelism 2",
        &Rolling,
        || {
            let e = env(4);
            let mut p = plan(&e, 4);
            p.update.order = Order::StartFirst;
            p.update.parallelism = 2;
            (e, p)
        },
        |o| *o == Outcome::Completed,
    )
    .await;
    crash_after_every_event(
        "rolling, crash during monitor, rollback",
        &Rolling,
        || {
            let e = env(3);
            e.mock
                .set_faults(NEW, Faults::crash_after(Duration::from_secs(4)));
            let mut p = plan(&e, 3);
            p.update.failure_action = FailureAction::Rollback;
            (e, p)
        },
        |o| matches!(o, Outcome::RolledBack(_)),
    )
    .await;
    crash_after_every_event(
        "blue-green colours",
        &BlueGreen,
        || {
            let (e, layout) = colours_env(3, true);
            let mut p = plan(&e, 3);
            p.layout = layout;
            (e, p)
        },
        |o| *o == Outcome::Completed,
    )
    .await;
    crash_after_every_event(
        "blue-green colours, failing analysis after the switch",
        &BlueGreen,
        || {
            let (mut e, layout) = colours_env(3, true);
            e.mock.set_faults(NEW, Faults::error_rate(0.5));
            e.analysis = Some(Arc::new(rollout_mock::ErrorRateAnalysis {
                mock: e.mock.clone(),
                max_rate: 0.1,
            }));
            let mut p = plan(&e, 3);
            p.layout = layout;
            (e, p)
        },
        |o| matches!(o, Outcome::RolledBack(_)),
    )
    .await;
    crash_after_every_event(
        "canary, failing analysis",
        &Canary,
        || {
            let mut e = env(3);
            e.mock.set_faults(NEW, Faults::error_rate(0.5));
            e.analysis = Some(Arc::new(rollout_mock::ErrorRateAnalysis {
                mock: e.mock.clone(),
                max_rate: 0.1,
            }));
            let p = plan(&e, 3);
            (e, p)
        },
        |o| matches!(o, Outcome::RolledBack(_)),
    )
    .await;
}
