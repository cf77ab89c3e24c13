//! Every strategy against every fault of the mock, with the invariants
//! checked at every change of the timeline and the end state judged by
//! Swarm's rules.

mod common;
use common::*;
use rollout_core::config::{FailureAction, Order};
use rollout_core::{exit, Outcome, Strategy};
use rollout_mock::{ErrorRateAnalysis, Faults};
use rollout_strategies::{BlueGreen, Canary, Rolling};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Ok,
    Fails,
    /// Only an analysis of the error rate can see it.
    Errors,
}

fn faults() -> Vec<(&'static str, Faults, Kind)> {
    vec![
        ("none", Faults::healthy(), Kind::Ok),
        (
            "slow start",
            Faults::slow_start(Duration::from_secs(20)),
            Kind::Ok,
        ),
        ("never healthy", Faults::never_healthy(), Kind::Fails),
        (
            "start timeout",
            Faults::slow_start(Duration::from_secs(90)),
            Kind::Fails,
        ),
        (
            "crash after 4s",
            Faults::crash_after(Duration::from_secs(4)),
            Kind::Fails,
        ),
        (
            "unhealthy during monitor",
            Faults::unhealthy_after(Duration::from_secs(2)),
            Kind::Fails,
        ),
        ("fails to launch", Faults::launch_fails(), Kind::Fails),
        ("error rate 50%", Faults::error_rate(0.5), Kind::Errors),
    ]
}

fn code(o: &Outcome) -> i32 {
    o.exit_code()
}

/// Runs `strategy` on a fresh environment per fault and collects every
/// mismatch, so one run shows the whole matrix.
async fn matrix(
    name: &str,
    strategy: &dyn Strategy,
    colours: bool,
    tune: impl Fn(&mut rollout_core::Plan),
    expect: impl Fn(Kind) -> (fn(&Outcome) -> bool, i32),
) {
    let mut problems = Vec::new();
    for (fault, f, kind) in faults() {
        let (mut e, layout) = if colours {
            let (e, l) = colours_env(4, true);
            (e, Some(l))
        } else {
            (env(4), None)
        };
        e.mock.set_faults(NEW, f);
        e.analysis = Some(Arc::new(ErrorRateAnalysis {
            mock: e.mock.clone(),
            max_rate: 0.1,
        }));
        let mut p = plan(&e, 4);
        if let Some(l) = layout {
            p.layout = l;
        }
        tune(&mut p);
        let (o, _) = run(strategy, &e, &p).await;
        let (ok, want_code) = expect(kind);
        if !ok(&o) || code(&o) != want_code {
            problems.push(format!("{name} / {fault}: got {o:?} (exit {})", code(&o)));
        }
        let v = violations(&e, &p, strategy.name(), &o);
        if !v.is_empty() {
            problems.push(format!("{name} / {fault}: {}", v.join("; ")));
        }
        assert!(
            e.journal.holder(&e.service).is_none(),
            "{name} / {fault}: lock left held"
        );
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

fn completed(o: &Outcome) -> bool {
    *o == Outcome::Completed
}
fn rolled_back(o: &Outcome) -> bool {
    matches!(o, Outcome::RolledBack(_))
}
fn paused(o: &Outcome) -> bool {
    matches!(o, Outcome::Paused(_))
}
fn with_failures(o: &Outcome) -> bool {
    matches!(o, Outcome::CompletedWithFailures(_))
}

fn rolling_expect(
    on_failure: (fn(&Outcome) -> bool, i32),
) -> impl Fn(Kind) -> (fn(&Outcome) -> bool, i32) {
    move |k| match k {
        Kind::Ok => (completed, exit::SUCCESS),
        // The analysis judges each instance's monitor window: a bad error
        // rate fails it as a crash would.
        Kind::Errors | Kind::Fails => on_failure,
    }
}

#[tokio::test(start_paused = true)]
async fn rolling_start_first_rollback() {
    matrix(
        "rolling start-first rollback",
        &Rolling,
        false,
        |p| {
            p.update.order = Order::StartFirst;
            p.update.failure_action = FailureAction::Rollback;
        },
        rolling_expect((rolled_back, exit::ROLLED_BACK)),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rolling_stop_first_rollback() {
    matrix(
        "rolling stop-first rollback",
        &Rolling,
        false,
        |p| {
            p.update.order = Order::StopFirst;
            p.update.parallelism = 2;
            p.update.failure_action = FailureAction::Rollback;
        },
        rolling_expect((rolled_back, exit::ROLLED_BACK)),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rolling_start_first_pause() {
    matrix(
        "rolling start-first pause",
        &Rolling,
        false,
        |p| p.update.order = Order::StartFirst,
        rolling_expect((paused, exit::PAUSED)),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rolling_stop_first_pause() {
    matrix(
        "rolling stop-first pause",
        &Rolling,
        false,
        |_| {},
        rolling_expect((paused, exit::PAUSED)),
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn rolling_continue() {
    for order in [Order::StartFirst, Order::StopFirst] {
        matrix(
            "rolling continue",
            &Rolling,
            false,
            |p| {
                p.update.order = order;
                p.update.failure_action = FailureAction::Continue;
            },
            rolling_expect((with_failures, exit::SUCCESS)),
        )
        .await;
    }
}

#[tokio::test(start_paused = true)]
async fn rolling_in_parallel_with_delay() {
    matrix(
        "rolling parallelism 0, delay 3s",
        &Rolling,
        false,
        |p| {
            p.update.parallelism = 0;
            p.update.delay = Duration::from_secs(3);
            p.update.order = Order::StartFirst;
            p.update.failure_action = FailureAction::Rollback;
            p.rollback.parallelism = 0;
        },
        rolling_expect((rolled_back, exit::ROLLED_BACK)),
    )
    .await;
}

/// The analysis judges the monitor window after the switch: a bad error
/// rate switches back as a failed instance does.
fn switch_expect(k: Kind) -> (fn(&Outcome) -> bool, i32) {
    match k {
        Kind::Ok => (completed, exit::SUCCESS),
        Kind::Fails | Kind::Errors => (rolled_back, exit::ROLLED_BACK),
    }
}

fn canary_expect(k: Kind) -> (fn(&Outcome) -> bool, i32) {
    match k {
        Kind::Ok => (completed, exit::SUCCESS),
        Kind::Fails | Kind::Errors => (rolled_back, exit::ROLLED_BACK),
    }
}

#[tokio::test(start_paused = true)]
async fn blue_green_single() {
    matrix(
        "blue-green",
        &BlueGreen,
        false,
        |p| {
            p.blue_green.keep_old_for = Some(Duration::from_secs(60));
        },
        switch_expect,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn blue_green_colours() {
    matrix(
        "blue-green colours",
        &BlueGreen,
        true,
        |_| {},
        switch_expect,
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn canary_single() {
    matrix("canary", &Canary, false, |_| {}, canary_expect).await;
}

#[tokio::test(start_paused = true)]
async fn canary_colours() {
    matrix("canary colours", &Canary, true, |_| {}, canary_expect).await;
}
