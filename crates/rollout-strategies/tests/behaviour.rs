//! What operators expect beyond the fault matrix: Ctrl-C, the lock, no-op
//! rollouts, empty services, canary promotion, the two colours, and the
//! pre-switch verification.

mod common;
use async_trait::async_trait;
use common::*;
use rollout_core::config::Order;
use rollout_core::journal::Phase;
use rollout_core::strategy::{CanaryStep, Cancel, Hold, TrafficLayout, Verdict, Verification};
use rollout_core::{exit, Analysis, Event, Journal, Outcome, Plan, Revision, Strategy, Target};
use rollout_mock::{Faults, MockVerifier};
use rollout_strategies::{BlueGreen, Canary, Rolling};
use std::sync::Arc;
use std::time::Duration;

/// Runs `strategy`, pressing Ctrl-C `presses` times at `after`.
async fn run_cancelled(
    strategy: &dyn Strategy,
    e: &Env,
    p: &Plan,
    after: Duration,
    presses: usize,
) -> Outcome {
    let (handle, cancel) = Cancel::new();
    let (ctx, _rx) = ctx(e, cancel);
    let press = async {
        tokio::time::sleep(after).await;
        for _ in 0..presses {
            handle.escalate();
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        o = strategy.run(&ctx, p) => o,
        _ = press => unreachable!(),
    }
}

#[tokio::test(start_paused = true)]
async fn ctrl_c_rolls_back_and_exits_130() {
    for (name, strategy) in [
        ("rolling", &Rolling as &dyn Strategy),
        ("blue-green", &BlueGreen),
        ("canary", &Canary),
    ] {
        let e = env(4);
        let mut p = plan(&e, 4);
        p.update.order = Order::StartFirst;
        p.blue_green.keep_old_for = Some(Duration::from_secs(60));
        let o = run_cancelled(strategy, &e, &p, Duration::from_secs(5), 1).await;
        assert_eq!(o, Outcome::Interrupted(true), "{name}");
        assert_eq!(o.exit_code(), exit::INTERRUPTED);
        assert_clean(&e, &p, strategy.name(), &o);
        assert!(
            e.journal.record(&e.service).is_none(),
            "{name}: journal left"
        );
        assert!(e.journal.holder(&e.service).is_none(), "{name}: lock left");
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_ctrl_c_stops_without_rollback_and_the_next_run_finishes() {
    for strategy in [&Rolling as &dyn Strategy, &BlueGreen, &Canary] {
        let e = env(4);
        let mut p = plan(&e, 4);
        p.update.order = Order::StartFirst;
        let o = run_cancelled(strategy, &e, &p, Duration::from_secs(5), 2).await;
        assert_eq!(o, Outcome::Interrupted(false), "{}", strategy.name());
        assert_eq!(o.exit_code(), exit::PAUSED);
        assert_clean(&e, &p, strategy.name(), &o);
        assert!(
            e.journal.record(&e.service).is_some(),
            "the journal says where"
        );
        let (o, events) = run(strategy, &e, &p).await;
        assert_eq!(o, Outcome::Completed, "{}", strategy.name());
        assert!(matches!(
            events[0],
            Event::RolloutStarted { resumed: true, .. }
        ));
        assert_clean(&e, &p, strategy.name(), &o);
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_rollout_of_the_service_is_refused() {
    let e = env(2);
    e.journal.lock(&e.service, "alice@ci pid 42").await.unwrap();
    let p = plan(&e, 2);
    let (o, _) = run(&Rolling, &e, &p).await;
    let Outcome::Busy(msg) = &o else {
        panic!("{o:?}")
    };
    assert!(
        msg.contains("alice@ci pid 42") && msg.contains("since"),
        "{msg}"
    );
    assert_eq!(o.exit_code(), rollout_core::exit::BUSY, "busy: exit 7");
    assert_eq!(e.mock.mark(), e.mark, "nothing changed");
    assert_eq!(
        e.journal.holder(&e.service).as_deref(),
        Some("alice@ci pid 42")
    );
}

#[tokio::test(start_paused = true)]
async fn the_revision_already_serving_is_a_no_op() {
    for strategy in [&Rolling as &dyn Strategy, &BlueGreen, &Canary] {
        let e = env(3);
        let p = plan(&e, 3);
        let (o, _) = run(strategy, &e, &p).await;
        assert_eq!(o, Outcome::Completed);
        let before = e.mock.mark();
        let (o, _) = run(strategy, &e, &p).await;
        assert_eq!(o, Outcome::NoChange, "{}", strategy.name());
        assert_eq!(o.exit_code(), exit::SUCCESS);
        assert_eq!(e.mock.mark(), before, "a no-op changes nothing");
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_with_no_instance_is_started_behind_the_health_gate() {
    for strategy in [&Rolling as &dyn Strategy, &BlueGreen, &Canary] {
        let e = env(0);
        let p = plan(&e, 3);
        let (o, _) = run(strategy, &e, &p).await;
        assert_eq!(o, Outcome::Completed, "{}", strategy.name());
        assert_clean(&e, &p, strategy.name(), &o);
    }
}

#[tokio::test(start_paused = true)]
async fn an_indefinite_canary_step_pauses_and_the_next_run_promotes_it() {
    let e = env(4);
    let mut p = plan(&e, 4);
    p.canary.steps = vec![
        CanaryStep {
            percent: 25,
            hold: Hold::For(Duration::from_secs(10)),
        },
        CanaryStep {
            percent: 50,
            hold: Hold::UntilPromoted,
        },
        CanaryStep {
            percent: 100,
            hold: Hold::For(Duration::ZERO),
        },
    ];
    let (o, events) = run(&Canary, &e, &p).await;
    assert!(matches!(o, Outcome::Paused(_)), "{o:?}");
    assert_eq!(o.exit_code(), exit::PAUSED);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::StepPaused {
            step: 2,
            for_secs: None
        }
    )));
    assert!(
        (e.mock.share(NEW) - 50.0).abs() < 1.0,
        "share {}",
        e.mock.share(NEW)
    );
    assert_clean(&e, &p, "canary", &o);
    assert_eq!(e.journal.record(&e.service).unwrap().phase, Phase::Paused);
    // Days later, on the same journal: promote.
    let (o, events) = run(&Canary, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::WeightsChanged { new_percent: 25 })));
    assert_clean(&e, &p, "canary", &o);
}

#[tokio::test(start_paused = true)]
async fn a_paused_canary_promoted_in_full_goes_straight_to_the_last_step() {
    let e = env(4);
    let mut p = plan(&e, 4);
    let held = |percent| CanaryStep {
        percent,
        hold: Hold::UntilPromoted,
    };
    // Even the last step holds: in full, no hold is kept.
    p.canary.steps = vec![held(25), held(50), held(75), held(100)];
    let (o, _) = run(&Canary, &e, &p).await;
    assert!(matches!(o, Outcome::Paused(_)), "{o:?}");
    assert!((e.mock.share(NEW) - 25.0).abs() < 1.0);
    // What `docker rollout promote --full` leaves in the journal.
    let mut record = e.journal.record(&e.service).unwrap();
    record.state[rollout_strategies::PROMOTE] = serde_json::json!("full");
    e.journal.save(&record).await.unwrap();
    let (o, events) = run(&Canary, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    let weights: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::WeightsChanged { new_percent } => Some(*new_percent),
            _ => None,
        })
        .collect();
    assert_eq!(weights, [100], "no step held between");
    assert_clean(&e, &p, "canary", &o);
}

struct Unsure;
#[async_trait]
impl Analysis for Unsure {
    async fn judge(&self, _: &Plan, _: usize, _: u32) -> Verdict {
        Verdict::Inconclusive("no metrics yet".into())
    }
}

#[tokio::test(start_paused = true)]
async fn an_inconclusive_analysis_pauses_rather_than_guess() {
    let mut e = env(4);
    e.analysis = Some(Arc::new(Unsure));
    let p = plan(&e, 4);
    let (o, events) = run(&Canary, &e, &p).await;
    let Outcome::Paused(msg) = &o else {
        panic!("{o:?}")
    };
    assert!(msg.contains("no metrics yet"), "{msg}");
    let judged = events
        .iter()
        .filter(|e| matches!(e, Event::Analysis { .. }))
        .count();
    assert!(judged >= 2, "consulted during the hold, {judged} times");
    assert_clean(&e, &p, "canary", &o);
}

#[tokio::test(start_paused = true)]
async fn canary_weights_follow_the_steps() {
    let e = env(10);
    let p = plan(&e, 10);
    let (ctx, mut rx) = ctx(&e, Cancel::never());
    let mock = e.mock.clone();
    let watch = async {
        let mut seen = Vec::new();
        while let Some(ev) = rx.recv().await {
            if let Event::WeightsChanged { new_percent } = ev {
                seen.push((new_percent, mock.share(NEW)));
            }
        }
        seen
    };
    let (o, seen) = tokio::join!(
        async {
            let o = Canary.run(&ctx, &p).await;
            drop(ctx);
            o
        },
        watch
    );
    assert_eq!(o, Outcome::Completed);
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![10, 25, 50, 75, 100]
    );
    for (want, got) in seen {
        assert!(
            (f64::from(want) - got).abs() < 2.0,
            "{want}% asked, {got:.1}% routed"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn colours_switch_and_switch_back_to_the_same_containers() {
    let (e, layout) = colours_env(3, false);
    let mut p = plan(&e, 3);
    p.layout = layout.clone();
    let (o, _) = run(&BlueGreen, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "blue-green", &o);
    assert_eq!(
        e.mock.route_table()[0].target,
        Target::Service {
            name: "green".into()
        }
    );
    let TrafficLayout::Colours { other: blue, .. } = layout else {
        unreachable!()
    };
    let blue_before: Vec<_> = e
        .mock
        .snapshot()
        .into_iter()
        .filter(|v| v.instance.service == blue && !v.removed)
        .map(|v| v.instance.id)
        .collect();
    assert_eq!(
        blue_before.len(),
        3,
        "blue kept running for the switch-back"
    );
    // `docker rollout blue`: blue already runs its revision: no launch.
    let mut back = Plan::new(blue.clone(), Revision::new(OLD, "app:1"), 3);
    back.layout = TrafficLayout::Colours {
        other: e.service.clone(),
        stop_other: false,
    };
    let launches_before = e.mock.snapshot().len();
    let (o, _) = run(&BlueGreen, &e, &back).await;
    assert_eq!(o, Outcome::Completed);
    assert_eq!(
        e.mock.snapshot().len(),
        launches_before,
        "same containers, none launched"
    );
    assert_eq!(
        e.mock.route_table()[0].target,
        Target::Service {
            name: "blue".into()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn blue_green_verifies_each_new_instance_before_the_switch() {
    for (rate, ok) in [(0.0, true), (1.0, false)] {
        let mut e = env(4);
        e.mock.set_faults(NEW, Faults::error_rate(rate));
        let v = Arc::new(MockVerifier::new(e.mock.clone()));
        e.verifier = Some(v.clone());
        let mut p = plan(&e, 4);
        p.blue_green.verify = Some(Verification {
            path: "/health".into(),
            status: 200,
            body_contains: None,
        });
        let (o, _) = run(&BlueGreen, &e, &p).await;
        let sent = v.sent.load(std::sync::atomic::Ordering::Relaxed);
        if ok {
            assert_eq!(o, Outcome::Completed);
            assert_eq!(sent, 4);
        } else {
            let Outcome::RolledBack(msg) = &o else {
                panic!("{o:?}")
            };
            assert!(msg.contains("status 500"), "{msg}");
            assert_eq!(sent, 1, "stops at the first refusal");
            assert_eq!(e.mock.counts(NEW).routed, 0, "never got traffic");
        }
        assert_clean(&e, &p, "blue-green", &o);
    }
}

#[tokio::test(start_paused = true)]
async fn events_frame_the_rollout_and_failures_carry_diagnostics() {
    let e = env(2);
    e.mock.set_faults(NEW, Faults::never_healthy());
    let mut p = plan(&e, 2);
    p.update.failure_action = rollout_core::FailureAction::Rollback;
    let (o, events) = run(&Rolling, &e, &p).await;
    assert!(matches!(
        events.first(),
        Some(Event::RolloutStarted { resumed: false, .. })
    ));
    assert_eq!(events.last(), Some(&Event::Finished { outcome: o.clone() }));
    let diag = events
        .iter()
        .find_map(|e| match e {
            Event::FailureCounted { diagnostics, .. } => Some(diagnostics.clone()),
            _ => None,
        })
        .expect("a failure was counted");
    assert!(
        diag.health_log
            .iter()
            .any(|l| l.contains("health check failed")),
        "{diag:?}"
    );
    // Every event has a JSON form with the schema version.
    for ev in &events {
        let env = rollout_core::event::Envelope {
            v: 1,
            t: 0.0,
            event: ev.clone(),
        };
        let json = serde_json::to_string(&env).unwrap();
        assert!(json.starts_with("{\"v\":1"), "{json}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_live_colour_is_not_updated_in_place() {
    let (e, layout) = colours_env(2, false);
    let mut p = plan(&e, 2);
    p.layout = layout;
    let (o, _) = run(&Canary, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    let mut third = p.clone();
    third.target = Revision::new("rev-third", "app:3");
    for strategy in [&Canary as &dyn Strategy, &BlueGreen] {
        let before = e.mock.mark();
        let (o, _) = run(strategy, &e, &third).await;
        let Outcome::Failed(msg) = &o else {
            panic!("{o:?}")
        };
        assert!(msg.contains("hint: roll out blue first"), "{msg}");
        assert_eq!(e.mock.mark(), before, "nothing changed");
        e.journal.clear(&e.service).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn stop_first_takes_the_first_round_out_with_the_move_to_instance_routes() {
    let e = env(6);
    let mut p = plan(&e, 6);
    p.update.order = Order::StopFirst;
    p.update.parallelism = 2;
    let (o, events) = run(&Rolling, &e, &p).await;
    assert_eq!(o, Outcome::Completed);
    assert_clean(&e, &p, "rolling", &o);
    let changes: Vec<(&Vec<rollout_core::Route>, &Vec<Target>)> = events
        .iter()
        .filter_map(|ev| match ev {
            Event::TrafficChanged { set, removed, .. } => Some((set, removed)),
            _ => None,
        })
        .collect();
    // One change moves the service from its name to its instances and leaves the first
    // round's two old instances out (capacity 4 = desired minus parallelism); then per slot
    // one route of the new instance, and the round's unroutes after the first; then at rest.
    let (set, removed) = changes[0];
    assert!(
        removed.iter().any(|t| matches!(t, Target::Service { .. })),
        "{removed:?}"
    );
    assert_eq!(set.len(), 4, "{set:?}");
    assert_eq!(
        changes.len(),
        1 + 6 + 4 + 1,
        "one reload per change, none for the first round's unroutes: {changes:#?}"
    );
}
