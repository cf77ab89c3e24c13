//! The mock benchmark, one scenario per process so that CPU time and peak
//! memory belong to it alone: `cargo run --release -p rollout-strategies
//! --example bench_mock -- rolling` (10,000 instances, parallelism 50) or
//! `-- canary` (1,000 instances, steps 10/25/50/75/100), or `-- scale` (the seed's rolling
//! `update_config` at 6, 24 and 1,000 replicas: how many traffic changes, launches and stops a
//! rollout asks of the proxy and the engine as the work grows; counts, not seconds). `cargo
//! xtask bench mock` runs them all and prints the figures side by side.
//!
//! Each run also checks the invariants over the whole timeline, so a fast
//! figure is never one of a broken rollout.

use rollout_core::config::{FailureAction, Order};
use rollout_core::event::EventSink;
use rollout_core::{Outcome, Plan, Revision, RolloutContext, ServiceRef, StrategyKind};
use rollout_mock::check::{check_end, check_timeline, EndState};
use rollout_mock::timeline::Change;
use rollout_mock::MockCluster;
use std::time::{Duration, Instant};

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "rolling".into());
    if which == "scale" {
        scale();
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime");
    let wall = Instant::now();
    let (replicas, report) = rt.block_on(scenario(&which));
    let wall = wall.elapsed();
    let (cpu, hwm_kb) = (cpu_seconds(), peak_kb());
    println!(
        "bench mock {which}: replicas={replicas} cpu_s={cpu:.3} peak_mb={:.1} wall_s={:.3} {report}",
        hwm_kb as f64 / 1024.0,
        wall.as_secs_f64()
    );
}

async fn scenario(which: &str) -> (usize, String) {
    let (replicas, kind) = match which {
        "rolling" => (10_000, StrategyKind::Rolling),
        "canary" => (1_000, StrategyKind::Canary),
        other => {
            eprintln!("error: unknown scenario {other:?}\nhint: rolling or canary");
            std::process::exit(2);
        }
    };
    let strategy = rollout_strategies::built_in(kind);
    let mock = MockCluster::new();
    let service = ServiceRef::new("bench", "app");
    mock.seed(&service, "v1", replicas, true);
    let mark = mock.mark();
    let (events, mut rx) = EventSink::channel();
    let counter = tokio::spawn(async move {
        let mut n = 0u64;
        while rx.recv().await.is_some() {
            n += 1;
        }
        n
    });
    let ctx = RolloutContext {
        events,
        ..mock.context()
    };
    let mut plan = Plan::new(service.clone(), Revision::new("v2", "app:2"), replicas);
    plan.update.parallelism = 50;
    plan.update.order = Order::StartFirst;
    plan.update.monitor = Duration::from_secs(5);
    let outcome = strategy.run(&ctx, &plan).await;
    drop(ctx);
    let events = counter.await.unwrap_or(0);
    let violations = mock
        .with_timeline(|t| check_timeline(t, mark, kind.floor(&plan)))
        .len()
        + check_end(
            &mock,
            &EndState {
                service: &service,
                layout: &plan.layout,
                replicas,
                from: Some("v1"),
                to: "v2",
            },
            &outcome,
        )
        .len();
    let entries = mock.with_timeline(|t| t.entries.len());
    if outcome != Outcome::Completed || violations > 0 {
        eprintln!("error: the {kind} bench ended {outcome:?} with {violations} violations");
        std::process::exit(1);
    }
    (
        replicas,
        format!(
            "simulated_s={:.0} timeline_entries={entries} events={events} violations={violations}",
            mock.elapsed().as_secs_f64()
        ),
    )
}

/// The seed's rolling settings (delay 10 s, monitor 30 s, rollback, ratio 0.3, stop-first) at
/// growing replica counts: one line per case with the traffic changes (each one nginx reload
/// per proxy replica), launches and stops the strategy asked for, and the changes per slot,
/// which must not grow with the replica count.
fn scale() {
    for (replicas, parallelism) in [(6, 2), (24, 4), (1_000, 4), (1_000, 50)] {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        let counts = rt.block_on(scale_case(replicas, parallelism));
        println!("bench mock scale: replicas={replicas} parallelism={parallelism} {counts}");
    }
}

async fn scale_case(replicas: usize, parallelism: u64) -> String {
    let kind = StrategyKind::Rolling;
    let strategy = rollout_strategies::built_in(kind);
    let mock = MockCluster::new();
    let service = ServiceRef::new("bench", "app");
    mock.seed(&service, "v1", replicas, true);
    let mark = mock.mark();
    let ctx = mock.context();
    let mut plan = Plan::new(service.clone(), Revision::new("v2", "app:2"), replicas);
    plan.update.parallelism = parallelism;
    plan.update.delay = Duration::from_secs(10);
    plan.update.monitor = Duration::from_secs(30);
    plan.update.failure_action = FailureAction::Rollback;
    plan.update.max_failure_ratio = 0.3;
    let outcome = strategy.run(&ctx, &plan).await;
    drop(ctx);
    let violations = mock.with_timeline(|t| check_timeline(t, mark, kind.floor(&plan)).len());
    if outcome != Outcome::Completed || violations > 0 {
        eprintln!("error: the scale case {replicas}/{parallelism} ended {outcome:?} with {violations} violations");
        std::process::exit(1);
    }
    let (changes, launches, stops) = mock.with_timeline(|t| {
        let mut n = (0usize, 0usize, 0usize);
        for e in &t.entries[mark..] {
            match e.change {
                Change::Routed { .. } => n.0 += 1,
                Change::Launched(_) => n.1 += 1,
                Change::Stopped(_) => n.2 += 1,
                _ => {}
            }
        }
        n
    });
    format!(
        "traffic_changes={changes} launches={launches} stops={stops} changes_per_slot={:.2} simulated_s={:.0}",
        changes as f64 / replicas as f64,
        mock.elapsed().as_secs_f64()
    )
}

/// User plus system CPU time of this process, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after ')'.
    (ticks(11) + ticks(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident memory (VmHWM) in kB, from /proc/self/status.
fn peak_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
