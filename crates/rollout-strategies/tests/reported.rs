//! Bugs reported by the people who wired and tested the plugin, each shown on
//! the mock: a two-colour rollback that removed the idle colour's containers
//! from before the rollout, a completed-with-failures message that named the
//! wrong failure_action, a blue-green switch whose drain went unreported, and
//! journal saves from parallel workers landing out of order.

mod common;
use common::*;
use rollout_core::strategy::{Cancel, TrafficLayout};
use rollout_core::{Outcome, Plan, ServiceRef, Strategy, Target};
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
