//! Bugs reported by the people who wired and tested the plugin, each shown on
//! the mock: a two-colour rollback that removed the idle colour's containers
//! from before the rollout, a completed-with-failures message that named the
//! wrong failure_action, a blue-green switch whose drain went unreported, and
//! journal saves from parallel workers landing out of order.

mod common;
use async_trait::async_trait;
use common::*;
use rollout_core::journal::JournalRecord;
use rollout_core::strategy::{Cancel, TrafficLayout};
use rollout_core::{JournalError, Outcome, Plan, ServiceRef, Strategy, Target};
use rollout_mock::Faults;
use rollout_strategies::{BlueGreen, Canary};
use std::time::Duration;

/// The running, not removed instances of `service`, by id.
fn running_ids(e: &Env, service: &ServiceRef) -> Vec<String> {
    e.mock
        .snapshot()
        .into_iter()
        .filter(|v| {
            !v.removed
                && v.instance.service == *service
                && v.instance.state == rollout_core::InstanceState::Running
        })
        .map(|v| v.instance.id.0)
        .collect()
}

/// Runs `strategy`, pressing Ctrl-C once at `after` when given.
async fn run_maybe_cancelled(
    strategy: &dyn Strategy,
    e: &Env,
    p: &Plan,
    after: Option<Duration>,
) -> Outcome {
    let (handle, cancel) = Cancel::new();
    let (ctx, _rx) = ctx(e, cancel);
    let press = async {
        match after {
            Some(d) => {
                tokio::time::sleep(d).await;
                handle.escalate();
            }
            None => drop(handle),
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        o = strategy.run(&ctx, p) => o,
        _ = press => unreachable!(),
    }
}

#[tokio::test(start_paused = true)]
async fn a_two_colour_rollback_keeps_what_the_idle_colour_ran_before() {
    // Green, the idle colour, already runs two ready instances of the target
    // (a switch back to blue left them there); the rollout to green launches
    // the third. Whether it is interrupted or a new instance fails, only the
    // third goes: the two from before stay as they were, and traffic is back
    // on blue.
    for strategy in [&Canary as &dyn Strategy, &BlueGreen] {
        for cancelled in [true, false] {
            let name = format!(
                "{} {}",
                strategy.name(),
                if cancelled { "ctrl-c" } else { "failure" }
            );
            let (mut e, layout) = colours_env(3, false);
            e.mock.seed(&e.service, NEW, 2, false);
            e.mark = e.mock.mark();
            let before = running_ids(&e, &e.service);
            assert_eq!(before.len(), 2);
            let TrafficLayout::Colours { other: blue, .. } = &layout else {
                unreachable!()
            };
            let blue_before = running_ids(&e, blue);
            let mut p = plan(&e, 3);
            p.layout = layout.clone();
            let after = if cancelled {
                // Inside the first canary hold; inside blue-green's monitor
                // window (healthy at 2 s, switched, watched for 5 s).
                Some(Duration::from_secs(if strategy.name() == "canary" {
                    15
                } else {
                    4
                }))
            } else {
                // The launched instance dies after it was switched to.
                e.mock
                    .set_faults(NEW, Faults::crash_after(Duration::from_secs(4)));
                None
            };
            let o = run_maybe_cancelled(strategy, &e, &p, after).await;
            if cancelled {
                assert_eq!(o, Outcome::Interrupted(true), "{name}");
            } else {
                assert!(matches!(o, Outcome::RolledBack(_)), "{name}: {o:?}");
            }
            assert_eq!(
                running_ids(&e, &e.service),
                before,
                "{name}: green's instances from before the rollout were removed, or the launched one kept"
            );
            assert_eq!(running_ids(&e, blue), blue_before, "{name}: blue changed");
            assert_eq!(
                e.mock.route_table().len(),
                1,
                "{name}: {:?}",
                e.mock.route_table()
            );
            assert_eq!(
                e.mock.route_table()[0].target,
                Target::Service {
                    name: blue.service.clone()
                },
                "{name}: traffic not back on blue"
            );
            assert_clean(&e, &p, strategy.name(), &o);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn completed_with_failures_says_what_happened() {
    use rollout_core::config::{FailureAction, Order};
    use rollout_core::Event;
    // One of four slots fails (25 %): under a max_failure_ratio of 0.5 no
    // action fires, whatever it is; with a ratio of 0 only continue lets the
    // rollout complete.
    for (action, ratio, word) in [
        (FailureAction::Rollback, 0.5, "rollback"),
        (FailureAction::Pause, 0.5, "pause"),
        (FailureAction::Continue, 0.5, "continue"),
        (FailureAction::Continue, 0.0, "continue"),
    ] {
        let e = env(4);
        e.mock
            .set_faults(NEW, Faults::never_healthy().only_first(1));
        let mut p = plan(&e, 4);
        p.update.order = Order::StartFirst;
        p.update.failure_action = action;
        p.update.max_failure_ratio = ratio;
        let (o, events) = run(&rollout_strategies::Rolling, &e, &p).await;
        let Outcome::CompletedWithFailures(msg) = &o else {
            panic!("{word} {ratio}: {o:?}")
        };
        let failed = events
            .iter()
            .find_map(|ev| match ev {
                Event::FailureCounted { instance, .. } => Some(instance.0.clone()),
                _ => None,
            })
            .expect("a failure was counted");
        assert!(msg.starts_with("1 of 4 slots failed"), "{msg}");
        assert!(msg.contains(&format!("failure_action {word}")), "{msg}");
        assert!(msg.contains(&format!("max_failure_ratio {ratio}")), "{msg}");
        if ratio > 0.0 {
            assert!(msg.contains("within max_failure_ratio"), "{msg}");
            assert!(!msg.contains("went on"), "{msg}");
        } else {
            assert!(msg.contains("above max_failure_ratio"), "{msg}");
            assert!(msg.contains("continue went on"), "{msg}");
        }
        // Which slot failed, by its instance, and what the service was left
        // with: the failed slot kept its old instance (start-first).
        assert!(msg.contains(&format!("slot 1 ({failed}:")), "{msg}");
        assert!(
            msg.contains(&format!("left: 3 of 4 instances run app:2 ({NEW})")),
            "{msg}"
        );
        assert!(msg.contains(&format!("1 still runs {OLD}")), "{msg}");
        assert_eq!(e.mock.counts(NEW).ready, 3);
        assert_eq!(e.mock.counts(OLD).ready, 1);
        assert_clean(&e, &p, "rolling", &o);
    }
}

/// The `Drained` events of a run whose `removed` is `targets` (any order).
fn drains_of(events: &[rollout_core::Event], targets: &[Target]) -> Vec<rollout_core::DrainReport> {
    let mut want = targets.to_vec();
    want.sort();
    events
        .iter()
        .filter_map(|ev| match ev {
            rollout_core::Event::Drained { removed, report } => {
                let mut got = removed.clone();
                got.sort();
                (got == want).then(|| report.clone())
            }
            _ => None,
        })
        .collect()
}

/// The targets the switch took out: the route change just before the
/// weights went to 100 %.
fn switched_out(events: &[rollout_core::Event]) -> Vec<Target> {
    let at = events
        .iter()
        .position(|ev| matches!(ev, rollout_core::Event::WeightsChanged { new_percent: 100 }))
        .expect("a switch");
    events[..at]
        .iter()
        .rev()
        .find_map(|ev| match ev {
            rollout_core::Event::TrafficChanged { removed, .. } => Some(removed.clone()),
            _ => None,
        })
        .expect("a route change before the switch")
}

#[tokio::test(start_paused = true)]
async fn blue_green_reports_the_drain_of_the_old_set_after_the_switch() {
    use rollout_core::Event;
    // Single layout, the old set kept a minute for a switch-back: its drain
    // is reported after the switch, before that minute, and once.
    let e = env(3);
    let mut p = plan(&e, 3);
    p.blue_green.keep_old_for = Some(Duration::from_secs(60));
    let (o, events) = run(&BlueGreen, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    let old = switched_out(&events);
    assert_eq!(old.len(), 3, "{old:?}");
    let drains = drains_of(&events, &old);
    assert_eq!(
        drains.len(),
        1,
        "the old set's drain reported once: {events:?}"
    );
    assert!(!drains[0].waited_for.is_empty(), "{:?}", drains[0]);
    let switch = events
        .iter()
        .position(|ev| matches!(ev, Event::WeightsChanged { new_percent: 100 }))
        .expect("switched");
    let drained = events
        .iter()
        .position(|ev| matches!(ev, Event::Drained { .. }))
        .unwrap();
    let stopped = events
        .iter()
        .position(|ev| matches!(ev, Event::InstanceStopped { .. }))
        .unwrap();
    assert!(switch < drained && drained < stopped);
    assert_clean(&e, &p, "blue-green", &o);

    // Interrupted during that minute: the drain was reported already.
    let e = env(3);
    let (handle, cancel) = Cancel::new();
    let (ctx, mut rx) = ctx(&e, cancel);
    let o = tokio::select! {
        o = BlueGreen.run(&ctx, &p) => o,
        _ = async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            handle.escalate();
            std::future::pending::<()>().await
        } => unreachable!(),
    };
    assert_eq!(o, Outcome::Interrupted(true));
    drop(ctx);
    let mut events = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    let rollback = events
        .iter()
        .position(|ev| matches!(ev, Event::RollbackStarted { .. }))
        .expect("rolled back");
    let old = switched_out(&events);
    assert_eq!(
        drains_of(&events[..rollback], &old).len(),
        1,
        "no drain of the old set reported before the rollback: {events:?}"
    );
    assert_clean(&e, &p, "blue-green", &o);

    // Two colours, the other one kept running: its drain is reported too.
    let (e, layout) = colours_env(3, false);
    let mut p = plan(&e, 3);
    p.layout = layout;
    let (o, events) = run(&BlueGreen, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    let blue = vec![Target::Service {
        name: "blue".into(),
    }];
    assert_eq!(switched_out(&events), blue);
    let drains = drains_of(&events, &blue);
    assert_eq!(drains.len(), 1, "{events:?}");
    assert!(!drains[0].waited_for.is_empty(), "{:?}", drains[0]);
    assert_clean(&e, &p, "blue-green", &o);
}
/// A journal that takes a while to store a record, longer for some saves
/// than for others, as a journal kept by the engine does; it remembers every
/// record in the order it landed.
#[derive(Default)]
struct Slow {
    calls: std::sync::atomic::AtomicU64,
    landed: std::sync::Mutex<Vec<JournalRecord>>,
}

#[async_trait]
impl SaveHook for Slow {
    async fn before_save(&self, r: &JournalRecord) -> Result<(), JournalError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // 0, 70, 140, 0, 70, ... ms: a save that starts later may land first.
        tokio::time::sleep(Duration::from_millis(70 * (n % 3))).await;
        self.landed.lock().unwrap().push(r.clone());
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn journal_saves_of_parallel_workers_never_go_backwards() {
    use rollout_core::config::{FailureAction, Order};
    // Four workers, every new instance fails its health check at the same
    // moment: four failures counted at once, each saved, on a journal whose
    // saves take different times. The record that lands must never count
    // fewer failures than one that landed before it, nor lose a key.
    for order in [Order::StartFirst, Order::StopFirst] {
        let e = env(8);
        let journal = HookedJournal::new(Slow::default());
        e.mock.set_faults(NEW, Faults::never_healthy());
        let mut p = plan(&e, 8);
        p.update.parallelism = 4;
        p.update.order = order;
        p.update.failure_action = FailureAction::Continue;
        let (mut c, _rx) = ctx(&e, Cancel::never());
        c.journal = journal.clone();
        let o = rollout_strategies::Rolling.run(&c, &p).await;
        assert!(matches!(o, Outcome::CompletedWithFailures(_)), "{o:?}");
        let landed = journal.hook.landed.lock().unwrap().clone();
        assert!(landed.len() > 8, "{} saves", landed.len());
        let failures = |r: &JournalRecord| r.state.get("failures").and_then(|v| v.as_u64());
        assert_eq!(
            landed.iter().filter_map(failures).max(),
            Some(8),
            "every failure saved"
        );
        for pair in landed.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(
                failures(b) >= failures(a),
                "{order:?}: the journal went back from {:?} to {:?} failures",
                failures(a),
                failures(b)
            );
            let keys = |r: &JournalRecord| {
                r.state
                    .as_object()
                    .map(|m| m.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            for k in keys(a) {
                assert!(keys(b).contains(&k), "{order:?}: {k} lost from the record");
            }
        }
    }
}
