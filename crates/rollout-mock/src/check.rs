//! The invariant checker: DESIGN.md's invariants 1, 2, 4 and 5, judged from
//! what the mock saw.
//!
//! [`check_timeline`] walks the [`Timeline`] entry by entry and reports each
//! change after which an invariant does not hold; [`check_end`] judges the
//! final state against the outcome by Swarm's rules. Neither looks at a
//! strategy's events.

use crate::cluster::MockCluster;
use crate::timeline::{Change, Timeline};
use rollout_core::strategy::TrafficLayout;
use rollout_core::{InstanceId, InstanceState, Outcome, ServiceRef, Target};
use std::fmt;
use std::time::Duration;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// DESIGN.md's number of the invariant.
    pub invariant: u8,
    /// The timeline entry after which it broke (the last one for end-state
    /// checks).
    pub entry: usize,
    /// When, on the mock clock.
    pub at: Duration,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant {} broken at entry {} ({:.3}s): {}",
            self.invariant,
            self.entry,
            self.at.as_secs_f64(),
            self.message
        )
    }
}

/// Checks every entry from `from` (a [`MockCluster::mark`]) on:
///
/// - 1: no instance joins the routes while not ready (running and healthy);
///   a service route resolved while unready instances run counts too;
/// - 2: no instance is stopped while routed, or while requests are still in
///   flight to it after it left the routes;
/// - 4: the capacity serving (routed, running, healthy) never drops below
///   `floor` (a built-in strategy's is
///   [`StrategyKind::floor`](rollout_core::StrategyKind::floor)), or below
///   what served at `from` when that was less. Instances struck by an
///   injected fault are forgiven one each: a crash is the fault's doing,
///   not the strategy's.
pub fn check_timeline(timeline: &Timeline, from: usize, floor: usize) -> Vec<Violation> {
    let mut out = Vec::new();
    let entries = &timeline.entries;
    if entries.is_empty() {
        return out;
    }
    let base = &entries[from.saturating_sub(1).min(entries.len() - 1)];
    let floor = floor.min(base.serving() as usize) as i64;
    let base_faults = i64::from(base.faults());
    for i in from.max(1)..entries.len() {
        let (e, p) = (&entries[i], &entries[i - 1]);
        let mut push = |invariant: u8, message: String| {
            out.push(Violation {
                invariant,
                entry: i,
                at: e.at,
                message: format!("{message} (after: {})", e.change),
            })
        };
        for r in 0..e.counts.len() {
            let (c, q) = (e.rev(r), p.rev(r));
            let rev = &timeline.revisions[r];
            if c.joined_unready > q.joined_unready {
                push(
                    1,
                    format!(
                        "{} instance(s) of revision {rev} joined the routes before they were ready",
                        c.joined_unready - q.joined_unready
                    ),
                );
            }
            if c.stopped_routed > q.stopped_routed {
                push(
                    2,
                    format!("an instance of revision {rev} was stopped while still routed"),
                );
            }
            if c.stopped_in_flight > q.stopped_in_flight {
                push(
                    2,
                    format!(
                        "an instance of revision {rev} was stopped with requests in flight (before its drain ended)"
                    ),
                );
            }
        }
        let forgiven = i64::from(e.faults()) - base_faults;
        let serving = i64::from(e.serving());
        if serving + forgiven < floor {
            push(
                4,
                format!(
                    "capacity {serving} below the floor {floor} ({forgiven} forgiven for faults)"
                ),
            );
        }
    }
    out
}

/// What the end state is judged against.
#[derive(Debug, Clone)]
pub struct EndState<'a> {
    /// The service rolled out (the colour made live in the two-colour layout).
    pub service: &'a ServiceRef,
    /// How it is routed.
    pub layout: &'a TrafficLayout,
    /// The desired count.
    pub replicas: usize,
    /// The revision it ran before (the other colour's in the two-colour
    /// layout), `None` for a service that had no instance.
    pub from: Option<&'a str>,
    /// The revision rolled out.
    pub to: &'a str,
}

/// Checks invariant 5: the state after a rollout is the one its outcome and
/// Swarm's rules give.
///
/// - every routed instance is ready; no exited instance is left behind;
/// - completed: every running instance of the service runs `to`, is ready,
///   there are `replicas` of them, and the routes name the service at rest;
/// - rolled back (or interrupted and rolled back): the same with `from`
///   (nothing runs when there was no `from`); in the two-colour layout the
///   routes are back on the other colour and the colour rolled out runs no
///   instance of `to` (see [`check_end_from`] for those it ran before);
/// - completed with failures, paused, failed: only `from` and `to` run, and
///   in the single layout every running instance is routed; halted (a
///   second Ctrl-C): only `from` and `to` run.
pub fn check_end(mock: &MockCluster, want: &EndState<'_>, outcome: &Outcome) -> Vec<Violation> {
    check_end_from(mock, want, outcome, 0)
}

