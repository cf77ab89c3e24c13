//! The operator steering a running rollout (`docker rollout pause|resume|promote` from another
//! shell): a canary holds at its step with its hold's clock stopped, goes on where it stopped,
//! still rolls back on a failing verdict or an abort while held, and moves on when promoted
//! (after one more verdict); a rolling update holds before its next slot; blue-green before its
//! switch; a rollback is never held.

mod common;
use common::*;
use rollout_core::config::{FailureAction, Order};
use rollout_core::journal::Phase;
use rollout_core::strategy::{CanaryStep, Cancel, Hold, Steer};
use rollout_core::{Event, Outcome, Plan, Strategy};
use rollout_mock::{ErrorRateAnalysis, Faults};
use rollout_strategies::{BlueGreen, Canary, Rolling, PAUSED};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the operator does at a time of the run.
enum Act<'a> {
    Pause,
    Resume,
    Promote {
        full: bool,
    },
    Abort,
    /// Looks at (or changes) the environment.
    Check(Box<dyn Fn() + 'a>),
}

/// Runs `strategy` with the operator's `script` (seconds after the start, in order); the
/// outcome and every event with the second it came.
async fn steered(
    strategy: &dyn Strategy,
    e: &Env,
    p: &Plan,
    script: Vec<(u64, Act<'_>)>,
) -> (Outcome, Vec<(f64, Event)>) {
    let (cancel_handle, cancel) = Cancel::new();
    let (steer_handle, steer) = Steer::new();
    let (mut ctx, mut rx) = ctx(e, cancel);
    ctx.steer = steer;
    let start = Instant::now();
    let run = async move {
        let operator = async {
            for (at, act) in script {
                tokio::time::sleep_until(start + Duration::from_secs(at)).await;
                match act {
                    Act::Pause => steer_handle.pause(),
                    Act::Resume => steer_handle.resume(),
                    Act::Promote { full } => steer_handle.promote(full),
                    Act::Abort => {
                        cancel_handle.escalate();
                    }
                    Act::Check(f) => f(),
                }
            }
            std::future::pending::<()>().await
        };
        let o = tokio::select! {
            o = strategy.run(&ctx, p) => o,
            _ = operator => unreachable!(),
        };
        drop(ctx);
        o
    };
    let collect = async {
        let mut seen = Vec::new();
        while let Some(ev) = rx.recv().await {
            seen.push((start.elapsed().as_secs_f64(), ev));
        }
        seen
    };
    tokio::join!(run, collect)
}

fn first(events: &[(f64, Event)], want: impl Fn(&Event) -> bool) -> Option<(f64, Event)> {
    events.iter().find(|(_, e)| want(e)).cloned()
}

fn weights(events: &[(f64, Event)]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            Event::WeightsChanged { new_percent } => Some(*new_percent),
            _ => None,
        })
        .collect()
}

fn steps(list: &[(u32, u64)]) -> Vec<CanaryStep> {
    list.iter()
        .map(|&(percent, secs)| CanaryStep {
            percent,
            hold: Hold::For(Duration::from_secs(secs)),
        })
        .collect()
}

