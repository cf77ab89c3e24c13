//! The rollout the text and JSON doors' tests render: two slots of a
//! rolling update whose second new instance fails, then a rollback.

use rollout_core::backend::{Diagnostics, Failure};
use rollout_core::router::{DrainReport, Route, Target};
use rollout_core::strategy::Plan;
use rollout_core::{Event, FailureAction, InstanceId, Outcome, Revision, ServiceRef};
use std::time::Duration;

pub(crate) fn plan() -> Plan {
    let mut p = Plan::new(
        ServiceRef::new("shop", "app"),
        Revision::new("9c1b7d0e5a3f44", "rollout-demo:v2"),
        2,
    );
    p.update.parallelism = 1;
    p.update.delay = Duration::from_secs(10);
    p.update.failure_action = FailureAction::Rollback;
    p.update.monitor = Duration::from_secs(30);
    p
}

pub(crate) fn inst(n: &str) -> Target {
    Target::instance(InstanceId(format!("id-{n}")), n)
}

/// A rolling rollout of two slots whose second new instance fails,
/// then rolls back.
pub(crate) fn events() -> Vec<(f64, Event)> {
    let from = Revision::new("3f2a9c1b7d0e88", "");
    vec![
        (
            0.0,
            Event::RolloutStarted {
                service: ServiceRef::new("shop", "app"),
                strategy: "rolling".into(),
                from: Some(from),
                to: plan().target,
                slots: 2,
                resumed: false,
            },
        ),
        (
            0.2,
            Event::TrafficChanged {
                generation: 1,
                set: vec![
                    Route {
                        target: inst("shop_app_1"),
                        weight: 1,
                    },
                    Route {
                        target: inst("shop_app_2"),
                        weight: 1,
                    },
                ],
                removed: vec![Target::Service { name: "app".into() }],
            },
        ),
        (0.3, Event::BatchStarted { index: 1, size: 1 }),
        (
            0.5,
            Event::TrafficChanged {
                generation: 2,
                set: vec![],
                removed: vec![inst("shop_app_1")],
            },
        ),
        (
            1.25,
            Event::Drained {
                removed: vec![inst("shop_app_1")],
                report: DrainReport {
                    waited_for: vec!["nginx worker 41 in shop_nginx_1".into()],
                    elapsed: Duration::from_millis(750),
                    timed_out: false,
                    cut: vec![],
                },
            },
        ),
        (
            1.5,
            Event::InstanceStopped {
                instance: InstanceId("id-shop_app_1".into()),
            },
        ),
        (
            1.6,
            Event::InstanceRemoved {
                instance: InstanceId("id-shop_app_1".into()),
            },
        ),
        (
            4.0,
            Event::InstanceLaunched {
                instance: InstanceId("id-shop_app_3".into()),
                host: "shop_app_3".into(),
                revision: "9c1b7d0e5a3f44".into(),
            },
        ),
        (
            5.0,
            Event::InstanceHealthy {
                instance: InstanceId("id-shop_app_3".into()),
            },
        ),
        (
            5.5,
            Event::TrafficChanged {
                generation: 3,
                set: vec![Route {
                    target: inst("shop_app_3"),
                    weight: 1,
                }],
                removed: vec![],
            },
        ),
        (15.5, Event::BatchStarted { index: 2, size: 1 }),
        (
            18.0,
            Event::InstanceLaunched {
                instance: InstanceId("id-shop_app_4".into()),
                host: "shop_app_4".into(),
                revision: "9c1b7d0e5a3f44".into(),
            },
        ),
        (
            78.0,
            Event::FailureCounted {
                instance: InstanceId("id-shop_app_4".into()),
                failure: Failure::StartTimeout,
                failures: 1,
                slots: 2,
                diagnostics: Diagnostics {
                    last_logs: vec!["listening on :8000".into()],
                    health_log: vec!["GET /health: 503".into()],
                },
            },
        ),
        (
            78.1,
            Event::RollbackStarted {
                reason: "1 of 2 slots failed, more than max_failure_ratio 0".into(),
            },
        ),
        (
            90.0,
            Event::Drained {
                removed: vec![inst("shop_app_3")],
                report: DrainReport {
                    waited_for: vec!["nginx worker 57 in shop_nginx_1".into()],
                    elapsed: Duration::from_secs(30),
                    timed_out: true,
                    cut: vec!["nginx worker 57 in shop_nginx_1".into()],
                },
            },
        ),
        (
            95.0,
            Event::Finished {
                outcome: Outcome::RolledBack("shop_app_4 was not healthy within 1m".into()),
            },
        ),
    ]
}