/// [`check_end`] for a rollout that began at `from` (a
/// [`MockCluster::mark`]): in the two-colour layout, instances of `to` that
/// the colour ran before `from` may stay after a rollback (idle, as they
/// were); only what the rollout launched must be gone. With `from` 0 every
/// instance counts as launched by the rollout.
pub fn check_end_from(
    mock: &MockCluster,
    want: &EndState<'_>,
    outcome: &Outcome,
    from: usize,
) -> Vec<Violation> {
    let before: std::collections::HashSet<InstanceId> = mock.with_timeline(|t| {
        t.entries
            .iter()
            .take(from)
            .filter_map(|e| match &e.change {
                Change::Launched(id) => Some(id.clone()),
                _ => None,
            })
            .collect()
    });
    let last = mock.mark().saturating_sub(1);
    let at = mock.elapsed();
    let mut out = Vec::new();
    let mut push = |message: String| {
        out.push(Violation {
            invariant: 5,
            entry: last,
            at,
            message: format!("{message} (outcome {outcome:?})"),
        })
    };
    let snapshot = mock.snapshot();
    let routes = mock.route_table();
    for v in &snapshot {
        if v.removed {
            continue;
        }
        // An instance a fault struck after the strategy stopped watching it
        // (past its monitor window) is the fault's doing: Swarm's rules do
        // not count it, and the engine's restart policy owns it.
        if v.struck {
            continue;
        }
        if v.weight > 0 && !v.instance.is_ready() {
            push(format!("{} is routed but not ready", v.instance.host));
        }
        if v.instance.service == *want.service && v.instance.state == InstanceState::Exited {
            push(format!("{} exited and was left behind", v.instance.host));
        }
    }
    let live: Vec<_> = snapshot
        .iter()
        .filter(|v| {
            !v.removed
                && v.instance.service == *want.service
                && (v.instance.state == InstanceState::Running || v.struck)
        })
        .collect();
    // With a struck instance present the service cannot be routed by name
    // (the proxy would resolve the name to it): per-instance routes are
    // the right end state then.
    let struck = live.iter().any(|v| v.struck);
    let (rest_name, other) = match want.layout {
        TrafficLayout::Single => (want.service.service.clone(), None),
        TrafficLayout::Colours { other, .. } => (want.service.service.clone(), Some(other)),
    };
    let at_rest = |name: &str| {
        struck
            || routes.len() == 1
                && routes[0].target
                    == Target::Service {
                        name: name.to_string(),
                    }
    };
    let all_of = |rev: &str| {
        live.iter()
            .all(|v| v.instance.revision == rev && (v.instance.is_ready() || v.struck))
    };
    match outcome {
        Outcome::Completed | Outcome::NoChange => {
            if !all_of(want.to) || live.len() != want.replicas {
                push(format!(
                    "expected {} ready instances of {}, found {:?}",
                    want.replicas,
                    want.to,
                    live.iter()
                        .map(|v| (&v.instance.host, &v.instance.revision, v.instance.health))
                        .collect::<Vec<_>>()
                ));
            }
            if !at_rest(&rest_name) {
                push(format!("routes not at rest on {rest_name}: {routes:?}"));
            }
            if let (
                Some(other),
                TrafficLayout::Colours {
                    stop_other: true, ..
                },
            ) = (other, want.layout)
            {
                if snapshot.iter().any(|v| {
                    !v.removed
                        && v.instance.service == *other
                        && v.instance.state == InstanceState::Running
                }) {
                    push(format!("{other} still runs though stop_other was asked"));
                }
            }
        }
        Outcome::RolledBack(_) | Outcome::Interrupted(true) => match (want.from, other) {
            (Some(from), None) => {
                if !all_of(from) || live.len() != want.replicas {
                    push(format!(
                        "expected {} ready instances of {from} after rollback, found {}",
                        want.replicas,
                        live.len()
                    ));
                }
                if !at_rest(&rest_name) {
                    push(format!("routes not at rest on {rest_name}: {routes:?}"));
                }
            }
            (_, Some(other)) => {
                if live
                    .iter()
                    .any(|v| v.instance.revision == want.to && !before.contains(&v.instance.id))
                {
                    push(format!(
                        "{} still runs {} it launched after rollback",
                        want.service, want.to
                    ));
                }
                if !at_rest(&other.service) {
                    push(format!("routes not back on {}: {routes:?}", other.service));
                }
            }
            (None, None) => {
                if !live.is_empty() {
                    push("instances left running with no revision to roll back to".into());
                }
            }
        },
        _ => {
            for v in &live {
                let ok = v.instance.revision == want.to
                    || Some(v.instance.revision.as_str()) == want.from;
                if !ok {
                    push(format!("{} runs an unexpected revision", v.instance.host));
                }
                // A halted blue-green keeps its old set running, idle, for
                // the switch-back; elsewhere a running instance serves.
                let halted = *outcome == Outcome::Interrupted(false);
                if other.is_none() && v.weight == 0 && !halted && !v.struck {
                    push(format!("{} runs but is not routed", v.instance.host));
                }
            }
        }
    }
    out
}
