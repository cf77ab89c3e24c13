//! Swarm's rules for update_config, shown on the mock: how failures are
//! counted, what parallelism and delay mean, the final watch, and rollback.

mod common;
use common::*;
use rollout_core::config::{FailureAction, Order};
use rollout_core::journal::Phase;
use rollout_core::{exit, Event, Outcome, Revision};
use rollout_mock::{Change, Faults};
use rollout_strategies::Rolling;
use std::time::Duration;

fn failures(events: &[Event]) -> Vec<usize> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::FailureCounted { failures, .. } => Some(*failures),
            _ => None,
        })
        .collect()
}

fn launched_of(e: &Env, rev: &str) -> usize {
    e.mock
        .snapshot()
        .iter()
        .filter(|v| v.instance.revision == rev)
        .count()
}

#[tokio::test(start_paused = true)]
async fn ten_tasks_with_ratio_0_2_act_on_the_third_failure() {
    let e = env(10);
    e.mock.set_faults(NEW, Faults::never_healthy());
    let mut p = plan(&e, 10);
    p.update.max_failure_ratio = 0.2;
    p.update.order = Order::StartFirst;
    let (o, events) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::Paused(_)), "{o:?}");
    assert_eq!(o.exit_code(), exit::PAUSED);
    // 1/10 and 2/10 are not strictly greater than 0.2; 3/10 is.
    assert_eq!(failures(&events), vec![1, 2, 3]);
    assert_eq!(
        launched_of(&e, NEW),
        3,
        "no slot dispatched after the third failure"
    );
    assert_clean(&e, &p, "rolling", &o);
    let record = e
        .journal
        .record(&e.service)
        .expect("a paused update keeps its journal");
    assert_eq!(record.phase, Phase::Paused);
}

#[tokio::test(start_paused = true)]
async fn failures_within_the_ratio_let_the_update_finish() {
    let e = env(10);
    e.mock
        .set_faults(NEW, Faults::never_healthy().only_first(2));
    let mut p = plan(&e, 10);
    p.update.max_failure_ratio = 0.2;
    p.update.order = Order::StartFirst;
    let (o, events) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::CompletedWithFailures(_)), "{o:?}");
    assert_eq!(failures(&events), vec![1, 2]);
    assert_clean(&e, &p, "rolling", &o);
}

#[tokio::test(start_paused = true)]
async fn a_failure_counts_only_within_monitor_of_becoming_healthy() {
    for (crash, counted) in [(4, true), (60, false)] {
        let e = env(3);
        e.mock.set_faults(
            NEW,
            Faults::crash_after(Duration::from_secs(crash)).only_first(1),
        );
        let mut p = plan(&e, 3);
        p.update.order = Order::StartFirst;
        p.update.failure_action = FailureAction::Rollback;
        let (o, events) = run(&Rolling, &e, &p).await;
        assert_eq!(
            failures(&events).len(),
            usize::from(counted),
            "crash at {crash}s: {o:?}"
        );
        if counted {
            assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
            assert_eq!(o.exit_code(), exit::ROLLED_BACK);
        } else {
            assert_eq!(o, Outcome::Completed);
        }
        assert_clean(&e, &p, "rolling", &o);
    }
}

#[tokio::test(start_paused = true)]
async fn each_failure_is_counted_once() {
    let e = env(4);
    e.mock
        .set_faults(NEW, Faults::unhealthy_after(Duration::from_secs(1)));
    let mut p = plan(&e, 4);
    p.update.order = Order::StartFirst;
    p.update.failure_action = FailureAction::Continue;
    let (o, events) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::CompletedWithFailures(_)), "{o:?}");
    let ids: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::FailureCounted { instance, .. } => Some(instance.clone()),
            _ => None,
        })
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    assert_eq!(
        unique.len(),
        ids.len(),
        "an instance counted twice: {ids:?}"
    );
    assert_clean(&e, &p, "rolling", &o);
}

#[tokio::test(start_paused = true)]
async fn parallelism_is_a_number_of_workers_not_lockstep_batches() {
    let e = env(6);
    // The first new instance takes 30 s to start; the others 2 s.
    e.mock.set_faults(
        NEW,
        Faults::slow_start(Duration::from_secs(30)).only_first(1),
    );
    let mut p = plan(&e, 6);
    p.update.parallelism = 2;
    p.update.order = Order::StartFirst;
    let (o, _) = run(&Rolling, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "rolling", &o);
    let tl = e.mock.timeline();
    let new = tl.rev_index(NEW).unwrap();
    let slow = tl
        .entries
        .iter()
        .position(|x| matches!(&x.change, Change::Healthy(_)) && x.at >= Duration::from_secs(30))
        .expect("the slow instance became healthy");
    // While one worker waited for the slow start, the other went on.
    assert!(tl.entries[slow - 1].rev(new).ready >= 3, "{}", tl.render(0));
    // Never more than two starting at once.
    let most = tl
        .entries
        .iter()
        .map(|x| x.rev(new).running - x.rev(new).ready)
        .max()
        .unwrap();
    assert_eq!(most, 2);
}

