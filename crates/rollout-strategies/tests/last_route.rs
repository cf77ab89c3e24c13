//! The last instance that gets traffic is never taken out of the routes, even when
//! instances fail inside the monitor window after the old ones are gone (an upstream with
//! no server answers nothing, and nginx refuses one); and failure_action continue that
//! left every slot on the old revision puts the service back on its name.

mod common;
use common::*;
use rollout_core::config::{FailureAction, Order};
use rollout_core::{Outcome, Route, Target};
use rollout_mock::{Change, Faults};
use rollout_strategies::Rolling;
use std::time::Duration;

/// Every route change of the run left at least one instance routed.
fn assert_never_unrouted_to_zero(e: &Env) {
    e.mock.with_timeline(|t| {
        for entry in t.entries.iter().skip(e.mark) {
            if let Change::Routed { .. } = entry.change {
                let routed: u32 = entry.counts.iter().map(|c| c.routed).sum();
                assert!(
                    routed > 0,
                    "a route change left nothing routed at {:?}:\n{}",
                    entry.at,
                    t.render(e.mark)
                );
            }
        }
    });
}

#[tokio::test(start_paused = true)]
async fn failures_in_the_monitor_window_never_leave_the_upstream_empty() {
    // Stop-first, one at a time, every new instance turns unhealthy well inside a long
    // monitor window after the old ones are gone; the second failure rolls back. Taking the
    // second failed instance out would leave nothing routed.
    let e = env(2);
    e.mock
        .set_faults(NEW, Faults::unhealthy_after(Duration::from_secs(6)));
    let mut p = plan(&e, 2);
    p.update.order = Order::StopFirst;
    p.update.delay = Duration::from_secs(1);
    p.update.monitor = Duration::from_secs(30);
    p.update.max_failure_ratio = 0.5;
    p.update.failure_action = FailureAction::Rollback;
    let (o, _) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::RolledBack(_)), "{o:?}");
    assert_never_unrouted_to_zero(&e);
    assert_eq!(e.mock.counts(OLD).ready, 2, "not back on the old revision");
}

#[tokio::test(start_paused = true)]
async fn continue_with_every_slot_failed_is_at_rest_on_the_old_revision() {
    let e = env(3);
    e.mock.set_faults(NEW, Faults::never_healthy());
    let mut p = plan(&e, 3);
    p.update.order = Order::StartFirst;
    p.update.failure_action = FailureAction::Continue;
    p.timeouts.start = Duration::from_secs(10);
    let (o, _) = run(&Rolling, &e, &p).await;
    assert!(matches!(o, Outcome::CompletedWithFailures(_)), "{o:?}");
    assert_never_unrouted_to_zero(&e);
    assert_eq!(
        e.mock.route_table(),
        vec![Route {
            target: Target::Service { name: "app".into() },
            weight: 1
        }],
        "nginx would be left naming containers"
    );
}