/// The journal's operator pause now, if any.
fn held_at(e: &Env) -> Option<String> {
    let r = e.journal.record(&e.service)?;
    let v = r.state.get(PAUSED)?;
    assert_eq!(v["by"], "operator", "{v}");
    Some(v["at"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(start_paused = true)]
async fn a_paused_canary_holds_its_step_with_the_clock_stopped_and_resumes_where_it_stopped() {
    let e = env(4);
    let mut p = plan(&e, 4);
    p.canary.steps = steps(&[(25, 20), (50, 20), (100, 0)]);
    let script = vec![
        (8, Act::Pause),
        (
            60,
            Act::Check(Box::new(|| {
                // Long past the hold's 20 s: still at 25 %, held by the operator.
                assert!(
                    (e.mock.share(NEW) - 25.0).abs() < 1.0,
                    "{}",
                    e.mock.share(NEW)
                );
                assert_eq!(held_at(&e).as_deref(), Some("canary step 1 at 25%"));
                let r = e.journal.record(&e.service).unwrap();
                assert_eq!(r.phase, Phase::Updating, "not the exit-4 pause");
                assert_eq!(r.state["step"], 0);
            })),
        ),
        (100, Act::Resume),
        (
            101,
            Act::Check(Box::new(|| assert_eq!(held_at(&e), None, "resumed"))),
        ),
    ];
    let (o, events) = steered(&Canary, &e, &p, script).await;
    assert_eq!(o, Outcome::Completed);
    assert_eq!(weights(&events), [25, 50, 100]);
    let (w25, _) = first(&events, |e| {
        matches!(e, Event::WeightsChanged { new_percent: 25 })
    })
    .unwrap();
    let (paused, ev) = first(&events, |e| matches!(e, Event::Paused { .. })).unwrap();
    assert_eq!(
        ev,
        Event::Paused {
            reason: "operator".into(),
            at: "canary step 1 at 25%".into()
        }
    );
    assert_eq!(paused, 8.0);
    let (resumed, ev) = first(&events, |e| matches!(e, Event::Resumed { .. })).unwrap();
    assert_eq!(resumed, 100.0);
    let Event::Resumed { held_secs, .. } = ev else {
        unreachable!()
    };
    assert_eq!(held_secs, 92.0);
    // The hold went on where it stopped: what was left of its 20 s after the resume.
    let left = 20.0 - (paused - w25);
    let (next, _) = first(&events, |e| {
        matches!(e, Event::BatchStarted { index: 2, .. })
    })
    .unwrap();
    assert!(
        (next - (resumed + left)).abs() < 0.01,
        "step 2 at {next}s; resumed at {resumed}s with {left}s of the hold left"
    );
    assert_clean(&e, &p, "canary", &o);
    assert!(e.journal.record(&e.service).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_failing_verdict_while_held_still_rolls_back() {
    let mut e = env(4);
    e.analysis = Some(Arc::new(ErrorRateAnalysis {
        mock: e.mock.clone(),
        max_rate: 0.1,
    }));
    let mut p = plan(&e, 4);
    p.canary.steps = steps(&[(25, 20), (100, 0)]);
    let script = vec![
        (8, Act::Pause),
        (
            40,
            Act::Check(Box::new(|| {
                assert_eq!(held_at(&e).as_deref(), Some("canary step 1 at 25%"));
                e.mock.set_faults(NEW, Faults::error_rate(0.5));
            })),
        ),
    ];
    let (o, events) = steered(&Canary, &e, &p, script).await;
    let Outcome::RolledBack(why) = &o else {
        panic!("{o:?}")
    };
    assert!(why.contains("analysis failed at 25%"), "{why}");
    let (back, _) = first(&events, |e| matches!(e, Event::RollbackStarted { .. })).unwrap();
    assert!(back <= 41.5, "rolled back at {back}s, held or not");
    assert_eq!(weights(&events), [25]);
    assert!(first(&events, |e| matches!(e, Event::Resumed { .. })).is_some());
    assert_clean(&e, &p, "canary", &o);
    assert!(e.journal.record(&e.service).is_none());
}

#[tokio::test(start_paused = true)]
async fn an_abort_while_held_rolls_back() {
    let e = env(4);
    let mut p = plan(&e, 4);
    p.canary.steps = steps(&[(25, 20), (100, 0)]);
    let script = vec![(8, Act::Pause), (50, Act::Abort)];
    let (o, events) = steered(&Canary, &e, &p, script).await;
    assert_eq!(o, Outcome::Interrupted(true));
    let (back, _) = first(&events, |e| matches!(e, Event::RollbackStarted { .. })).unwrap();
    assert_eq!(back, 50.0);
    assert_clean(&e, &p, "canary", &o);
    assert!(e.journal.record(&e.service).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_running_canary_promoted_moves_on_before_its_hold_ends_and_in_full_to_100() {
    let e = env(4);
    let mut p = plan(&e, 4);
    p.canary.steps = steps(&[(25, 60), (50, 60), (75, 60), (100, 60)]);
    let script = vec![
        (10, Act::Promote { full: false }),
        (
            20,
            Act::Check(Box::new(|| {
                assert!(
                    (e.mock.share(NEW) - 50.0).abs() < 1.0,
                    "{}",
                    e.mock.share(NEW)
                );
                assert_eq!(e.journal.record(&e.service).unwrap().state["step"], 1);
            })),
        ),
        (20, Act::Promote { full: true }),
    ];
    let (o, events) = steered(&Canary, &e, &p, script).await;
    assert_eq!(o, Outcome::Completed);
    assert_eq!(weights(&events), [25, 50, 100], "no step held between");
    let promoted: Vec<(f64, Event)> = events
        .iter()
        .filter(|(_, e)| matches!(e, Event::Promoted { .. }))
        .cloned()
        .collect();
    assert_eq!(
        promoted,
        [
            (
                10.0,
                Event::Promoted {
                    step: 1,
                    full: false
                }
            ),
            (
                20.0,
                Event::Promoted {
                    step: 2,
                    full: true
                }
            )
        ]
    );
    let (done, _) = first(&events, |e| matches!(e, Event::Finished { .. })).unwrap();
    assert!(done < 40.0, "completed at {done}s: no hold of 60 s kept");
    assert_clean(&e, &p, "canary", &o);
    assert!(e.journal.record(&e.service).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_promotion_is_judged_first_and_a_failing_verdict_rolls_back_before_the_step_changes() {
    let mut e = env(4);
    e.analysis = Some(Arc::new(ErrorRateAnalysis {
        mock: e.mock.clone(),
        max_rate: 0.1,
    }));
    let mut p = plan(&e, 4);
    p.canary.steps = steps(&[(25, 60), (50, 60), (100, 0)]);
    let script = vec![
        (
            10,
            Act::Check(Box::new(|| e.mock.set_faults(NEW, Faults::error_rate(0.5)))),
        ),
        (10, Act::Promote { full: false }),
    ];
    let (o, events) = steered(&Canary, &e, &p, script).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    assert_eq!(weights(&events), [25], "never at 50 %");
    assert!(first(&events, |e| matches!(e, Event::Promoted { .. })).is_none());
    assert_clean(&e, &p, "canary", &o);
}

#[tokio::test(start_paused = true)]
async fn a_paused_rolling_update_finishes_the_slot_in_flight_and_starts_no_other() {
    let e = env(4);
    let mut p = plan(&e, 4);
    p.update.parallelism = 1;
    p.update.order = Order::StartFirst;
    let still = || {
        // Slot 1 finished (its new instance serves, its old one is gone); no other began.
        let new = e.mock.counts(NEW);
        assert_eq!((new.running, new.routed_ready), (1, 1), "{new:?}");
        assert_eq!(e.mock.counts(OLD).running, 3);
        assert_eq!(held_at(&e).as_deref(), Some("before slot 2 of 4"));
    };
    let script = vec![
        (1, Act::Pause),
        (60, Act::Check(Box::new(still))),
        (120, Act::Check(Box::new(still))),
        (120, Act::Resume),
    ];
    let (o, events) = steered(&Rolling, &e, &p, script).await;
    assert_eq!(o, Outcome::Completed);
    let (paused, _) = first(&events, |e| matches!(e, Event::Paused { .. })).unwrap();
    let (slot1_done, _) = first(&events, |e| matches!(e, Event::InstanceRemoved { .. })).unwrap();
    assert!(
        paused >= slot1_done,
        "held once slot 1 was done ({paused}s, {slot1_done}s)"
    );
    let (slot2, _) = first(&events, |e| {
        matches!(e, Event::BatchStarted { index: 2, .. })
    })
    .unwrap();
    assert_eq!(slot2, 120.0);
    assert_clean(&e, &p, "rolling", &o);
    assert!(e.journal.record(&e.service).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_paused_blue_green_holds_before_its_switch() {
    let e = env(4);
    let p = plan(&e, 4);
    let script = vec![
        (0, Act::Pause),
        (
            30,
            Act::Check(Box::new(|| {
                let new = e.mock.counts(NEW);
                assert_eq!((new.ready, new.routed), (4, 0), "{new:?}");
                assert_eq!(e.mock.share(OLD), 100.0);
                assert_eq!(held_at(&e).as_deref(), Some("before the switch"));
            })),
        ),
        (40, Act::Resume),
    ];
    let (o, events) = steered(&BlueGreen, &e, &p, script).await;
    assert_eq!(o, Outcome::Completed);
    let (switch, _) = first(&events, |e| {
        matches!(e, Event::WeightsChanged { new_percent: 100 })
    })
    .unwrap();
    assert_eq!(switch, 40.0);
    assert_clean(&e, &p, "blue-green", &o);
}

#[tokio::test(start_paused = true)]
async fn a_rollback_is_never_held() {
    let e = env(4);
    let mut p = plan(&e, 4);
    p.update.parallelism = 1;
    p.update.failure_action = FailureAction::Rollback;
    e.mock.set_faults(NEW, Faults::never_healthy());
    // Paused while slot 1 is in flight: it fails, and the rollback runs though the pause is on.
    let (o, events) = steered(&Rolling, &e, &p, vec![(1, Act::Pause)]).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    assert!(first(&events, |e| matches!(e, Event::Paused { .. })).is_none());
    assert_clean(&e, &p, "rolling", &o);
}