#[tokio::test(start_paused = true)]
async fn delay_applies_per_worker_after_each_slot() {
    let e = env(3);
    let mut p = plan(&e, 3);
    p.update.delay = Duration::from_secs(10);
    p.update.order = Order::StartFirst;
    let (o, _) = run(&Rolling, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    let tl = e.mock.timeline();
    let launches: Vec<Duration> = tl
        .entries
        .iter()
        .filter(|x| matches!(x.change, Change::Launched(_)) && x.at > Duration::ZERO)
        .map(|x| x.at)
        .collect();
    assert_eq!(launches.len(), 2, "{}", tl.render(0));
    for w in launches.windows(2) {
        assert!(w[1] - w[0] >= Duration::from_secs(10), "{launches:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_last_slot_is_watched_after_the_workers_finish() {
    // swarmkit#3003: with delay >= monitor, a failure of the last task
    // went unseen because the update ended before its monitor window did.
    let e = env(1);
    e.mock
        .set_faults(NEW, Faults::crash_after(Duration::from_secs(5)));
    let mut p = plan(&e, 1);
    p.update.delay = Duration::from_secs(10);
    p.update.monitor = Duration::from_secs(5);
    p.update.order = Order::StartFirst;
    p.update.failure_action = FailureAction::Rollback;
    let (o, _) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    assert_clean(&e, &p, "rolling", &o);
}

#[tokio::test(start_paused = true)]
async fn rollback_uses_rollback_config() {
    let e = env(4);
    e.mock
        .set_faults(NEW, Faults::unhealthy_after(Duration::from_secs(3)));
    let mut p = plan(&e, 4);
    p.update.order = Order::StartFirst;
    p.update.monitor = Duration::from_secs(10);
    p.update.max_failure_ratio = 0.3;
    p.update.failure_action = FailureAction::Rollback;
    p.rollback.parallelism = 0;
    p.rollback.order = Order::StartFirst;
    let (o, events) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::RollbackStarted { .. })));
    assert_clean(&e, &p, "rolling", &o);
    // The rollback started its old instances side by side (parallelism 0).
    let tl = e.mock.timeline();
    let old = tl.rev_index(OLD).unwrap();
    let most = tl
        .entries
        .iter()
        .map(|x| x.rev(old).running - x.rev(old).ready)
        .max()
        .unwrap();
    assert!(most >= 2, "{}", tl.render(0));
}

#[tokio::test(start_paused = true)]
async fn a_rollback_is_never_rolled_back() {
    let e = env(3);
    e.mock.set_faults(NEW, Faults::never_healthy());
    // Old instances launched again by the rollback fail too.
    e.mock.set_faults(OLD, Faults::never_healthy());
    let mut p = plan(&e, 3);
    p.update.failure_action = FailureAction::Rollback;
    p.rollback.failure_action = FailureAction::Rollback;
    let (o, _) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::RollbackFailed(_)), "{o:?}");
    assert_eq!(o.exit_code(), exit::ROLLBACK_FAILED);
    let record = e.journal.record(&e.service).expect("kept for a person");
    assert_eq!(record.phase, Phase::RollingBack);
    assert_clean(&e, &p, "rolling", &o);
}

#[tokio::test(start_paused = true)]
async fn a_new_target_after_a_pause_keeps_the_first_rollback_target() {
    // moby#37693: resuming a paused update overwrote the previous spec.
    let e = env(3);
    e.mock
        .set_faults(NEW, Faults::never_healthy().only_first(1));
    let p = plan(&e, 3);
    let (o, _) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::Paused(_)), "{o:?}");
    let third = "rev-third";
    e.mock.set_faults(third, Faults::never_healthy());
    let mut p3 = p.clone();
    p3.target = Revision::new(third, "app:3");
    p3.update.failure_action = FailureAction::Rollback;
    let (o, _) = run(&Rolling, &e, &p3).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    let running: Vec<String> = e
        .mock
        .snapshot()
        .into_iter()
        .filter(|v| !v.removed)
        .map(|v| v.instance.revision)
        .collect();
    assert_eq!(
        running,
        vec![OLD; 3],
        "back to the revision before the first attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn running_again_after_a_pause_continues_toward_the_target() {
    let e = env(4);
    e.mock
        .set_faults(NEW, Faults::never_healthy().only_first(1));
    let mut p = plan(&e, 4);
    p.update.order = Order::StartFirst;
    let (o, _) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::Paused(_)), "{o:?}");
    assert_clean(&e, &p, "rolling", &o);
    // The transient fault is gone; the same command resumes.
    let (o, events) = run(&Rolling, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert!(matches!(
        events[0],
        Event::RolloutStarted { resumed: true, .. }
    ));
    assert!(failures(&events).is_empty(), "a pause resets the count");
    assert_clean(&e, &p, "rolling", &o);
}
